"""One webhook, start to finish: claim the step, advance the engine, run its effects, save, render.

This is the edge around the pure engine. It is the only place that runs effects
(account-service calls, ID digests, PIN checks with their failure counters), and
it turns any failure of Redis, the database or the account service into a polite
reply: a valid webhook always gets TwiML the caller can follow.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa

from services.accounts import idnumber
from services.accounts.client import AccountsClient
from services.accounts.errors import AccountsError

from . import twiml
from .callbacks import Callbacks
from .calllog import Appended, CallLog, Ended, Entry, Noted, Opened, Started, Write, mask_number
from .catalog import Catalog, Segment
from .groupcommit import GroupCommit
from .hours import AgentHours
from .machine import Context, advance
from .menu import Menu
from .outbox import Outbox
from .state import (
    LANGS,
    Act,
    Acted,
    CallState,
    CheckId,
    Effect,
    Event,
    Fetch,
    Fetched,
    IdChecked,
    Localized,
    Log,
    PinChecked,
    SaveMessage,
    Say,
    Start,
    Step,
    VerifyPin,
)
from .store import Store

log = logging.getLogger("ivr.hotline")

# Seconds a repeated delivery waits for the first one to finish. Short, so that a webhook
# answers within a second even when the claim it waits on was left by a worker that lost Redis
# half-way (the caller then hears the apology, and `recover` drops that claim).
BUSY_WAIT = 0.8
APOLOGY = (Say("error.apology"), Say("error.apology.options"))
QUEUE_POSITION = "queue.position"
# Seconds a webhook waits for its call-log entries to be written before it answers anyway,
# when they go to the database directly (Redis is failing, or the outbox is not known yet):
# they are written when the database answers again.
JOURNAL_WAIT = 1.0
RECOVERY_KEYS = {"1": "restart", "0": "agent"}  # the keys error.apology.options names


@dataclass(frozen=True, slots=True)
class Webhook:
    """What the web layer knows of the request: the call, the step, and where URLs start."""

    call_sid: str
    seq: int
    caller: str = ""
    base: str = ""  # the app's script root, for the URLs in the reply


class Hotline:
    """The hotline: menu, prompts, Redis, the account service and the call log, wired together."""

    def __init__(
        self,
        menu: Menu,
        catalog: Catalog,
        store: Store,
        accounts: AccountsClient,
        calllog: CallLog,
        *,
        pepper: str,
        agents: twiml.Agents,
        hours: AgentHours | None = None,
        callbacks: Callbacks | None = None,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        caller_key: Callable[[str], str] | None = None,
    ) -> None:
        self.menu = menu
        self.catalog = catalog
        self.store = store
        self.accounts = accounts
        self.calllog = calllog
        self.pepper = pepper
        self.agents = agents
        self.hours = hours or AgentHours()
        self.hours_text = Localized(tuple((lang, self.hours.describe(lang)) for lang in LANGS))
        self.callbacks = callbacks or Callbacks(calllog.engine)
        self.zone = zoneinfo.ZoneInfo(timezone)
        self.clock = clock
        self.caller_key = caller_key or _caller_key(pepper)  # a caller's number, keyed-hashed
        self.on_ended: Callable[[str], None] | None = None  # told each call's outcome, once
        # The call log: webhooks hand their writes to the outbox in the round trip that saves
        # the call's state; they go to the database directly only when Redis fails.
        self.outbox = Outbox(store, calllog, self.caller_key, on_ended=self._ended)
        self.journal = GroupCommit[Write](calllog.write, _database_away, name="call log",
                                          wait=JOURNAL_WAIT)  # fmt: skip

    # --- the webhook -----------------------------------------------------------------

    def answer(self, hook: Webhook, event: Event) -> str:
        """The TwiML for one webhook; never raises for Redis, database or service failures."""
        self.outbox.start()  # this process's mover (once per process)
        self.outbox.hand_held()
        try:
            reply = self._answer(hook, event)
        except (redis.RedisError, OSError) as exc:
            log.error("call %s step %d: Redis failed (%s)", hook.call_sid, hook.seq,
                      _kind(exc))  # fmt: skip
            reply = None
        return reply if reply is not None else self._sorry(hook, event)

    def _ended(self, outcome: str) -> None:
        if self.on_ended is not None:
            self.on_ended(outcome)

    def _answer(self, hook: Webhook, event: Event) -> str | None:
        """The step's reply, a reply given before (a repeat), or None: apologise."""
        if isinstance(event, Start) and hook.seq == 0:
            opened = self._open(hook, event)
            if opened is not None:
                return opened
        begun = self.store.begin(hook.call_sid, hook.seq)
        deadline = time.monotonic() + BUSY_WAIT
        while begun.outcome == "busy" and time.monotonic() < deadline:
            time.sleep(0.02)  # the same step is being applied right now: wait for its reply
            begun = self.store.begin(hook.call_sid, hook.seq)
        if begun.outcome in ("replay", "stale") and begun.reply:
            return begun.reply
        if begun.outcome != "go":
            log.warning("call %s step %d: %s", hook.call_sid, hook.seq, begun.outcome)
            return None
        if begun.state is None and not isinstance(event, Start):  # keys for a call never begun
            self._release(hook.call_sid, begun.token)
            log.warning("call %s step %d: no such call", hook.call_sid, hook.seq)
            return None
        try:
            return self._step(hook, begun.state or CallState(), event, begun.token)
        except (redis.RedisError, OSError):
            raise  # Redis is failing: asking it again would only keep the caller waiting longer
        except BaseException:
            self._release(hook.call_sid, begun.token)
            raise

    def _open(self, hook: Webhook, event: Start) -> str | None:
        """A call's first webhook in one round trip, when its reply needs nothing but the menu
        (no effect to run, so nothing to apply twice): state and reply saved together, or the
        reply a repeated delivery already got. None: take the usual way (claim, run, commit)."""
        now = self.clock()
        step = advance(self.menu, CallState(), event, self.context(now))
        if step.effect is not None:
            return None
        reply, entries = self._reply(hook, step, now, _entries(now, step.log))
        writes = [Opened(hook.call_sid, hook.caller, now, tuple(entries), step.state.lang)]
        handed = self.outbox.command(writes)
        opened = self.store.open(hook.call_sid, step.state, reply, log=handed)
        if opened.outcome != "go":
            return opened.reply or None  # (a repeated delivery's Opened writes nothing)
        if handed is None:
            self._log(writes)
        return reply

    def _release(self, call_sid: str, token: str) -> None:
        try:
            self.store.release(call_sid, token)
        except redis.RedisError as exc:  # the claim expires on its own
            log.error("call %s: could not release its claim (%s)", call_sid, _kind(exc))

    def _sorry(self, hook: Webhook, event: Event) -> str:
        """The apology, also written to the call's log: Redis may be down, the database not."""
        now = self.clock()
        entries = tuple(Entry(now, "prompt", {"key": say.key, "text": segment.text})
                        for say, segment in self._apology())  # fmt: skip
        writes = [*_started(hook, event, now), Noted(hook.call_sid, entries)]
        try:
            handed = self.outbox.put(writes)
        except redis.RedisError:
            handed = False
        if not handed:
            self._direct(writes)
        return self.apology(hook.base)

    def _step(self, hook: Webhook, state: CallState, event: Event, token: str) -> str:
        now = self.clock()
        entries: list[Entry] = []
        ctx = self.context(now)
        step = advance(self.menu, state, event, ctx)
        right_pin = None  # the ID number whose failures in a row a right PIN ends
        while step.effect is not None:
            entries.extend(_entries(now, step.log))
            outcome = self._run(step.effect, entries, now, hook, step.state)
            if isinstance(outcome, PinChecked) and outcome.outcome == "ok":
                assert isinstance(step.effect, VerifyPin)
                right_pin = step.effect.id_digest
            step = advance(self.menu, step.state, outcome, ctx)
        reply, entries = self._reply(hook, step, now, entries + _entries(now, step.log))
        writes = [*_started(hook, event, now),
                  Appended(hook.call_sid, tuple(entries), step.state.lang)]  # fmt: skip
        handed = self.outbox.command(writes)
        if not self.store.commit(hook.call_sid, token, hook.seq, step.state, reply, right_pin,
                                 log=handed):  # fmt: skip
            log.warning("call %s step %d: claim expired before commit", hook.call_sid, hook.seq)
        if handed is None:
            self._log(writes)
        return reply

    def _reply(
        self, hook: Webhook, step: Step, now: datetime.datetime, entries: list[Entry]
    ) -> tuple[str, list[Entry]]:
        """The TwiML of the step's reply, and the entries with the prompts it says added."""
        assert step.reply is not None
        segments = self._render(step.reply.says, step.state.lang)
        entries.extend(Entry(now, "prompt", {"key": s.key, "text": g.text})
                       for s, g in zip(step.reply.says, segments, strict=True))  # fmt: skip
        links = _links(hook.base, step.state.lang)
        reply = twiml.render(segments, step.reply.then, links, self.agents, hook.seq + 1)
        return reply, entries

    def context(self, now: datetime.datetime) -> Context:
        """What the engine may know of the world: whether and when agents answer."""
        exist = self.agents.available
        return Context(exist and self.hours.is_open(now), exist, self.hours_text)

    def hold(self, lang: str, position: int, average_wait: int) -> str:
        """The queue's wait TwiML: the caller's place in the queue and the expected wait."""
        lang = lang if lang in LANGS else LANGS[0]
        minutes = max(1, -(-average_wait // 60))
        say = Say.of(QUEUE_POSITION, position=max(position, 1), minutes=minutes)
        return twiml.hold(self._render((say,), lang))

    def status(self, call_sid: str, status: str, duration: int | None) -> None:
        """The call's status callback: write its end once and let its state expire."""
        now = self.clock()
        if call_sid and status in ("completed", "busy", "failed", "no-answer", "canceled"):
            writes: list[Write] = [Ended(call_sid, status, duration, now)]
            handed = self.outbox.command(writes)
            try:
                self.store.end(call_sid, log=handed)
            except redis.RedisError as exc:
                log.error("call %s: could not expire its state (%s)", call_sid, _kind(exc))
                handed = None  # (if the end reached the outbox too, it is written once)
            if handed is None:
                written = self._direct(writes)
                if written and written[0]:
                    self._ended(str(written[0]))  # this very callback ended the call

    def apology(self, base: str) -> str:
        """Sorry, in both languages, with a retry (1) and a person (0): needs no Redis."""
        segments = [segment for _, segment in self._apology()]
        return twiml.apology(segments, f"{base}/voice/recover", f"{base}/voice", self.agents)

    def _apology(self) -> list[tuple[Say, Segment]]:
        today = self._today()
        return [(say, self.catalog.render(say, lang, today)) for lang in LANGS for say in APOLOGY]

    def recover(self, base: str, keys: str, call_sid: str = "") -> str:
        """The apology's keys: 1 starts the call again, 0 reaches a person.

        The caller has given up on the step that failed, so a claim on it left behind by a
        worker that lost Redis half-way is dropped (if Redis answers): it would otherwise make
        the caller's next keys wait for a reply that never comes."""
        if call_sid:
            try:
                self.store.abandon(call_sid)
            except redis.RedisError as exc:
                log.warning("call %s: could not drop its claim (%s)", call_sid, _kind(exc))
        return twiml.recovery(RECOVERY_KEYS.get(keys, "restart"), f"{base}/voice", self.agents)

    # --- effects ---------------------------------------------------------------------

    def _run(
        self, effect: Effect, entries: list[Entry], now: datetime.datetime, hook: Webhook,
        state: CallState,
    ) -> Event:  # fmt: skip
        """Run one effect for the engine and return its result as an event.

        Redis failing in an authentication effect raises (the caller hears the apology): no
        ID number is let through, and no PIN checked, without its counters."""
        if isinstance(effect, CheckId):
            return self._check_id(effect, hook)
        if isinstance(effect, VerifyPin):
            return self._verify(effect, entries, now, hook, state.id_masked or "")
        if isinstance(effect, Act):
            method = getattr(self.accounts, effect.name)
            report, ok = self._call(effect.name, entries, now, lambda: method(effect.account))
            return Acted(effect, report.outcome if ok else None)
        if isinstance(effect, SaveMessage):
            return self._save_message(effect, now, hook, state.lang)
        return self._fetch(effect, entries, now)

    def _save_message(
        self, effect: SaveMessage, now: datetime.datetime, hook: Webhook, lang: str
    ) -> Event:
        try:
            self.callbacks.add(hook.call_sid, hook.caller, effect.id_masked, lang,
                               effect.url, effect.duration, now)  # fmt: skip
        except sa.exc.SQLAlchemyError as exc:
            log.error("call %s: could not keep a voice message (%s)", hook.call_sid, _kind(exc))
            return Acted(effect, None)
        return Acted(effect, "saved")

    def _check_id(self, effect: CheckId, hook: Webhook) -> Event:
        """The caller's limits (calls and ID numbers from one number), then the ID's lock."""
        digest = idnumber.digest(self.pepper, effect.id_number)
        masked = idnumber.mask(effect.id_number)
        admitted, locked = self.store.admit(self.caller_key(hook.caller), hook.call_sid, digest)
        if admitted != "ok":
            limits = self.store.limits
            what, most = (("calls keying ID numbers", limits.caller_calls) if admitted == "calls"
                          else ("distinct ID numbers", limits.caller_ids))  # fmt: skip
            log.warning("rate limit: caller %s has had its %d %s within %d s; call %s is "
                        "refused authentication", mask_number(hook.caller), most, what,
                        limits.window, hook.call_sid)  # fmt: skip
            return IdChecked(effect, digest, masked, locked=False, limited=True)
        return IdChecked(effect, digest, masked, locked)

    def _verify(
        self, effect: VerifyPin, entries: list[Entry], now: datetime.datetime, hook: Webhook,
        masked: str,
    ) -> Event:  # fmt: skip
        gate = self.store.gate_pin(effect.id_digest)  # lock and limit, before any PIN hash
        if gate == "locked":
            return PinChecked("locked")
        if gate == "limited":
            limits = self.store.limits
            log.warning("rate limit: ID number %s has had its %d PIN checks within %d s; "
                        "call %s from %s is refused", masked, limits.id_checks, limits.window,
                        hook.call_sid, mask_number(hook.caller))  # fmt: skip
            return PinChecked("limited")
        digest, pin = effect.id_digest, effect.pin
        result, ok = self._call("verify_pin", entries, now,
                                lambda: self.accounts.verify_pin(digest, pin))  # fmt: skip
        if not ok:
            return PinChecked("unavailable")
        if result.ok:  # the failure count starts again with the step's commit
            return PinChecked("ok", result.account_id)
        locked = self.store.record_failure(effect.id_digest)
        return PinChecked("locked" if locked else "wrong")

    def _fetch(self, effect: Fetch, entries: list[Entry], now: datetime.datetime) -> Event:
        method = getattr(self.accounts, effect.what)
        data, ok = self._call(effect.what, entries, now, lambda: method(effect.account))
        if not ok:
            return Fetched(effect, None)
        if isinstance(data, list):
            return Fetched(effect, [item.to_json() for item in data])
        return Fetched(effect, data.to_json())

    def _call(
        self, name: str, entries: list[Entry], now: datetime.datetime, call: Callable[[], Any]
    ) -> tuple[Any, bool]:
        """Call the account service, logging outcome and latency; (result, ok)."""
        started = time.perf_counter()
        try:
            result, ok, outcome = call(), True, "ok"
        except AccountsError as exc:
            result, ok, outcome = None, False, type(exc).__name__
            log.error("account service %s failed: %s", name, outcome)
        ms = round((time.perf_counter() - started) * 1000, 1)
        entries.append(Entry(now, "service", {"call": name, "outcome": outcome, "ms": ms}))
        return result, ok

    # --- helpers ---------------------------------------------------------------------

    def _render(self, says: tuple[Say, ...], lang: str) -> list[Segment]:
        today = self._today()
        return [self.catalog.render(say, lang, today, self.zone) for say in says]

    def _today(self) -> datetime.date:
        return self.clock().astimezone(self.zone).date()

    def _direct(self, writes: Sequence[Write]) -> Sequence[Any]:
        """Write to the call log directly, Redis failing; what the log did not take because
        the call is not in it yet (its start may still be in the outbox) is held for the
        outbox, to follow the call's other writes there once Redis is back."""
        written = self._log(writes)
        if written and self.outbox.key is not None:
            self.outbox.hold([write for write, done in zip(writes, written, strict=True)
                              if not done])  # fmt: skip
        return written

    def _log(self, writes: Sequence[Write]) -> Sequence[Any]:
        """Write to the call log directly (with other webhooks' writes, in one transaction):
        what the log said of each write. A database that does not answer keeps the caller
        waiting at most JOURNAL_WAIT: the writes are kept and written when it is back (and ()
        said)."""
        written = self.journal.submit(writes)
        if written is None:
            log.error("call log: the database has not taken a webhook's entries within %.1f s; "
                      "they are held until it does", JOURNAL_WAIT)  # fmt: skip
            return ()
        return written


def _links(base: str, lang: str) -> twiml.Links:
    """The links of a reply, twiml.STEP standing for the number of the step they lead to."""
    seq = twiml.STEP
    return twiml.Links(
        keys=f"{base}/voice/in/{seq}",
        silence=f"{base}/voice/silence/{seq}",
        transfer=f"{base}/voice/transfer/{seq}",
        record=f"{base}/voice/recorded/{seq}",
        wait=f"{base}/voice/wait/{lang}",
    )


def _entries(now: datetime.datetime, logs: tuple[Log, ...]) -> list[Entry]:
    return [Entry(now, entry.kind, entry.as_dict()) for entry in logs]


def _caller_key(pepper: str) -> Callable[[str], str]:
    """A caller's number as a keyed hash (HMAC-SHA256 with the pepper): Redis never sees it."""

    def key(number: str) -> str:
        return hmac.new(pepper.encode(), b"caller:" + number.encode(), hashlib.sha256).hexdigest()

    return key


def _started(hook: Webhook, event: Event, now: datetime.datetime) -> list[Write]:
    """The call's start, to write with the entries of a webhook that starts a call."""
    return [Started(hook.call_sid, hook.caller, now)] if isinstance(event, Start) else []


def _database_away(exc: BaseException) -> bool:
    """Whether a failed write may succeed later as it is: the database is out of reach or busy
    (SQLite: locked), rather than refusing these writes."""
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or bool(
        getattr(exc, "connection_invalidated", False)
    )


def _kind(exc: BaseException) -> str:
    """An exception's class name only: its text may quote request data."""
    return type(exc).__name__


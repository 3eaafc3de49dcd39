"""The console's routes under `/supervisor`: thin, each one asks a module and renders.

Every route is guarded (`auth.guard`): pages redirect to the sign-in page and
`/supervisor/api/...` answers 401 without a session; unsafe methods need the
CSRF token. Each view of a call, replay, message played and export is audited.
"""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..calllog import CallRecord
from . import audio, auth, outcomes, present, replay
from .audit import ACTIONS
from .calls import Period, masked
from .export import to_csv
from .metrics import Dashboard

bp = Blueprint(
    "supervisor",
    __name__,
    url_prefix="/supervisor",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
bp.before_request(auth.guard)


# Requests that show no call the page did not already: its files, a prompt's audio for a
# replay (of a timeline read when the replay began), a voice message, signing out.
READ_NO_NEW_CALLS = frozenset({"supervisor.static", "supervisor.api_audio",
                               "supervisor.callback_message", "supervisor.logout"})  # fmt: skip


@bp.before_request
def _up_to_date() -> None:
    """A signed-in supervisor sees every webhook answered so far (the outbox moved first)."""
    if g.get("supervisor") is not None and request.endpoint not in READ_NO_NEW_CALLS:
        auth.console().catch_up()

DEFAULT_DAYS = 7
MAX_DAYS = 366
AUTH_RESULTS = ("ok", "wrong", "invalid_id", "locked", "unavailable", "none")
LANGS = ("cmn-CN", "en-US")
FILTERS = ("from", "to", "outcome", "node", "auth", "lang")
RECORDINGS = "https://api.twilio.com"  # where Twilio keeps voice messages
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "supervisor.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global("csrf_token")
def _csrf_token() -> str:
    return auth.csrf_token()


@bp.context_processor
def _context() -> dict[str, Any]:
    parts = auth.console()
    return {
        "zone": str(parts.zone),
        "local": lambda moment: present.local(moment, parts.zone),
        "duration": present.duration,
        "percent": present.percent,
        "describe_outcome": outcomes.describe,
        "me": getattr(g, "supervisor", None),
    }


# --- errors --------------------------------------------------------------------------


@bp.errorhandler(redis.RedisError)
@bp.errorhandler(sa.exc.SQLAlchemyError)
def _unavailable(exc: Exception) -> tuple[Response | str, int]:
    what = "Redis" if isinstance(exc, redis.RedisError) else "the database"
    message = f"The console cannot reach {what} right now; try again in a moment."
    if auth.is_api():
        return jsonify(error=message), 503
    return render_template("supervisor/error.html", message=message, code=503), 503


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    message = exc.description or exc.name
    if auth.is_api():
        return jsonify(error=message), code
    return render_template("supervisor/error.html", message=message, code=code), code


# --- signing in and out --------------------------------------------------------------


@bp.route("/", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """The sign-in page."""
    parts = auth.console()
    target = request.values.get("next")
    if request.method == "GET":
        if auth.signed_in() is not None:
            return redirect(auth.safe_next(target))
        return render_template("supervisor/login.html", next=target or "")
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    client = auth.client_address()
    wait = parts.store.blocked_for(username, client)
    if wait:
        minutes = -(-wait // 60)
        error = f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes != 1)}."
        return render_template("supervisor/login.html", next=target or "", error=error), 429
    supervisor = parts.accounts.authenticate(username, password)
    if supervisor is None:
        parts.store.record_failure(username, client)
        known = parts.accounts.get(username) is not None
        parts.audit.record(
            username.strip().lower() if known else "(unknown)", "login-failed", client=client
        )
        error = "Wrong username or password."
        return render_template("supervisor/login.html", next=target or "", error=error), 401
    parts.store.clear_failures(username)
    auth.sign_in(supervisor)
    parts.audit.record(supervisor.username, "login", client=client)
    return redirect(auth.safe_next(target))


@bp.post("/logout")
def logout() -> Response:
    """Sign out (a POST with the CSRF token, so no other site can sign anyone out)."""
    auth.console().audit.record(auth.current().username, "logout", client=auth.client_address())
    auth.sign_out()
    flash("You are signed out.")
    return redirect(url_for("supervisor.login"))


# --- calls ---------------------------------------------------------------------------


@bp.route("/calls", methods=["GET", "POST"])
def calls() -> Response | str:
    """The calls list: newest first, filtered, paged. The filter form is POSTed and answered
    with a redirect whose URL holds the caller's number only as its keyed hash and mask, so the
    full number stays out of URLs, browser history and access logs."""
    parts = auth.console()
    if request.method == "POST":
        query: dict[str, Any] = {
            k: v.strip() for k, v in request.form.items() if k in FILTERS and v.strip()
        }
        typed = request.form.get("caller", "").strip()
        if typed:
            query["ck"], query["cm"] = list(parts.calls.caller_keys(typed)), masked(typed)
            if not query["ck"]:
                flash("caller: not a phone number")
                del query["ck"], query["cm"]
        elif request.form.getlist("ck"):
            query["ck"], query["cm"] = request.form.getlist("ck"), request.form.get("cm", "")
        return redirect(url_for("supervisor.calls", **query))
    flt, problems = parts.calls.filter(request.args, request.args.getlist("ck"))
    page = parts.calls.page(flt, _int(request.args.get("page"), 1))
    choices = parts.calls.choices()
    return render_template(
        "supervisor/calls.html",
        page=page,
        args=request.args,
        problems=problems,
        labels=outcomes.LABELS,
        nodes=choices["nodes"],
        langs=sorted({*LANGS, *choices["langs"]}),
        auth_results=AUTH_RESULTS,
        caller_keys=request.args.getlist("ck"),
        caller_mask=request.args.get("cm", ""),
        any_caller_url=_calls_url(request.args.to_dict(flat=False), drop=("ck", "cm", "page")),
        page_url=lambda n: _calls_url({**request.args.to_dict(flat=False), "page": [str(n)]}),
    )


@bp.get("/calls/<call_sid>")
def call(call_sid: str) -> str:
    """A call's page: its summary, its timeline, the replay player."""
    record, row = _call(call_sid)
    _audit("view", call_sid)
    return render_template(
        "supervisor/call.html",
        record=record,
        row=row,
        timeline=_timeline(record),
        speech=auth.console().speech.available,
        recordings=_recordings(record),
    )


@bp.get("/api/calls")
def api_calls() -> Response:
    """The calls list as JSON (same filters as the page)."""
    parts = auth.console()
    flt, problems = parts.calls.filter(request.args, request.args.getlist("ck"))
    page = parts.calls.page(flt, _int(request.args.get("page"), 1))
    return jsonify(
        calls=[_summary(r) for r in page.rows],
        total=page.total,
        page=page.page,
        pages=page.pages,
        problems=problems,
    )


@bp.get("/api/calls/<call_sid>")
def api_call(call_sid: str) -> Response:
    """A call's timeline as JSON (audited as a view)."""
    record, row = _call(call_sid)
    _audit("view", call_sid)
    return jsonify(
        call_sid=record.call_sid,
        started_at=record.started_at.isoformat(),
        caller=record.caller,
        outcome=row.label,
        auth=record.auth,
        duration=record.duration,
        timeline=_timeline(record),
    )


@bp.post("/api/calls/<call_sid>/replay")
def api_replay(call_sid: str) -> Response:
    """The replay plan of a call, with links to its speech (audited as a replay)."""
    record, _ = _call(call_sid)
    policy: replay.Policy = "full" if request.values.get("policy") == "full" else "call"
    parts = auth.console()
    lengths = _prompt_lengths(record)
    plan = replay.plan(record, lambda index, text: lengths[index], policy)
    _audit("replay", call_sid, detail=f"policy={policy}")
    token = parts.replay_token(call_sid, auth.current().id)
    speaking = parts.speech.available
    return jsonify(
        call_sid=call_sid,
        policy=plan.policy,
        length=plan.length,
        speech=speaking,
        dtmf={k: list(v) for k, v in replay.DTMF.items()},
        cues=[
            {
                "index": c.index,
                "kind": c.kind,
                "start": round(c.start, 3),
                "length": round(c.length, 3),
                "offset": round(c.offset, 3),
                "tones": c.tones,
                "cut": c.cut,
                "audio": url_for(
                    "supervisor.api_audio", call_sid=call_sid, index=c.index, token=token
                )
                if c.kind == "prompt" and speaking
                else None,
            }
            for c in plan.cues
        ],
    )


@bp.get("/api/calls/<call_sid>/audio/<int:index>")
def api_audio(call_sid: str, index: int) -> Response:
    """One prompt of a replay as speech (WAV); only with the token its replay gave."""
    parts = auth.console()
    if not parts.replay_token_ok(request.args.get("token", ""), call_sid, auth.current().id):
        abort(403, description="Start the replay again: this audio link has expired.")
    record, _ = _call(call_sid)
    if not 0 <= index < len(record.timeline) or record.timeline[index].kind != "prompt":
        abort(404, description="That step of the call is not a prompt.")
    text = present.scrub(str(record.timeline[index].data.get("text", "")))
    clip = parts.speech.clip(text, replay.voice_for(text))
    if clip is None:
        abort(503, description="Speech is not available on this server (espeak-ng).")
    response = send_file(clip, mimetype="audio/wav", conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# --- dashboard -----------------------------------------------------------------------


@bp.get("/dashboard")
def dashboard() -> str:
    """The dashboard for a period: figures, charts, CSV links."""
    period, problems = _period()
    board = auth.console().metrics.dashboard(period)
    return render_template(
        "supervisor/dashboard.html",
        board=board,
        period=period,
        problems=problems,
        charts=_charts(board),
        tables=board.tables(),
    )


@bp.get("/api/dashboard")
def api_dashboard() -> Response:
    """The dashboard's figures as JSON."""
    period, problems = _period()
    board = auth.console().metrics.dashboard(period)
    return jsonify(
        tables={name: {"header": h, "rows": rows} for name, (h, rows) in board.tables().items()},
        charts=_charts(board),
        problems=problems,
    )


@bp.get("/dashboard/<table>.csv")
def dashboard_csv(table: str) -> Response:
    """One of the dashboard's tables as CSV (audited as an export)."""
    period, _ = _period()
    tables = auth.console().metrics.dashboard(period).tables()
    if table not in tables:
        abort(404, description="There is no such table.")
    header, rows = tables[table]
    _audit("export", "", detail=f"dashboard {table} {period.first}..{period.last}")
    name = f"hotline-{table}-{period.first}-{period.last}.csv"
    return Response(
        to_csv(header, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- callbacks -----------------------------------------------------------------------


@bp.get("/callbacks")
def callbacks() -> Response:
    """Callback requests: open ones first, with their messages."""
    parts = auth.console()
    show = request.args.get("show", "open")
    done = {"open": False, "done": True}.get(show)
    page = _int(request.args.get("page"), 1)
    items, total = parts.callbacks.requests(done=done, limit=50, offset=(page - 1) * 50)
    _audit("callbacks", "", detail=f"{show}, page {page}")
    page_html = render_template(
        "supervisor/callbacks.html",
        items=items,
        total=total,
        show=show,
        page=page,
        recorded=parts.callbacks.recorded,
    )
    response = make_response(page_html)
    # the messages are the carrier's recordings: the one place media may come from elsewhere
    response.headers["Content-Security-Policy"] = CSP.replace(
        "media-src 'self' blob:", f"media-src 'self' blob: {RECORDINGS}"
    )
    return response


@bp.post("/callbacks/<int:request_id>/done")
def callback_done(request_id: int) -> Response:
    """Mark a callback request done."""
    parts = auth.console()
    found = parts.callbacks.get(request_id)
    if found is None:
        abort(404, description="There is no such callback request.")
    if parts.callbacks.mark_done(request_id, auth.current().username):
        _audit("callback-done", found.call_sid, detail=f"request {request_id}")
        flash("Marked done.")
    return redirect(url_for("supervisor.callbacks", show=request.form.get("show", "open")))


@bp.get("/callbacks/<int:request_id>/message")
def callback_message(request_id: int) -> Response:
    """A callback request's voice message (audited)."""
    parts = auth.console()
    found = parts.callbacks.get(request_id)
    if found is None:
        abort(404, description="There is no such callback request.")
    message = parts.callbacks.message(request_id)
    _audit("callback-play", found.call_sid, detail=f"request {request_id}")
    if message is None:
        if found.recording_url and found.recording_url.startswith(RECORDINGS + "/"):
            return redirect(found.recording_url)
        abort(404, description="This message's recording is not kept by the hotline.")
    return Response(message.data, mimetype=message.mimetype)


# --- audit trail ---------------------------------------------------------------------


@bp.get("/audit")
def audit() -> str:
    """The audit trail: who looked at what, newest first."""
    page = _int(request.args.get("page"), 1)
    size = 100
    entries, total = auth.console().audit.page(
        username=request.args.get("user", "").strip().lower(),
        call_sid=request.args.get("call", "").strip(),
        action=request.args.get("action", "").strip(),
        limit=size,
        offset=(page - 1) * size,
    )
    return render_template(
        "supervisor/audit.html",
        entries=entries,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
        args=request.args,
        actions=ACTIONS,
        page_url=lambda n: url_for("supervisor.audit", **{**request.args, "page": n}),
    )


# --- helpers -------------------------------------------------------------------------


def _call(call_sid: str) -> tuple[CallRecord, Any]:
    parts = auth.console()
    record = parts.calllog.get(call_sid)
    row = parts.calls.row(call_sid)
    if record is None or row is None:
        abort(404, description="There is no such call in the call log.")
    return record, row


def _calls_url(args: dict[str, list[str]], drop: tuple[str, ...] = ()) -> str:
    """The calls list's URL with these arguments (repeated ones kept)."""
    kept: dict[str, Any] = {k: v for k, v in args.items() if k not in drop}
    return url_for("supervisor.calls", **kept)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "call_sid": row.call_sid,
        "started_at": row.started_at.isoformat(),
        "caller": row.caller,
        "lang": row.lang,
        "last_node": row.last_node,
        "auth": row.auth,
        "outcome": row.label,
        "status": row.status,
        "duration": row.duration,
    }


def _audit(action: str, call_sid: str, detail: str = "") -> None:
    auth.console().audit.record(
        auth.current().username,
        action,
        call_sid=call_sid,
        detail=detail,
        client=auth.client_address(),
    )


def _timeline(record: CallRecord) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "offset": round((entry.at - record.started_at).total_seconds(), 2),
            "kind": entry.kind,
            "name": present.kind_name(entry.kind),
            "text": present.describe(entry),
        }
        for index, entry in enumerate(record.timeline)
    ]


def _recordings(record: CallRecord) -> list[str]:
    """Links to the carrier's recordings of the call, where the log holds any."""
    urls = (str(e.data.get("url") or e.data.get("recording_url") or "") for e in record.timeline)
    return [u for u in urls if u.startswith("https://")]


def _prompt_lengths(record: CallRecord) -> dict[int, float]:
    """Seconds each prompt of the call takes to say: rendered (in parallel), else estimated."""
    speech = auth.console().speech
    prompts = {
        i: present.scrub(str(e.data.get("text", "")))
        for i, e in enumerate(record.timeline)
        if e.kind == "prompt"
    }

    def length(text: str) -> float:
        clip = speech.clip(text, replay.voice_for(text)) if speech.available else None
        return audio.seconds(clip) if clip is not None else replay.estimate(text)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(prompts, pool.map(length, prompts.values()), strict=True))


def _period() -> tuple[Period, list[str]]:
    zone = auth.console().zone
    today = datetime.datetime.now(zone).date()
    problems: list[str] = []
    first = _day(request.args.get("from"), "from", problems)
    last = _day(request.args.get("to"), "to", problems) or today
    first = first or last - datetime.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        problems.append("from: after to; showing the one day")
        first = last
    if (last - first).days >= MAX_DAYS:
        problems.append(f"the period is limited to {MAX_DAYS} days")
        first = last - datetime.timedelta(days=MAX_DAYS - 1)
    return Period(first, last, zone), problems


def _day(value: str | None, name: str, problems: list[str]) -> datetime.date | None:
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"{name}: not a date (YYYY-MM-DD)")
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def _charts(board: Dashboard) -> dict[str, Any]:
    """The data the dashboard's charts draw."""
    several_days = board.period.last > board.period.first
    hour_format = "%m-%d %H:00" if several_days else "%H:00"
    labels = [lbl for lbl in outcomes.LABELS if board.by_label.get(lbl)]
    labels += [lbl for lbl in board.by_label if lbl not in outcomes.LABELS]
    return {
        "hourly": {
            "labels": [hour.strftime(hour_format) for hour, _ in board.hourly],
            "values": [n for _, n in board.hourly],
        },
        "outcomes": {
            "labels": [outcomes.describe(lbl) for lbl in labels],
            "keys": labels,
            "values": [board.by_label[lbl] for lbl in labels],
        },
        "funnel": {
            "labels": [s.node for s in board.funnel],
            "reached": [s.reached for s in board.funnel],
            "abandoned": [s.abandoned for s in board.funnel],
        },
        "auth": {
            "labels": ["authentication failures", "calls with failures", "locks"],
            "values": [board.auth_failures, board.auth_failed_calls, board.locks],
        },
        "ratings": {
            "labels": sorted(board.ratings),
            "values": [board.ratings[k] for k in sorted(board.ratings)],
        },
    }

"""The `ivr` command: serve the hotline, call it, manage accounts, read the call log."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from services.accounts import demo, idnumber
from services.accounts.db import make_engine
from services.accounts.errors import ImportFailed
from services.accounts.store import AccountStore

from . import embedded, store
from .callbacks import Callbacks
from .calllog import CallLog
from .config import ConfigError, Settings
from .outbox import Outbox
from .supervisor.accounts import AccountError, SupervisorAccounts
from .supervisor.audit import AuditTrail


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded.ensure(settings.instance_path)


def _account_store(settings: Settings) -> AccountStore:
    accounts = AccountStore(make_engine(settings.database_url), settings.pin_pepper)
    accounts.create_schema()
    return accounts


def _call_log(settings: Settings) -> CallLog:
    log = CallLog(make_engine(settings.database_url))
    log.create_schema()
    return log


def _written_log(settings: Settings) -> CallLog:
    """The call log with every webhook answered so far in it (the outbox moved first)."""
    log = _call_log(settings)
    client = store.connect(_redis_url(settings), settings.redis_timeout)
    try:
        if not Outbox(store.Store(client), log).catch_up():
            click.echo("warning: the call log could not be brought up to date (is Redis up?); "
                       "the last webhooks may be missing", err=True)  # fmt: skip
    finally:
        client.close()
    return log


@click.group()
def main() -> None:
    """Hotline 12333: a telephone self-service hotline for medical-insurance accounts."""


# --- serve --------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn workers.")
@click.option("--threads", type=int,
              help="Threads per worker, with --worker-class gthread  [default: 16]")  # fmt: skip
@click.option("--worker-class", type=click.Choice(["gthread", "sync", "gevent"]),
              help="gunicorn worker class  [default: gevent]")  # fmt: skip
@click.option("--demo", "with_demo", is_flag=True, help="Load the demo accounts first.")
@click.option("--dev", is_flag=True, help="Development mode: sign webhooks with a local token.")
def serve(
    host: str, port: int, workers: int, threads: int | None, worker_class: str | None,
    with_demo: bool, dev: bool,
) -> None:  # fmt: skip
    """Run the hotline with gunicorn (embedded Redis and SQLite unless configured), with the
    settings in ivr/gunicorn_conf.py (gevent workers). --threads alone means threaded workers."""
    if threads is not None:
        if worker_class not in (None, "gthread"):
            raise click.UsageError(f"--threads is for threaded workers (--worker-class gthread); "
                                   f"{worker_class} workers have none")  # fmt: skip
        worker_class = "gthread"
    if dev:
        os.environ["IVR_DEV_MODE"] = "1"
    settings = _settings()
    os.environ["IVR_INSTANCE_PATH"] = str(settings.instance_path)
    if not settings.redis_url:
        os.environ["REDIS_URL"] = embedded.ensure(settings.instance_path)
        click.echo(f"Embedded Redis: {os.environ['REDIS_URL']}")
    accounts = _account_store(settings)
    if with_demo:
        click.echo(f"Demo accounts loaded: {demo.load_demo(accounts)}")
    accounts.engine.dispose()
    click.echo(f"Database: {settings.database_url}")
    click.echo(f"Hotline answering on http://{host}:{port}/voice")
    if dev:
        click.echo("Dial it from another terminal:  ivr call")
    gunicorn = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    args = [gunicorn, "--config", "python:ivr.gunicorn_conf", "--workers", str(workers),
            "--bind", f"{host}:{port}", "--access-logfile", "-"]  # fmt: skip
    if threads is not None:
        args += ["--threads", str(threads)]
    if worker_class is not None:
        args += ["--worker-class", worker_class]
    args.append("ivr:create_app()")
    os.execv(gunicorn, args)


# --- call ---------------------------------------------------------------------------


@main.command()
@click.argument("url", default="http://127.0.0.1:8000/voice")
@click.option("--from", "from_", default="+8613800138000", show_default=True)
@click.option("--to", default="+8612333", show_default=True)
@click.option("--speak/--no-speak", default=True, help="Speak prompts with espeak-ng if installed.")
def call(url: str, from_: str, to: str, speak: bool) -> None:
    """Dial the hotline from this terminal: read (and hear) prompts, type keys."""
    from .phone import console_call

    settings = _settings()
    token = settings.twilio_auth_token
    dev_token = settings.instance_path / "dev-auth-token"
    if not token and dev_token.exists():
        token = dev_token.read_text().strip()
    if not token:
        raise click.ClickException(
            "no token to sign with: set TWILIO_AUTH_TOKEN to the hotline's, or start it with "
            "`ivr serve --dev` from this folder"
        )
    status_url = url.rstrip("/") + "/status"
    sys.exit(console_call(url, token, from_=from_, to=to, speak=speak, status_url=status_url))


# --- accounts -----------------------------------------------------------------------


@main.group()
def accounts() -> None:
    """Account data: import, demo accounts, unlock."""


@accounts.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Import accounts from a JSON file (SPEC 7): all or nothing."""
    try:
        count = _account_store(_settings()).import_file(file)
    except ImportFailed as exc:
        raise click.ClickException(f"nothing imported: {exc}") from None
    click.echo(f"Imported {count} account{'s' if count != 1 else ''} from {file}.")


@accounts.command("demo")
def demo_() -> None:
    """Load the demo accounts (their ID numbers and PINs are in the README)."""
    click.echo(f"Loaded {demo.load_demo(_account_store(_settings()))} demo accounts.")


@accounts.command()
@click.argument("id_number")
def unlock(id_number: str) -> None:
    """Lift the 24-hour lock on an ID number (after too many wrong PINs)."""
    normalized = idnumber.normalize(id_number.strip())
    if not idnumber.is_valid(normalized):
        raise click.ClickException("that is not a valid 18-character ID number (check digit)")
    settings = _settings()
    client = store.connect(_redis_url(settings), 2.0)
    try:
        was = store.Store(client).unlock(idnumber.digest(settings.pin_pepper, normalized))
    finally:
        client.close()
    masked = idnumber.mask(normalized)
    click.echo(f"{masked}: unlocked." if was else f"{masked}: was not locked; failures reset.")


# --- calls --------------------------------------------------------------------------


@main.group()
def calls() -> None:
    """The call log: list calls, show one call's timeline."""


@calls.command("list")
@click.option("--limit", default=20, show_default=True, type=int)
def list_(limit: int) -> None:
    """The newest calls first."""
    records = _written_log(_settings()).recent(limit)
    if not records:
        click.echo("No calls yet.")
        return
    click.echo(f"{'started (UTC)':19}  {'call':34}  {'caller':14}  {'secs':>5}  "
               f"{'auth':8}  {'last menu':13}  outcome")  # fmt: skip
    for r in records:
        secs = "" if r.duration is None else str(r.duration)
        click.echo(f"{r.started_at:%Y-%m-%d %H:%M:%S}  {r.call_sid:34}  {r.caller:14}  "
                   f"{secs:>5}  {r.auth or '-':8}  {r.last_node or '-':13}  "
                   f"{r.outcome}")  # fmt: skip


@calls.command()
@click.argument("call_sid")
def show(call_sid: str) -> None:
    """One call's timeline, redacted as it was written."""
    record = _written_log(_settings()).get(call_sid)
    if record is None:
        raise click.ClickException(f"no call {call_sid} in the call log")
    started = f"{record.started_at:%Y-%m-%d %H:%M:%S}"
    click.echo(f"Call {record.call_sid} from {record.caller}, {started} UTC")
    click.echo(f"outcome {record.outcome}, auth {record.auth or '-'}, "
               f"duration {record.duration if record.duration is not None else '?'} s")  # fmt: skip
    for entry in record.timeline:
        offset = (entry.at - record.started_at).total_seconds()
        data = "  ".join(f"{k}={_show(v)}" for k, v in entry.data.items())
        click.echo(f"  +{offset:7.2f}s  {entry.kind:14} {data}")


# --- callbacks ----------------------------------------------------------------------


@main.group()
def callbacks() -> None:
    """Voice messages left when no agent could answer: who to call back."""


@callbacks.command("list")
@click.option("--all", "include_done", is_flag=True, help="Include the ones already done.")
def callbacks_list(include_done: bool) -> None:
    """Callback requests, newest first."""
    settings = _settings()
    _call_log(settings)  # makes the tables on a fresh database
    requests_ = Callbacks(make_engine(settings.database_url)).list(include_done=include_done)
    if not requests_:
        click.echo("No callback requests." if include_done else "No open callback requests.")
        return
    for r in requests_:
        who = f"ID {r.id_masked}" if r.id_masked else "not authenticated"
        click.echo(f"#{r.id:<5} {r.created_at:%Y-%m-%d %H:%M} UTC  {r.caller:16} {who:28} "
                   f"{r.lang}  {r.duration:>4}s  {r.status:5} {r.recording_url}")  # fmt: skip


@callbacks.command("done")
@click.argument("request_id", type=int)
@click.option("--by", default=lambda: os.environ.get("USER", "operator"), show_default="$USER")
def callbacks_done(request_id: int, by: str) -> None:
    """Mark a callback request as called back."""
    settings = _settings()
    done = Callbacks(make_engine(settings.database_url)).mark_done(
        request_id, by, datetime.datetime.now(datetime.UTC)
    )
    if not done:
        raise click.ClickException(f"no open callback request #{request_id}")
    click.echo(f"#{request_id}: done.")


# --- menu -----------------------------------------------------------------------------


@main.group("menu")
def menu_() -> None:
    """The call flow table."""


@menu_.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("docs/menu.md"), show_default=True)  # fmt: skip
@click.option("--check", is_flag=True, help="Only check that the file is up to date.")
def render(output: Path, check: bool) -> None:
    """Write the menu tree (every node, prompts in both languages, keys) as Markdown."""
    from . import catalog, menu, menudoc

    text = menudoc.render(menu.load(), catalog.load())
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            raise click.ClickException(f"{output} is stale: run `ivr menu render`")
        click.echo(f"{output} is up to date.")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {output}.")


@calls.command()
@click.argument("call_sid")
def replay(call_sid: str) -> None:
    """Re-drive a recorded call through the current menu and show where it now differs
    (sandbox account data; exit 0 same, 1 different, 2 no such call)."""
    import zoneinfo

    from . import catalog, hours, menu
    from .machine import Context
    from .replay import render
    from .replay import replay as replay_call
    from .state import LANGS, Localized

    settings = _settings()
    record = _written_log(settings).get(call_sid)
    if record is None:
        click.echo(f"Error: no call {call_sid} in the call log", err=True)
        sys.exit(2)
    # Where the recording does not show whether agents answered, assume what this hotline's
    # configuration says for the moment the call was made.
    agent_hours = hours.parse(settings.agent_hours, settings.timezone, settings.holidays)
    exist = bool(settings.agent_queue or settings.agent_number)
    described = Localized(tuple((lang, agent_hours.describe(lang)) for lang in LANGS))
    context = Context(exist and agent_hours.is_open(record.started_at), exist, described)
    zone = zoneinfo.ZoneInfo(settings.timezone)
    result = replay_call(menu.load(), catalog.load(), record, context=context, zone=zone)
    click.echo(render(result))
    sys.exit(0 if result.identical else 1)


def _show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- supervisors --------------------------------------------------------------------


@main.group()
def supervisors() -> None:
    """Supervisor console accounts: add, list, remove, change a password."""


@contextlib.contextmanager
def _supervisor_accounts() -> Iterator[tuple[SupervisorAccounts, AuditTrail]]:
    engine = make_engine(_settings().database_url)
    try:
        accounts, audit = SupervisorAccounts(engine), AuditTrail(engine)
        accounts.create_schema()
        audit.create_schema()
        yield accounts, audit
    finally:
        engine.dispose()


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _cli_user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@supervisors.command("add")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def supervisors_add(username: str, password_stdin: bool) -> None:
    """Add a supervisor (asks for the password twice unless --password-stdin)."""
    password = _new_password(password_stdin)
    with _supervisor_accounts() as (accounts, audit):
        try:
            added = accounts.add(username, password)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
        audit.record(_cli_user(), "account", detail=f"added {added.username}")
    click.echo(f"Supervisor {added.username} added; sign in at /supervisor/.")


@supervisors.command("list")
def supervisors_list() -> None:
    """Every supervisor, with when they last signed in."""
    with _supervisor_accounts() as (accounts, _):
        found = accounts.all()
    if not found:
        click.echo("No supervisors yet: add one with `ivr supervisors add USERNAME`.")
        return
    click.echo(f"{'username':24}  {'added (UTC)':16}  last sign-in (UTC)")
    for s in found:
        last = f"{s.last_login_at:%Y-%m-%d %H:%M}" if s.last_login_at else "never"
        click.echo(f"{s.username:24}  {s.created_at:%Y-%m-%d %H:%M}  {last}")


@supervisors.command("remove")
@click.argument("username")
def supervisors_remove(username: str) -> None:
    """Remove a supervisor (signed out at once; the audit trail keeps their name)."""
    with _supervisor_accounts() as (accounts, audit):
        if not accounts.remove(username):
            raise click.ClickException(f"there is no supervisor called {username!r}")
        audit.record(_cli_user(), "account", detail=f"removed {username.strip().lower()}")
    click.echo(f"Supervisor {username.strip().lower()} removed.")


@supervisors.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def supervisors_passwd(username: str, password_stdin: bool) -> None:
    """Change a supervisor's password (their open sessions end)."""
    with _supervisor_accounts() as (accounts, audit):
        if accounts.get(username) is None:
            raise click.ClickException(f"there is no supervisor called {username!r}")
        try:
            accounts.set_password(username, _new_password(password_stdin))
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
        audit.record(_cli_user(), "account", detail=f"password of {username.strip().lower()}")
    click.echo(f"Password of {username.strip().lower()} changed; their sessions have ended.")


if __name__ == "__main__":
    main()

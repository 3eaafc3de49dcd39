"""The supervisor console's doors: accounts, sign-in, sessions, CSRF, throttling, the audit trail,
and that no route answers without a session. Against the real Redis and database."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from gevent_worker import ticks_during

from ivr import create_app
from ivr.calllog import Entry
from ivr.cli import main
from ivr.config import Settings
from ivr.supervisor import Console
from ivr.supervisor.accounts import AccountError, SupervisorAccounts
from ivr.supervisor.audit import AuditTrail
from ivr.supervisor.store import Limits
from services.accounts.db import make_engine

PASSWORD = "correct horse battery"
T0 = datetime.datetime(2026, 11, 20, 2, 0, tzinfo=datetime.UTC)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, database_url: str) -> Settings:
    env = {
        "IVR_INSTANCE_PATH": str(tmp_path),
        "TWILIO_AUTH_TOKEN": "t",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "IVR_PIN_PEPPER": "pepper-" + uuid.uuid4().hex,
    }
    return Settings.from_env(env)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


@pytest.fixture
def console(app: Flask) -> Console:
    found: Console = app.extensions["ivr.supervisor"]
    return found


@pytest.fixture
def user(console: Console) -> str:
    """A supervisor with a name of its own (throttles in the shared Redis never collide)."""
    name = f"sup-{uuid.uuid4().hex[:10]}"
    console.accounts.add(name, PASSWORD)
    return name


def new_client(app: Flask, address: str | None = None) -> FlaskClient:
    """A browser from an address of its own (so per-address throttles do not collide)."""
    octets = uuid.uuid4().bytes[:3]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address or "10." + ".".join(str(b) for b in octets)
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return new_client(app)


def csrf_of(client: FlaskClient, path: str = "/supervisor/") -> str:
    page = client.get(path, follow_redirects=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD, **extra: str):  # type: ignore[no-untyped-def]
    token = csrf_of(client)
    return client.post(
        "/supervisor/",
        data={"username": username, "password": password, "csrf_token": token, **extra},
    )


@pytest.fixture
def signed_in(client: FlaskClient, user: str) -> FlaskClient:
    reply = sign_in(client, user)
    assert reply.status_code == 302, reply.text
    return client


def a_call(console: Console) -> str:
    sid = "CA" + uuid.uuid4().hex
    console.calllog.start(sid, "+8613800138000", T0)
    console.calllog.append(
        sid,
        [
            Entry(T0, "menu", {"node": "main"}),
            Entry(T0, "prompt", {"key": "main.menu", "text": "查询余额请按1"}),
            Entry(T0 + datetime.timedelta(seconds=5), "key", {"node": "main", "keys": "1"}),
        ],
    )
    console.calllog.end(sid, "completed", 9, T0 + datetime.timedelta(seconds=9))
    return sid


# --- accounts ------------------------------------------------------------------------


def test_passwords_are_kept_as_scrypt_hashes_only(console: Console, user: str) -> None:
    import sqlalchemy as sa

    from ivr.supervisor.accounts import supervisors

    with console.accounts.engine.connect() as conn:
        stored = conn.execute(
            sa.select(supervisors.c.password_hash).where(supervisors.c.username == user)
        ).scalar_one()
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    assert console.accounts.authenticate(user, PASSWORD) is not None
    assert console.accounts.authenticate(user.upper(), PASSWORD) is not None  # names ignore case
    assert console.accounts.authenticate(user, PASSWORD + "x") is None
    assert console.accounts.authenticate("nobody-" + user, PASSWORD) is None


@pytest.mark.parametrize(
    ("username", "password", "problem"),
    [
        ("a", PASSWORD, "2-64"),
        ("has space", PASSWORD, "2-64"),
        ("ok-name", "short", "at least"),
        ("ok-name", " padded password ", "whitespace"),
    ],
)
def test_unfit_names_and_passwords_are_refused(
    console: Console, username: str, password: str, problem: str
) -> None:
    with pytest.raises(AccountError, match=problem):
        console.accounts.add(username, password)


def test_a_name_is_taken_once(console: Console, user: str) -> None:
    with pytest.raises(AccountError, match="already"):
        console.accounts.add(user.upper(), PASSWORD)


def test_the_cli_adds_lists_changes_and_removes_supervisors(settings: Settings) -> None:
    env = {
        "IVR_INSTANCE_PATH": str(settings.instance_path),
        "DATABASE_URL": settings.database_url,
        "IVR_PIN_PEPPER": settings.pin_pepper,
    }
    runner = CliRunner(env=env)

    def ivr(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(main, ["supervisors", *args], input=stdin)

    added = ivr("add", "Wang.Fang", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "wang.fang added" in added.output and PASSWORD not in added.output
    assert ivr("add", "wang.fang", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 1
    weak = ivr("add", "li.lei", "--password-stdin", stdin="short\n")
    assert weak.exit_code == 1 and "at least 10" in weak.output
    prompted = ivr("add", "li.lei", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output  # the prompt does not echo it
    mismatch = ivr("add", "zhao.lei", stdin=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    listed = ivr("list")
    assert listed.exit_code == 0 and "wang.fang" in listed.output and "li.lei" in listed.output
    assert "never" in listed.output and "zhao.lei" not in listed.output
    engine = make_engine(settings.database_url)
    accounts = SupervisorAccounts(engine)
    assert accounts.authenticate("wang.fang", PASSWORD) is not None
    changed = ivr("passwd", "wang.fang", "--password-stdin", stdin="another good password\n")
    assert changed.exit_code == 0, changed.output
    assert accounts.authenticate("wang.fang", PASSWORD) is None
    assert accounts.authenticate("wang.fang", "another good password") is not None
    assert ivr("passwd", "nobody", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 1
    assert ivr("remove", "wang.fang").exit_code == 0
    assert ivr("remove", "wang.fang").exit_code == 1
    assert "wang.fang" not in ivr("list").output
    trail, _ = AuditTrail(engine).page(action="account")
    assert [e.detail for e in trail][:4] == [
        "removed wang.fang",
        "password of wang.fang",
        "added li.lei",
        "added wang.fang",
    ]
    engine.dispose()


# --- every route is closed without a session ----------------------------------------


def console_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, URL) of every console route but the sign-in page and static files."""
    values = {
        "call_sid": "CA0",
        "index": "0",
        "request_id": "1",
        "table": "summary",
        "filename": "x",
    }
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("supervisor.") or rule.endpoint in (
            "supervisor.login",
            "supervisor.static",
        ):
            continue
        url = rule.build({k: v for k, v in values.items() if k in rule.arguments})
        assert url is not None
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, url[1]))
    return routes


def test_the_console_has_the_routes_this_test_expects(app: Flask) -> None:
    urls = {url for _, url in console_routes(app)}
    assert {
        "/supervisor/calls",
        "/supervisor/calls/CA0",
        "/supervisor/dashboard",
        "/supervisor/audit",
        "/supervisor/callbacks",
        "/supervisor/api/calls",
        "/supervisor/api/calls/CA0/replay",
        "/supervisor/logout",
    } <= urls
    assert len(urls) >= 14


def test_without_a_session_pages_redirect_to_sign_in_and_apis_answer_401(
    app: Flask, client: FlaskClient
) -> None:
    for method, url in console_routes(app):
        reply = client.open(url, method=method)
        if url.startswith("/supervisor/api/"):
            assert reply.status_code == 401, (method, url)
            assert reply.json == {"error": "sign in first"}
        elif method == "GET":
            assert reply.status_code == 302, (method, url)
            assert reply.location.startswith("/supervisor/?next="), reply.location
        else:  # a POST without a session is refused before its CSRF token is even looked at
            assert reply.status_code == 302, (method, url)


def test_unsafe_methods_need_the_sessions_csrf_token(app: Flask, signed_in: FlaskClient) -> None:
    token = csrf_of(signed_in, "/supervisor/calls")
    posts = [url for method, url in console_routes(app) if method == "POST"]
    assert posts
    for url in posts:
        missing = signed_in.post(url)
        assert missing.status_code == 400, url
        wrong = signed_in.post(url, data={"csrf_token": token[:-2] + "xx"})
        assert wrong.status_code == 400, url
        header = signed_in.post(url, headers={"X-CSRF-Token": "not-" + token})
        assert header.status_code == 400, url
    assert signed_in.get("/supervisor/calls").status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_csrf_token_too(client: FlaskClient, user: str) -> None:
    client.get("/supervisor/")
    reply = client.post("/supervisor/", data={"username": user, "password": PASSWORD})
    assert reply.status_code == 400
    assert client.get("/supervisor/calls").status_code == 302


def test_static_files_and_the_sign_in_page_are_open(client: FlaskClient) -> None:
    assert client.get("/supervisor/").status_code == 200
    for name in ("supervisor.css", "replay.js", "dashboard.js", "vendor/chart.umd.min.js"):
        reply = client.get(f"/supervisor/static/{name}")
        assert reply.status_code == 200, name
        reply.close()


# --- signing in, sessions, cookies ---------------------------------------------------


def test_signing_in_leads_to_the_page_asked_for_and_never_off_site(
    client: FlaskClient, user: str
) -> None:
    first = client.get("/supervisor/dashboard?from=2026-11-01")
    assert first.status_code == 302
    reply = sign_in(client, user, next="/supervisor/dashboard?from=2026-11-01")
    assert reply.status_code == 302 and reply.location == "/supervisor/dashboard?from=2026-11-01"
    for evil in (
        "https://evil.example/",
        "//evil.example/supervisor/",
        "/voice",
        "/\\evil.example",
    ):
        again = new_client(client.application)
        assert sign_in(again, user, next=evil).location == "/supervisor/calls", evil


def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: FlaskClient, user: str
) -> None:
    wrong = sign_in(client, user, "wrong password!")
    unknown = sign_in(client, "nobody-" + user, PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert (
        "Wrong username or password." in wrong.text
        and "Wrong username or password." in unknown.text
    )
    assert client.get("/supervisor/calls").status_code == 302


def test_the_session_cookie_is_httponly_samesite_and_scoped(client: FlaskClient, user: str) -> None:
    reply = sign_in(client, user)
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("ivr_supervisor=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/supervisor" in cookie
    assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back


def test_over_https_the_cookie_is_secure(app: Flask, user: str) -> None:
    client = app.test_client()
    page = client.get("/supervisor/", base_url="https://console.example.org")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    reply = client.post(
        "/supervisor/",
        base_url="https://console.example.org",
        data={"username": user, "password": PASSWORD, "csrf_token": token[1]},
    )
    assert reply.status_code == 302
    assert "; Secure" in reply.headers["Set-Cookie"]


def test_a_public_https_base_url_makes_the_cookie_secure(settings: Settings, user: str) -> None:
    app = create_app(settings.with_(public_base_url="https://ivr.example.org"))
    try:
        client = new_client(app)
        page = client.get("/supervisor/")
        assert "; Secure" in page.headers["Set-Cookie"]  # the pre-sign-in CSRF cookie too
    finally:
        app.extensions["ivr"].outbox.stop()
        app.extensions["ivr.engine"].dispose()
        app.extensions["ivr"].store.redis.close()


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("ivr_supervisor", path="/supervisor")
    assert cookie is not None
    return cookie.value


def test_signing_in_rotates_the_session(app: Flask, client: FlaskClient, user: str) -> None:
    csrf_before = csrf_of(client)
    planted = session_cookie(client)  # what an attacker could have planted before sign-in
    sign_in(client, user)
    after = session_cookie(client)
    assert after != planted
    assert csrf_of(client, "/supervisor/calls") != csrf_before
    attacker = new_client(app)
    attacker.set_cookie("ivr_supervisor", planted, path="/supervisor")
    assert attacker.get("/supervisor/calls").status_code == 302
    # signing in again on the same browser starts another session; the first one is over
    first = after
    sign_in(client, user)
    copy = new_client(app)
    copy.set_cookie("ivr_supervisor", first, path="/supervisor")
    assert copy.get("/supervisor/calls").status_code == 302
    assert client.get("/supervisor/calls").status_code == 200


def test_signing_out_ends_the_session_everywhere(app: Flask, signed_in: FlaskClient) -> None:
    kept = session_cookie(signed_in)
    token = csrf_of(signed_in, "/supervisor/calls")
    reply = signed_in.post("/supervisor/logout", data={"csrf_token": token})
    assert reply.status_code == 302 and reply.location == "/supervisor/"
    assert signed_in.get("/supervisor/calls").status_code == 302
    stolen = new_client(app)
    stolen.set_cookie("ivr_supervisor", kept, path="/supervisor")  # a copy taken before
    assert stolen.get("/supervisor/calls").status_code == 302
    assert stolen.get("/supervisor/api/calls").status_code == 401


def test_a_password_change_or_removal_ends_open_sessions(
    console: Console, signed_in: FlaskClient, user: str
) -> None:
    assert signed_in.get("/supervisor/calls").status_code == 200
    console.accounts.set_password(user, "a brand new password")
    assert signed_in.get("/supervisor/calls").status_code == 302
    assert sign_in(signed_in, user, "a brand new password").status_code == 302
    assert signed_in.get("/supervisor/calls").status_code == 200
    console.accounts.remove(user)
    assert signed_in.get("/supervisor/calls").status_code == 302


def test_pages_are_not_cached_and_carry_a_strict_policy(signed_in: FlaskClient) -> None:
    reply = signed_in.get("/supervisor/calls")
    assert reply.headers["Cache-Control"] == "no-store"
    policy = reply.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in reply.text  # no inline script: the policy allows none


def test_templates_escape_what_they_show(console: Console, signed_in: FlaskClient) -> None:
    sid = "CA" + uuid.uuid4().hex
    console.calllog.start(sid, "+8613800138000", T0)
    console.calllog.append(
        sid,
        [
            Entry(T0, "prompt", {"key": "x", "text": "<script>alert(1)</script>"}),
            Entry(T0, "menu", {"node": "<b>main</b>"}),
        ],
    )
    page = signed_in.get(f"/supervisor/calls/{sid}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert (
        "<b>main</b>" not in page.text
        and "<b>main</b>" not in signed_in.get("/supervisor/calls").text
    )


# --- throttling ----------------------------------------------------------------------


def test_five_wrong_passwords_block_the_username_even_with_the_right_one(
    app: Flask, client: FlaskClient, user: str
) -> None:
    for _ in range(5):
        assert sign_in(client, user, "not the password").status_code == 401
    blocked = sign_in(client, user)
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    assert "15 minutes" in blocked.text
    elsewhere = new_client(app)  # the username is blocked from every address
    assert sign_in(elsewhere, user).status_code == 429
    assert client.get("/supervisor/calls").status_code == 302


def test_a_right_password_clears_the_usernames_failures(client: FlaskClient, user: str) -> None:
    for _ in range(4):
        sign_in(client, user, "not the password")
    assert sign_in(client, user).status_code == 302
    for _ in range(4):
        sign_in(new_client(client.application), user, "not the password")
    assert sign_in(new_client(client.application), user).status_code == 302


def test_many_failures_from_one_address_block_that_address(
    app: Flask, console: Console, user: str
) -> None:
    console.store.limits = Limits(per_user=5, per_ip=4, window=900)
    attacker = new_client(app)
    for n in range(4):
        assert sign_in(attacker, f"guess-{n}-{uuid.uuid4().hex[:6]}", "x" * 12).status_code == 401
    assert sign_in(attacker, user).status_code == 429  # even a real account, from there
    assert sign_in(new_client(app), user).status_code == 302  # from elsewhere it works


def test_throttles_expire_with_their_window(app: Flask, console: Console, user: str) -> None:
    console.store.limits = Limits(per_user=2, per_ip=50, window=1)
    client = new_client(app)
    sign_in(client, user, "wrong wrong wrong")
    sign_in(client, user, "wrong wrong wrong")
    assert sign_in(client, user).status_code == 429
    import time

    time.sleep(2.1)
    assert sign_in(client, user).status_code == 302


# --- the audit trail -----------------------------------------------------------------


def test_views_replays_and_exports_are_audited(
    console: Console, signed_in: FlaskClient, user: str
) -> None:
    sid = a_call(console)
    assert signed_in.get(f"/supervisor/calls/{sid}").status_code == 200
    assert signed_in.get(f"/supervisor/api/calls/{sid}").status_code == 200
    token = csrf_of(signed_in, "/supervisor/calls")
    plan = signed_in.post(f"/supervisor/api/calls/{sid}/replay", headers={"X-CSRF-Token": token})
    assert plan.status_code == 200, plan.text
    assert signed_in.get("/supervisor/dashboard/summary.csv").status_code == 200
    entries, _ = console.audit.page(username=user)
    seen = [(e.action, e.call_sid) for e in entries]
    assert seen[:5] == [
        ("export", ""),
        ("replay", sid),
        ("view", sid),
        ("view", sid),
        ("login", ""),
    ]
    assert all(e.username == user and e.client.startswith("10.") for e in entries)
    assert all(
        e.at > datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1) for e in entries
    )
    page = signed_in.get(f"/supervisor/audit?call={sid}")
    assert page.status_code == 200
    assert (
        page.text.count(sid) >= 3
        and "replayed a call" in page.text
        and "viewed a call" in page.text
    )
    assert user in page.text


def test_failed_sign_ins_are_audited_without_what_was_typed(
    console: Console, client: FlaskClient, user: str
) -> None:
    sign_in(client, user, "my secret attempt")
    sign_in(client, "my-password-typed-as-name", "x" * 12)
    entries, _ = console.audit.page(action="login-failed", limit=500)
    mine = [e for e in entries if e.client == client.environ_base["REMOTE_ADDR"]]  # type: ignore[index]
    assert [e.username for e in mine] == ["(unknown)", user]
    assert all("secret" not in repr(e) and "typed-as-name" not in repr(e) for e in entries)


def test_the_audit_page_filters_by_supervisor_and_action(
    app: Flask, console: Console, signed_in: FlaskClient, user: str
) -> None:
    other = f"sup-{uuid.uuid4().hex[:10]}"
    console.accounts.add(other, PASSWORD)
    sid = a_call(console)
    second = new_client(app)
    sign_in(second, other)
    second.get(f"/supervisor/calls/{sid}")
    signed_in.get(f"/supervisor/calls/{sid}")
    mine = signed_in.get(f"/supervisor/audit?user={user}&action=view")
    assert user in mine.text and f">{other}<" not in mine.text
    both = signed_in.get(f"/supervisor/audit?call={sid}")
    assert f">{user}<" in both.text and f">{other}<" in both.text


def test_in_a_gevent_worker_the_webhooks_go_on_while_a_supervisor_reads_the_dashboard(
    database_url: str,
) -> None:
    """The console's long reads (the dashboard, the call list) run in one of gevent's native
    threads: a supervisor looking at a busy day does not hold the webhooks of the worker that
    answers them. In the loop's thread the ticker would not run at all meanwhile."""
    during, (total, listed) = ticks_during("""
        import datetime, uuid, zoneinfo
        from ivr.calllog import CallLog, Appended, Ended, Entry, Opened
        from ivr.supervisor.calls import CallFinder, Period
        from ivr.supervisor.metrics import Metrics
        from services.accounts.db import make_engine
        engine = make_engine(sys.argv[1])
        log = CallLog(engine, caller_key=lambda number: "key:" + number[-4:])
        log.create_schema()
        now = datetime.datetime.now(datetime.UTC)
        for batch in range(8):
            writes = []
            for i in range(500):
                sid = "CA" + uuid.uuid4().hex
                at = now - datetime.timedelta(seconds=batch * 500 + i)
                writes += [Opened(sid, "+8613800138000", at, (Entry(at, "prompt", {}),),
                                  "cmn-CN", "key:8000"),
                           Appended(sid, tuple(Entry(at, "key", {"key": "1"}) for _ in range(6))),
                           Ended(sid, "completed", 30, at + datetime.timedelta(seconds=30))]
            log.write(writes)
        zone = zoneinfo.ZoneInfo("Asia/Shanghai")
        today = datetime.datetime.now(zone).date()
        finder = CallFinder(engine, lambda number: "key:" + number[-4:], zone)
        def work():
            board = Metrics(engine).dashboard(Period(today - datetime.timedelta(days=1), today,
                                                     zone))
            return board.total, finder.page(finder.filter({})[0]).total
    """, database_url)
    assert int(total) == int(listed) == 4000
    assert during >= 10, f"the loop ran {during} times while the dashboard was read"


def test_in_a_gevent_worker_the_webhooks_go_on_while_a_supervisor_signs_in(
    database_url: str,
) -> None:
    """Checking a supervisor's password (werkzeug's scrypt, some 75 ms) runs off the loop too:
    a sign-in does not hold the worker's webhooks. In the loop's thread only the two short
    reads and the write around the hash would let the ticker in."""
    during, (signed_in, refused) = ticks_during("""
        from ivr.supervisor.accounts import SupervisorAccounts
        from services.accounts.db import make_engine
        accounts = SupervisorAccounts(make_engine(sys.argv[1]))
        accounts.create_schema()
        accounts.add("amy", "a long enough secret")
        def work():
            return (accounts.authenticate("amy", "a long enough secret") is not None,
                    accounts.authenticate("amy", "not the secret") is None)
    """, database_url)
    assert signed_in == refused == "True"
    assert during >= 20, f"the loop ran {during} times while two passwords were checked"

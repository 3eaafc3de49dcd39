"""LocalAccounts and HttpAccounts, the latter against the API app served for real."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from services.accounts.api import create_app
from services.accounts.client import AccountsClient, HttpAccounts, LocalAccounts
from services.accounts.db import make_engine
from services.accounts.demo import load_demo
from services.accounts.errors import AccountsUnavailable, NotFound
from services.accounts.store import AccountStore
from services.accounts.types import LossReport, PinResult

PEPPER = "test-pepper"
TOKEN = "s3cret-token"
ZHANG, ZHANG_PIN = "11010519491231002X", "135790"
WANG, WANG_PIN = "310104198507084566", "112358"
SECRETS = (ZHANG, ZHANG_PIN, WANG, WANG_PIN, "135791")


@pytest.fixture
def store(database_url: str) -> Iterator[AccountStore]:
    engine = make_engine(database_url)
    store = AccountStore(engine, PEPPER)
    store.create_schema()
    load_demo(store)
    yield store
    engine.dispose()


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve `app` on a free local port for real; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextmanager
def http_accounts(
    base_url: str, timeout: float = 5.0, token: str | None = None
) -> Iterator[HttpAccounts]:
    client = HttpAccounts(base_url, timeout, token)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def served(store: AccountStore) -> Iterator[str]:
    with serving(create_app(store, token=TOKEN)) as base_url:
        yield base_url


@pytest.fixture
def remote(served: str) -> Iterator[HttpAccounts]:
    with http_accounts(served, token=TOKEN) as client:
        yield client


def test_http_answers_exactly_what_the_store_answers(
    store: AccountStore, remote: HttpAccounts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    local: AccountsClient = LocalAccounts(store)
    clients: list[AccountsClient] = [local, remote]
    zhang = store.digest(ZHANG)
    results = [
        (
            c.verify_pin(zhang, ZHANG_PIN),
            c.verify_pin(zhang, "135791"),
            c.verify_pin(store.digest("110105194912310011"), ZHANG_PIN),
        )
        for c in clients
    ]
    assert results[0] == results[1]
    right, wrong, unknown = results[1]
    assert right.ok and right.account_id is not None
    assert wrong == unknown == PinResult(ok=False, account_id=None)
    account_id = right.account_id
    for c in clients:
        assert c.balance(account_id) == store.balance(account_id)
        assert c.transactions(account_id) == store.transactions(account_id)
        assert c.contributions(account_id) == store.contributions(account_id)
        assert c.card(account_id) == store.card(account_id)
    assert len(remote.transactions(account_id)) == 7
    assert str(remote.balance(account_id).amount) == "1234.56"
    assert all(secret not in caplog.text for secret in SECRETS)


def test_report_card_lost_over_http(store: AccountStore, remote: HttpAccounts) -> None:
    zhang = store.verify_pin(store.digest(ZHANG), ZHANG_PIN).account_id
    wang = store.verify_pin(store.digest(WANG), WANG_PIN).account_id
    assert zhang is not None and wang is not None
    assert remote.report_card_lost(zhang) == LossReport("suspended")
    assert remote.report_card_lost(zhang) == LossReport("already_suspended")
    assert remote.card(zhang).status == "suspended"
    assert remote.report_card_lost(wang) == LossReport("already_suspended")


def test_unknown_account_is_not_found(remote: HttpAccounts) -> None:
    with pytest.raises(NotFound):
        remote.balance(999_999)
    with pytest.raises(NotFound):
        remote.report_card_lost(999_999)


def test_token_is_required_when_configured(served: str) -> None:
    with http_accounts(served) as anonymous, pytest.raises(AccountsUnavailable, match="401"):
        anonymous.balance(1)
    with http_accounts(served, token="wrong") as wrong, pytest.raises(AccountsUnavailable):
        wrong.verify_pin("0" * 64, "000000")
    answer = requests.get(f"{served}/v1/accounts/1/card", timeout=5)
    assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})
    answer = requests.get(
        f"{served}/v1/accounts/1/card", timeout=5, headers={"Authorization": f"Bearer {TOKEN}x"}
    )
    assert answer.status_code == 401
    assert requests.get(f"{served}/healthz", timeout=5).json() == {"status": "ok"}


def test_without_a_token_anyone_may_ask(store: AccountStore) -> None:
    with serving(create_app(store)) as base_url, http_accounts(base_url) as client:
        assert client.verify_pin(store.digest(ZHANG), ZHANG_PIN).ok
        client.ping()


def test_a_silent_server_times_out_as_unavailable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections, never answers
        with http_accounts(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(AccountsUnavailable, match="ReadTimeout"):
                client.verify_pin("0" * 64, ZHANG_PIN)
            assert time.monotonic() - started < 2


def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with http_accounts(f"http://127.0.0.1:{port}", timeout=0.5) as client:
        with pytest.raises(AccountsUnavailable, match="ConnectionError"):
            client.balance(1)
        with pytest.raises(AccountsUnavailable):
            client.ping()


def test_a_broken_database_is_503_and_unavailable(database_url: str) -> None:
    engine = make_engine(database_url)
    unschemaed = AccountStore(engine, PEPPER)  # no tables: every query fails
    try:
        local = LocalAccounts(unschemaed)
        with pytest.raises(AccountsUnavailable) as caught:
            local.verify_pin(unschemaed.digest(ZHANG), ZHANG_PIN)
        assert "acct_" not in str(caught.value) and ZHANG_PIN not in str(caught.value)
        with serving(create_app(unschemaed)) as base_url, http_accounts(base_url) as client:
            answer = requests.get(f"{base_url}/v1/accounts/1/balance", timeout=5)
            assert (answer.status_code, answer.json()) == (
                503,
                {"error": "account service unavailable"},
            )
            with pytest.raises(AccountsUnavailable, match="503"):
                client.verify_pin(unschemaed.digest(ZHANG), ZHANG_PIN)
    finally:
        engine.dispose()


def test_an_unreachable_database_is_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    try:
        with pytest.raises(
            AccountsUnavailable, match=r"^account database error \(OperationalError\)$"
        ):
            LocalAccounts(AccountStore(engine, PEPPER)).balance(1)
        health = create_app(AccountStore(engine, PEPPER)).test_client().get("/healthz")
        assert (health.status_code, health.get_json()) == (
            503,
            {"error": "account service unavailable"},
        )
    finally:
        engine.dispose()


def test_a_malformed_answer_is_unavailable() -> None:
    impostor = Flask(__name__)
    impostor.add_url_rule("/v1/accounts/<int:n>/balance", "balance", lambda n: "not json")
    impostor.add_url_rule("/v1/accounts/<int:n>/card", "card", lambda n: {"last4": "1234"})
    with serving(impostor) as base_url, http_accounts(base_url) as client:
        with pytest.raises(AccountsUnavailable, match="malformed"):
            client.balance(1)
        with pytest.raises(AccountsUnavailable, match="malformed"):
            client.card(1)


# -- the API's own errors ------------------------------------------------------------------


def test_bad_requests_get_json_errors_without_the_pin(store: AccountStore) -> None:
    client = create_app(store).test_client()
    for body in [None, [ZHANG_PIN], {"pin": ZHANG_PIN}, {"id_digest": "x", "pin": 135790}]:
        answer = client.post("/v1/pin-checks", json=body)
        assert answer.status_code == 400
        assert ZHANG_PIN not in answer.get_data(as_text=True)
        assert "error" in answer.get_json()
    answer = client.post("/v1/pin-checks", data="id_digest=x&pin=135790")
    assert answer.status_code == 400
    assert client.get("/v1/nothing").get_json() == {"error": "not found"}
    assert client.get("/v1/accounts/x/balance").status_code == 404
    assert client.get("/v1/pin-checks").status_code == 405
    answer = client.post("/v1/pin-checks", json={"id_digest": "x" * 10_000, "pin": "1"})
    assert answer.status_code == 413 and "error" in answer.get_json()


def test_an_internal_error_is_logged_without_its_text(
    store: AccountStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Faulty(AccountStore):
        def verify_pin(self, id_digest: str, pin: str) -> PinResult:
            raise RuntimeError(f"something quoted the pin {pin}")

    app = create_app(Faulty(store.engine, PEPPER))
    answer = app.test_client().post("/v1/pin-checks", json={"id_digest": "x", "pin": ZHANG_PIN})
    assert (answer.status_code, answer.get_json()) == (500, {"error": "internal error"})
    assert "RuntimeError" in caplog.text
    assert ZHANG_PIN not in caplog.text


def test_create_app_from_the_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("IVR_PIN_PEPPER", raising=False)
    monkeypatch.setenv("ACCOUNTS_TOKEN", TOKEN)
    app = create_app()
    store: AccountStore = app.extensions["accounts.store"]
    try:
        pepper = (tmp_path / "instance" / "pin-pepper").read_text().strip()
        assert store.digest(ZHANG) == AccountStore(store.engine, pepper).digest(ZHANG)
        load_demo(store)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        body = {"id_digest": store.digest(ZHANG), "pin": ZHANG_PIN}
        assert client.post("/v1/pin-checks", json=body).status_code == 401
        answer = client.post(
            "/v1/pin-checks", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.get_json()["ok"] is True
    finally:
        store.engine.dispose()

"""GET /metrics: Prometheus text, webhook latency by route, calls by outcome, Redis and
account-service failures; added up over gunicorn's workers; behind IVR_METRICS_TOKEN."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from hotline_server import Server, free_port
from prometheus_client.parser import text_string_to_metric_families
from twilio_sim import Simulator

from ivr import create_app
from ivr.config import Settings
from ivr.phone import sign

TOKEN = "metrics-test-token"
METRICS_TOKEN = "scrape-me-0123456789"
ZHANG_KEYS = "11010519491231002*#"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return found.get((name, frozenset(labels.items())), 0.0)


def in_process_app(tmp_path: Path, redis_url: str, database_url: str, **env: str) -> Flask:
    settings = Settings.from_env({
        "IVR_INSTANCE_PATH": str(tmp_path), "TWILIO_AUTH_TOKEN": TOKEN, "REDIS_URL": redis_url,
        "DATABASE_URL": database_url, "IVR_METRICS_TOKEN": METRICS_TOKEN, **env,
    })  # fmt: skip
    return create_app(settings)


@pytest.fixture
def app(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[Flask]:
    app = in_process_app(tmp_path, redis_url, database_url)
    yield app
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


def webhook(client: FlaskClient, path: str, params: dict[str, str]):  # type: ignore[no-untyped-def]
    signature = sign(TOKEN, f"http://localhost{path}", params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    return samples(reply.text)


def test_metrics_need_the_bearer_token(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    right = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert right.status_code == 200


def test_webhooks_are_timed_by_route(app: Flask) -> None:
    client = app.test_client()
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800138000", "To": "+8612333"}
    assert webhook(client, "/voice", params).status_code == 200
    assert webhook(client, "/voice/in/1", params | {"Digits": "1"}).status_code == 200
    assert webhook(client, "/voice/in/2", params | {"Digits": ZHANG_KEYS[:-1]}).status_code == 200
    client.get("/healthz")  # not a webhook: not timed
    found = scrape(client)
    assert value(found, "ivr_webhook_duration_seconds_count", route="/voice") == 1
    assert value(found, "ivr_webhook_duration_seconds_count", route="/voice/in/<int:seq>") == 2
    assert value(found, "ivr_webhook_duration_seconds_bucket", route="/voice", le="+Inf") == 1
    assert value(found, "ivr_webhook_duration_seconds_sum", route="/voice") > 0
    assert not [key for key in found if ("route", "/healthz") in key[1]]


def test_redis_failures_are_counted_by_operation(tmp_path: Path, database_url: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = in_process_app(tmp_path, nowhere, database_url, IVR_REDIS_COOLDOWN="0")
    client = app.test_client()
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800138000", "To": "+8612333"}
    reply = webhook(client, "/voice", params)
    assert reply.status_code == 200 and "technical problem" in reply.text  # the apology
    found = scrape(client)
    assert value(found, "ivr_redis_errors_total", operation="open", error="ConnectionError") == 1
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()


def test_account_service_failures_are_counted_by_operation(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no account service there
    app = in_process_app(tmp_path, redis_url, database_url, ACCOUNTS_URL=nowhere)
    client = app.test_client()
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+86139" + str(uuid.uuid4().int)[:8],
              "To": "+8612333"}  # fmt: skip
    for path, digits in (("/voice", None), ("/voice/in/1", "1"), ("/voice/in/2", ZHANG_KEYS[:-1]),
                         ("/voice/in/3", "135790")):  # fmt: skip
        reply = webhook(client, path, params | ({"Digits": digits} if digits else {}))
        assert reply.status_code == 200
    assert "not available" in reply.text or "暂时无法" in reply.text, reply.text
    found = scrape(client)
    assert value(found, "ivr_account_service_errors_total", operation="verify_pin",
                 error="AccountsUnavailable") == 1  # fmt: skip
    assert value(found, "ivr_redis_errors_total", operation="begin", error="ConnectionError") == 0
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


def test_the_counts_of_every_gunicorn_worker_add_up(sim: Simulator, hotline: Server) -> None:
    """The session's hotline runs two sync workers; each webhook lands on either. /metrics, on
    whichever answers, counts them all, and each ended call once by its outcome."""

    def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        reply = requests.get(f"{hotline.url}/metrics", timeout=5)
        assert reply.status_code == 200
        return samples(reply.text)

    before = scraped()
    calls = []
    for _ in range(2):  # the hotline hangs up after three silences: completed
        call = sim.call(from_="+86139" + str(uuid.uuid4().int)[:8])
        call.silence().silence().silence()
        calls.append(call)
    agent = sim.call(from_="+86139" + str(uuid.uuid4().int)[:8], queue_outcome="bridged")
    agent.press("0").press("1")  # an agent, then the rating: transferred
    gave_up = sim.call(from_="+86139" + str(uuid.uuid4().int)[:8])
    gave_up.press("1").hangup()  # the caller hangs up in the middle: abandoned
    calls += [agent, gave_up]
    assert all(call.ended for call in calls)
    gave_up.send_status("completed")  # Twilio repeats a status callback: counted once
    hotline.catch_up()  # a call is counted by its outcome as its end reaches the call log

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    deadline = time.monotonic() + 5  # (counted just after the end's transaction commits)
    while True:
        after = scraped()
        ended = sum(delta("ivr_calls_total", outcome=o) for o in ("completed", "transferred",
                                                                   "abandoned"))  # fmt: skip
        if ended >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert delta("ivr_webhook_duration_seconds_count", route="/voice") == 4
    assert delta("ivr_webhook_duration_seconds_count", route="/voice/status") == 5
    assert delta("ivr_calls_total", outcome="completed") == 2
    assert delta("ivr_calls_total", outcome="transferred") == 1
    assert delta("ivr_calls_total", outcome="abandoned") == 1
    folders = list((Path(hotline.env["IVR_INSTANCE_PATH"]) / "metrics").iterdir())
    assert len(folders) == 1 and list(folders[0].glob("histogram_*.db")), folders  # per worker


def test_refused_webhooks_are_timed_too_and_unknown_paths_are_not(app: Flask) -> None:
    """A forged request on a webhook's route is part of that route's load (an operator sees
    it in the histogram as well as in the log); a path that is no webhook is not a route."""
    client = app.test_client()
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800138000", "To": "+8612333"}
    assert client.post("/voice/status", data=params).status_code == 403  # unsigned
    assert client.get("/voice/nowhere").status_code == 404
    found = scrape(client)
    assert value(found, "ivr_webhook_duration_seconds_count", route="/voice/status") == 1
    assert not [key for key in found if ("route", "/voice/nowhere") in key[1]]

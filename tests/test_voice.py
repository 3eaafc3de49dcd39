"""The webhook layer on its own: signatures (behind a proxy too) and the last-resort apology."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from defusedxml.ElementTree import fromstring
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import query_to_pairs

from ivr import create_app
from ivr.config import Settings
from ivr.phone import sign

TOKEN = "voice-test-token"


@pytest.fixture
def app(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[Flask]:
    env = {"IVR_INSTANCE_PATH": str(tmp_path), "TWILIO_AUTH_TOKEN": TOKEN,
           "REDIS_URL": redis_url, "DATABASE_URL": database_url,
           "PUBLIC_BASE_URL": "https://ivr.example.org/hotline"}  # fmt: skip
    app = create_app(Settings.from_env(env))
    yield app
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


def post(client: FlaskClient, path: str, params: dict[str, str], signed_url: str):  # type: ignore[no-untyped-def]
    signature = {"X-Twilio-Signature": sign(TOKEN, signed_url, params)}
    return client.post(path, data=params, headers=signature)


def call_params() -> dict[str, str]:
    return {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800138000", "To": "+8612333"}


def test_behind_a_proxy_the_public_url_is_what_is_signed(app: Flask) -> None:
    client = app.test_client()
    params = call_params()
    public = "https://ivr.example.org/hotline/voice"
    assert post(client, "/voice", params, public).status_code == 200
    assert post(client, "/voice", call_params(), "http://localhost/voice").status_code == 403


def test_a_bug_is_an_apology_not_an_application_error(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = ["135790", "11010519491231002X"]

    def broken(*_: object) -> str:
        raise RuntimeError("leaked " + " and ".join(secrets))

    app.extensions["ivr"].answer = broken
    with caplog.at_level(logging.ERROR):
        reply = post(app.test_client(), "/voice", call_params(),
                     "https://ivr.example.org/hotline/voice")  # fmt: skip
    assert reply.status_code == 200 and reply.mimetype == "text/xml"
    assert "抱歉，系统暂时出现故障" in reply.text and "technical problem" in reply.text
    assert "RuntimeError" in caplog.text
    assert not [s for s in secrets if s in caplog.text]


def test_webhook_paths_answer_like_http_says_and_the_rest_reaches_the_console(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/voice").status_code == 405  # Twilio POSTs; a browser's GET is not a call
    assert post(client, "/voice/nowhere", call_params(),
                "https://ivr.example.org/hotline/voice/nowhere").status_code == 404  # fmt: skip
    huge = call_params() | {"Digits": "1" * 600_000}
    assert post(client, "/voice/in/1", huge,
                "https://ivr.example.org/hotline/voice/in/1").status_code == 413  # fmt: skip
    assert client.get("/healthz").status_code == 200  # not a webhook: Flask answers
    assert client.get("/voicemail").status_code == 404  # only /voice and below are webhooks


def test_a_webhook_is_answered_under_the_apps_own_script_root(app: Flask) -> None:
    """Mounted under a path prefix (SCRIPT_NAME), the prefix is part of what Twilio signed
    and of every link in the reply."""
    params = call_params()
    signed = sign(TOKEN, "https://ivr.example.org/hotline/12333/voice", params)
    reply = app.test_client().post("/voice", data=params, headers={"X-Twilio-Signature": signed},
                                   base_url="http://localhost/12333")  # fmt: skip
    assert reply.status_code == 200, reply.status_code
    gather = fromstring(reply.data).find("Gather")
    assert gather is not None and gather.get("action") == "/12333/voice/in/1", reply.text
    unprefixed = app.test_client().post("/voice", data=params,
                                        headers={"X-Twilio-Signature": signed})  # fmt: skip
    assert unprefixed.status_code == 403  # the same signature does not sign another URL


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(extra=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=6))
def test_any_form_twilio_signs_is_read_as_signed(app: Flask, extra: dict[str, str]) -> None:
    """Every field, with any characters ('+', '%', '&', '=', Chinese, empty), is read back as it
    was sent: one misread field and the signature fails (a 403, Twilio's "application error")."""
    params = extra | call_params()
    reply = post(app.test_client(), "/voice", params, "https://ivr.example.org/hotline/voice")
    assert reply.status_code == 200 and "<Gather" in reply.text
    assert parse_qsl(urlencode(params), keep_blank_values=True) == query_to_pairs(
        urlencode(params)
    )  # the forms are read by yarl's parser, which must agree with the standard library's

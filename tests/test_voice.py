"""The webhook layer on its own: signatures (behind a proxy too) and the last-resort apology."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

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

"""Hotline 12333: a telephone self-service hotline answering Twilio voice webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """Build the hotline's Flask app (see `ivr.app.create_app`); imported lazily so that the
    `ivr` command and the pure modules start without loading the web stack."""
    from .app import create_app as factory

    return factory(*args, **kwargs)


__all__ = ["create_app"]

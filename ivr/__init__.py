"""Hotline 12333: a telephone self-service hotline answering Twilio voice webhooks."""

from .app import create_app

__all__ = ["create_app"]

"""Hotline 12333: a telephone self-service hotline answering Twilio voice webhooks."""

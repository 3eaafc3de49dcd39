"""Caller-facing prompts, one TOML file per language (installed as ivr.prompts)."""

"""Settings: read from the environment once, frozen afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def default_instance_path() -> Path:
    """The instance folder: `IVR_INSTANCE_PATH`, or `./instance`."""
    return Path(os.environ.get("IVR_INSTANCE_PATH") or "instance").resolve()


def _secret_file(instance: Path, name: str, nbytes: int = 32) -> str:
    """Read a generated secret kept in the instance folder, creating it (mode 600) once."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_hex(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name} must be a whole number, 0 or more, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the hotline reads from its environment (SPEC 2)."""

    instance_path: Path
    twilio_auth_token: str | None = None
    dev_mode: bool = False
    redis_url: str | None = None
    database_url: str = ""
    public_base_url: str | None = None
    secret_key: str = ""
    pin_pepper: str = ""
    agent_queue: str | None = None
    agent_number: str | None = None
    agent_hours: str | None = None
    holidays: str | None = None  # a file of YYYY-MM-DD dates when agents do not answer
    timezone: str = "Asia/Shanghai"
    accounts_url: str | None = None
    accounts_token: str | None = None
    accounts_timeout: float = 1.5
    accounts_breaker_failures: int = 5  # failures in a row that open the account-service breaker
    accounts_breaker_cooldown: float = 30.0  # seconds it stays open before a trial call
    redis_timeout: float = 0.25
    redis_cooldown: float = 1.0  # seconds a process stops asking Redis after it failed
    limit_window: int = 3600  # the PIN-guessing limits count within this many seconds
    limit_caller_calls: int = 20  # calls that key an ID number, from one caller number
    limit_caller_ids: int = 5  # distinct ID numbers keyed from one caller number
    limit_id_checks: int = 10  # PIN checks of one ID number
    call_ttl: int = 4 * 3600
    metrics_token: str | None = None  # GET /metrics wants `Authorization: Bearer <it>`
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signing_token(self) -> str | None:
        """The token webhooks are verified with: Twilio's, or the local dev token in dev mode."""
        return self.twilio_auth_token

    def with_(self, **changes: Any) -> Settings:
        """A copy with some settings changed (tests, the CLI)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default `os.environ`), generating instance secrets."""
        env = os.environ if env is None else env
        instance = Path(env.get("IVR_INSTANCE_PATH") or "instance").resolve()
        dev_mode = env.get("IVR_DEV_MODE", "").lower() in {"1", "true", "yes", "on"}
        token = env.get("TWILIO_AUTH_TOKEN") or None
        if token is None and dev_mode:
            token = _secret_file(instance, "dev-auth-token", 16)
        database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'hotline.sqlite3'}"
        if database_url.startswith("postgres://"):
            database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
        elif database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
        public = env.get("PUBLIC_BASE_URL") or None
        return cls(
            instance_path=instance,
            twilio_auth_token=token,
            dev_mode=dev_mode,
            redis_url=env.get("REDIS_URL") or None,
            database_url=database_url,
            public_base_url=public.rstrip("/") if public else None,
            secret_key=env.get("SECRET_KEY") or _secret_file(instance, "secret-key"),
            pin_pepper=env.get("IVR_PIN_PEPPER") or _secret_file(instance, "pin-pepper"),
            agent_queue=env.get("IVR_AGENT_QUEUE") or None,
            agent_number=env.get("IVR_AGENT_NUMBER") or None,
            agent_hours=env.get("IVR_AGENT_HOURS") or None,
            holidays=env.get("IVR_HOLIDAYS") or None,
            timezone=env.get("IVR_TIMEZONE") or "Asia/Shanghai",
            accounts_url=(env.get("ACCOUNTS_URL") or "").rstrip("/") or None,
            accounts_token=env.get("ACCOUNTS_TOKEN") or None,
            metrics_token=env.get("IVR_METRICS_TOKEN") or None,
            accounts_timeout=_float(env, "IVR_ACCOUNTS_TIMEOUT", 1.5),
            accounts_breaker_failures=_int(env, "IVR_ACCOUNTS_BREAKER_FAILURES", 5),
            accounts_breaker_cooldown=_float(env, "IVR_ACCOUNTS_BREAKER_COOLDOWN", 30.0),
            redis_timeout=_float(env, "IVR_REDIS_TIMEOUT", 0.25),
            redis_cooldown=_float(env, "IVR_REDIS_COOLDOWN", 1.0),
            limit_window=_int(env, "IVR_LIMIT_WINDOW", 3600) or 3600,
            limit_caller_calls=_int(env, "IVR_LIMIT_CALLER_CALLS", 20),
            limit_caller_ids=_int(env, "IVR_LIMIT_CALLER_IDS", 5),
            limit_id_checks=_int(env, "IVR_LIMIT_ID_CHECKS", 10),
        )

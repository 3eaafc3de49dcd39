"""How the IVR reaches the account service: in-process (`LocalAccounts`) or over HTTP
(`HttpAccounts`).

Both raise AccountsUnavailable when the service cannot answer and NotFound for an unknown
account; their messages carry no personal data. `HttpAccounts` goes through a circuit breaker
(`breaker.py`, one per process): after repeated failures it fails fast (CircuitOpen) for a
cool-down instead of making every caller wait out the timeout of a service that is down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

import requests
import sqlalchemy as sa

from .breaker import CircuitBreaker
from .errors import AccountsUnavailable, NotFound
from .store import AccountStore
from .types import Balance, Card, Contribution, LossReport, PinResult, Transaction

_P = ParamSpec("_P")
_R = TypeVar("_R")


class AccountsClient(Protocol):
    """What the IVR asks of the account service."""

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check the PIN of the account named by an ID-number digest."""
        ...

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        ...

    def transactions(self, account_id: int) -> list[Transaction]:
        """Recent transactions, newest first."""
        ...

    def contributions(self, account_id: int) -> list[Contribution]:
        """Contribution records, newest month first."""
        ...

    def card(self, account_id: int) -> Card:
        """The card's last 4 characters and status."""
        ...

    def report_card_lost(self, account_id: int) -> LossReport:
        """Suspend the card if it is active."""
        ...


class LocalAccounts:
    """The account service in-process: an AccountStore, database errors raised as
    AccountsUnavailable."""

    def __init__(self, store: AccountStore) -> None:
        self._store = store

    @staticmethod
    def _call(method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (
            sa.exc.SQLAlchemyError
        ) as exc:  # its text may quote SQL parameters: keep only the kind
            raise AccountsUnavailable(f"account database error ({type(exc).__name__})") from None

    def ping(self) -> None:
        """Raise AccountsUnavailable unless the database answers."""
        self._call(self._store.ping)

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check the PIN of the account named by an ID-number digest."""
        return self._call(self._store.verify_pin, id_digest, pin)

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        return self._call(self._store.balance, account_id)

    def transactions(self, account_id: int) -> list[Transaction]:
        """Recent transactions, newest first."""
        return self._call(self._store.transactions, account_id)

    def contributions(self, account_id: int) -> list[Contribution]:
        """Contribution records, newest month first."""
        return self._call(self._store.contributions, account_id)

    def card(self, account_id: int) -> Card:
        """The card's last 4 characters and status."""
        return self._call(self._store.card, account_id)

    def report_card_lost(self, account_id: int) -> LossReport:
        """Suspend the card if it is active."""
        return self._call(self._store.report_card_lost, account_id)


class HttpAccounts:
    """The account service over its HTTP API (`services.accounts.api`)."""

    def __init__(
        self, base_url: str, timeout: float, token: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:  # fmt: skip
        self._base_url = base_url.rstrip("/")
        self._timeout = (timeout, timeout)
        self.breaker = breaker or CircuitBreaker()
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def _fetch(
        self, parse: Callable[[Any], _R], method: str, path: str, body: dict[str, str] | None = None
    ) -> _R:
        return self.breaker.call(lambda: self._exchange(parse, method, path, body))

    def _exchange(
        self, parse: Callable[[Any], _R], method: str, path: str, body: dict[str, str] | None
    ) -> _R:
        try:
            response = self._session.request(
                method, self._base_url + path, json=body, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise AccountsUnavailable(
                f"account service unreachable ({type(exc).__name__})"
            ) from None
        if response.status_code == 404:
            raise NotFound(f"account service: {path} not found")
        if not response.ok:
            raise AccountsUnavailable(f"account service answered {response.status_code}")
        try:
            return parse(response.json())
        except (ValueError, TypeError, KeyError):
            raise AccountsUnavailable("account service sent a malformed answer") from None

    def ping(self) -> None:
        """Raise AccountsUnavailable unless the service and its database answer."""
        self._fetch(dict, "GET", "/healthz")

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check the PIN of the account named by an ID-number digest."""
        body = {"id_digest": id_digest, "pin": pin}
        return self._fetch(PinResult.from_json, "POST", "/v1/pin-checks", body)

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        return self._fetch(Balance.from_json, "GET", f"/v1/accounts/{account_id}/balance")

    def transactions(self, account_id: int) -> list[Transaction]:
        """Recent transactions, newest first."""
        return self._fetch(
            lambda d: [Transaction.from_json(t) for t in d["transactions"]],
            "GET",
            f"/v1/accounts/{account_id}/transactions",
        )

    def contributions(self, account_id: int) -> list[Contribution]:
        """Contribution records, newest month first."""
        return self._fetch(
            lambda d: [Contribution.from_json(c) for c in d["contributions"]],
            "GET",
            f"/v1/accounts/{account_id}/contributions",
        )

    def card(self, account_id: int) -> Card:
        """The card's last 4 characters and status."""
        return self._fetch(Card.from_json, "GET", f"/v1/accounts/{account_id}/card")

    def report_card_lost(self, account_id: int) -> LossReport:
        """Suspend the card if it is active."""
        path = f"/v1/accounts/{account_id}/card/loss-reports"
        return self._fetch(LossReport.from_json, "POST", path)

"""Errors of the account service. None carries speech, and none ever carries a PIN or ID number.

AccountsError
├── AccountsUnavailable   the service or its database is down, slow or failing
│   └── CircuitOpen       not even asked: it failed repeatedly moments ago (breaker.py)
├── NotFound              no such account (or card)
└── ImportFailed          an import file is unreadable or a record in it is invalid
"""

from __future__ import annotations


class AccountsError(Exception):
    """Base of every account-service error."""


class AccountsUnavailable(AccountsError):
    """The account service cannot answer now (down, timeout, 5xx): the IVR apologises."""


class CircuitOpen(AccountsUnavailable):
    """The service failed too often in a row just now: calls fail fast for a cool-down."""


class NotFound(AccountsError):
    """No such account, or the account has no card."""


class ImportFailed(AccountsError):
    """An import was refused: `index` (from 0) of the bad record, `field` and `reason`; no
    values."""

    def __init__(self, index: int | None, field: str, reason: str) -> None:
        self.index = index
        self.field = field
        self.reason = reason
        where = [f"record {index}"] if index is not None else []
        where += [f"field {field!r}"] if field else []
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)

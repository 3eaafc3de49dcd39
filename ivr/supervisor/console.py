"""The console's parts, wired once per app and kept in `app.extensions["ivr.supervisor"]`."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..calllog import CallLog
from .accounts import SupervisorAccounts
from .audio import Speech
from .audit import AuditTrail
from .callbacks import CallbackRequests
from .calls import CallFinder
from .metrics import Metrics
from .store import ConsoleStore

REPLAY_TOKEN_AGE = 2 * 3600  # seconds a replay's audio links stay valid


@dataclass(frozen=True, slots=True)
class Console:
    """Accounts, audit trail, sessions, call queries, metrics, speech and callbacks."""

    accounts: SupervisorAccounts
    audit: AuditTrail
    store: ConsoleStore
    calls: CallFinder
    calllog: CallLog
    metrics: Metrics
    speech: Speech
    callbacks: CallbackRequests
    zone: zoneinfo.ZoneInfo
    signer: URLSafeTimedSerializer
    # Brings the call log up to date (every webhook answered so far written: the outbox moved)
    catch_up: Callable[[], object] = lambda: True

    def replay_token(self, call_sid: str, supervisor_id: int) -> str:
        """A token for a replay's audio: this call, this supervisor, for a while."""
        return self.signer.dumps([call_sid, supervisor_id])

    def replay_token_ok(self, token: str, call_sid: str, supervisor_id: int) -> bool:
        """Whether `token` was given for this call's replay to this supervisor, lately."""
        try:
            found = self.signer.loads(token, max_age=REPLAY_TOKEN_AGE)
        except BadSignature:
            return False
        return bool(found == [call_sid, supervisor_id])

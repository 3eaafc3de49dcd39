"""The account service's HTTP API with every request held first: `bench/calls.py
--accounts-delay MS` serves it (BENCH_ACCOUNTS_DELAY_MS) to see whether a slow account service
stalls the webhooks that do not call it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from services.accounts.api import create_app

DELAY = float(os.environ.get("BENCH_ACCOUNTS_DELAY_MS", "100")) / 1000
_api = create_app()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The account service, `DELAY` seconds late."""
    time.sleep(DELAY)
    return _api(environ, start_response)  # type: ignore[no-any-return]

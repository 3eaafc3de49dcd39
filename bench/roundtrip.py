"""What one Redis round trip costs the client: redis-py's command layer against the store's.

    .venv/bin/python bench/roundtrip.py [--trips 20000]

Starts an embedded Redis in a temporary folder and sends it, from this one thread, the
hotline's two kinds of round trip, each many times: a script by its SHA (as `Store.begin`),
and a script with an `XADD` sent together (as `Store.commit` with its call-log entries). Each
goes once through redis-py's own commands (`Redis.evalsha`, a pipeline without MULTI) and
once through `ivr.store.Lane` (a connection of its own taken for the trip, commands packed by
hiredis and written at once), and the line prints the process's CPU per trip (Redis runs
apart, so its work is not in it). docs/benchmark.md quotes the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ivr import embedded
from ivr.store import Lane, connect

# A script shaped like the store's `begin`: read the call's hash, set the claim, answer.
SCRIPT = """
local h = redis.call('HMGET', KEYS[1], 'seq', 'state')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {'go', h[2] or ''}
"""
KEYS = ("ivr:{CAbench}", "ivr:{CAbench}:claim")
ARGS = (3, "0123456789abcdef", 10_000)
OUTBOX = "ivr:calllog:{bench}"
ENTRY = b'{"entries":' + b"x" * 400 + b"}"


def _cpu_per_trip(trips: int, trip: Callable[[], Any]) -> float:
    """Microseconds of this process's CPU per call of `trip`, after a warm-up."""
    for _ in range(500):
        trip()
    started = time.process_time()
    for _ in range(trips):
        trip()
    return (time.process_time() - started) / trips * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--trips", type=int, default=20_000, help="round trips per figure")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ivr-roundtrip-") as folder:
        url = embedded.ensure(Path(folder))
        client = connect(url, 1.0)
        try:
            sha = client.script_load(SCRIPT)
            client.hset(KEYS[0], mapping={"seq": 3, "state": "s" * 600})
            lane = Lane(client.connection_pool)
            evalsha = ("EVALSHA", sha, len(KEYS), *KEYS, *ARGS)
            xadd = ("XADD", OUTBOX, "MAXLEN", "~", 1000, "*", "w", ENTRY)

            def pipeline() -> Any:
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(sha, len(KEYS), *KEYS, *ARGS)
                pipe.xadd(OUTBOX, {b"w": ENTRY}, "*", 1000, True)
                return pipe.execute()

            figures = (
                ("a script, redis-py's Redis.evalsha", lambda: client.evalsha(
                    sha, len(KEYS), *KEYS, *ARGS)),
                ("a script, the store's lane", lambda: lane.send([evalsha])),
                ("a script and an XADD, redis-py's pipeline", pipeline),
                ("a script and an XADD, the store's lane", lambda: lane.send([evalsha, xadd])),
            )  # fmt: skip
            print(f"µs of client CPU per round trip ({opts.trips} each, embedded Redis {url}):")
            for label, trip in figures:
                print(f"  {_cpu_per_trip(opts.trips, trip):6.1f}  {label}")
        finally:
            client.close()
            embedded.stop(Path(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A gevent worker (gunicorn's, the hotline's default) in a process of its own, for the tests
that a piece of work leaves the worker's loop free to answer other webhooks meanwhile.
Monkey-patching the test process itself would change every other test. A ticker greenlet
stands for the worker's other webhooks: it runs every 0.2 ms whenever the loop is free."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_BEFORE = """
from gevent import monkey; monkey.patch_all()
import sys
import gevent
"""

_AFTER = """
from ivr import gunicorn_conf
gunicorn_conf.post_worker_init(None)  # as gunicorn calls it in a worker that is ready
ticks = 0
def ticker():
    global ticks
    while True:
        ticks += 1
        gevent.sleep(0.0002)
gevent.spawn(ticker)
gevent.sleep(0.01)
before = ticks
result = work()
print(ticks - before, *result)
"""


def ticks_during(setup: str, *args: str) -> tuple[int, list[str]]:
    """Run `setup` (Python that prepares the work and defines `work()`, which returns what to
    report; `sys.argv[1:]` is `args`) in a new gevent worker process: how many times the ticker
    ran while `work()` did, and what it returned, as strings. `work()` may read the global
    `ticks` to count within itself."""
    script = _BEFORE + textwrap.dedent(setup) + _AFTER
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ticks, *result = done.stdout.split()
    return int(ticks), result

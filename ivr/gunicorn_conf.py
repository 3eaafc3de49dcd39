"""gunicorn's settings for the hotline, read by `ivr serve` and the Procfile's web line:

    gunicorn -c python:ivr.gunicorn_conf --bind 0.0.0.0:8000 'ivr:create_app()'

gevent workers, chosen by measurement (docs/scaling.md): one loop per worker answers its
webhooks, and a webhook that waits (for Redis, the account service, PostgreSQL) lets the
others go on. Against 16 threads a worker they cost a fifth less CPU per webhook (0.90-1.05
ms against 1.08-1.47) and held 3,000 calls for 5 minutes at a p99 of 22-28 ms, where threads
spent 15 % of their CPU switching from thread to thread and queued (p99 66 ms over 60 s).
What would hold the loop runs in gevent's native threads instead (services/offload.py): the
PIN's hash, the call-log mover's transactions, the supervisor console's long reads and its
sign-in. Command-line options
(`--workers`, `--worker-class gthread --threads 16`) and GUNICORN_CMD_ARGS override these;
the number of workers is gunicorn's own default, WEB_CONCURRENCY (one or two per core).
"""

import gc
import sys

from services.offload import in_gevents_loop

worker_class = "gevent"
worker_connections = 1000  # per gevent worker: connections (webhooks in flight) at once
threads = 16  # per worker, for `--worker-class gthread`: webhooks in flight at once
timeout = 30  # seconds a worker may be silent before gunicorn replaces it
keepalive = 5  # seconds an idle client connection (a load balancer's) is kept open

# How long the loop's thread keeps the GIL when a native thread (a PIN's hash ending) wants
# it: Python's 5 ms made a hash wait up to twice that for the GIL, before and after it ran.
GEVENT_SWITCH_INTERVAL = 0.0005


def post_worker_init(worker: object) -> None:
    """The worker has built the app: what it holds for good (modules, the menu, prompts,
    SQLAlchemy's tables and statement caches, phonenumbers' metadata...) is moved out of the
    garbage collector's way. Otherwise every full collection scans all of it again, with the
    GIL held: 60-130 ms every few seconds per worker at 3,000 held calls, against 4-40 ms
    frozen (docs/scaling.md). In a gevent worker, the loop's thread also hands the GIL over
    sooner (GEVENT_SWITCH_INTERVAL)."""
    gc.freeze()
    if in_gevents_loop():
        sys.setswitchinterval(GEVENT_SWITCH_INTERVAL)

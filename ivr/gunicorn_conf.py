"""gunicorn's settings for the hotline, read by `ivr serve` and the Procfile's web line:

    gunicorn -c python:ivr.gunicorn_conf --bind 0.0.0.0:8000 'ivr:create_app()'

Threaded workers (gthread), chosen by measurement (docs/scaling.md): a webhook that waits for
the account service holds a thread, not the whole worker, so the webhooks that do not call it
go on being answered; sync workers stall behind a slow service, and gevent answered the
others no faster while it needs every library monkey-patched. Command-line options
(`--workers`, `--threads`, `--worker-class`) and GUNICORN_CMD_ARGS override these; the number
of workers is gunicorn's own default, WEB_CONCURRENCY (one or two per core).
"""

import gc

worker_class = "gthread"
threads = 16  # per worker: webhooks in flight while others wait on the account service
timeout = 30  # seconds a worker may be silent before gunicorn replaces it
keepalive = 5  # seconds an idle client connection (a load balancer's) is kept open


def post_worker_init(worker: object) -> None:
    """The worker has built the app: what it holds for good (modules, the menu, prompts,
    SQLAlchemy's tables and statement caches, phonenumbers' metadata...) is moved out of the
    garbage collector's way. Otherwise every full collection scans all of it again, with the
    GIL held: 60-130 ms every few seconds per worker at 3,000 held calls, against 4-40 ms
    frozen (docs/scaling.md)."""
    gc.freeze()

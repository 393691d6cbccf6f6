"""gunicorn's configuration for the portal in production: `make serve`, or
`gunicorn -c deploy/gunicorn.conf.py`. Every setting can be changed from the environment.

GUNICORN_BIND (127.0.0.1:8000), GUNICORN_WORKERS (2 x CPUs + 1, counting a container's CPU
limit), GUNICORN_THREADS (4 per worker), GUNICORN_TIMEOUT (30 s), GUNICORN_GRACEFUL_TIMEOUT
(30 s), GUNICORN_KEEPALIVE (5 s), GUNICORN_LOGLEVEL (info), PROMETHEUS_MULTIPROC_DIR
(var/prometheus): see .env.example.

Metrics: each worker is its own process, so prometheus_client runs in multiprocess mode: every
worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR and a scrape, answered by any
worker, adds up all the files. That needs three things, all here: the variable set before
prometheus_client is first imported (it picks its storage at import), the directory emptied when
the server starts (files of an earlier run would be added to this one's), and each dead worker
marked so (its live gauges dropped; its counters stay, since what it counted did happen).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import environ
from gunicorn.glogging import Logger  # type: ignore[import-untyped]

BASE_DIR = Path(__file__).resolve().parent.parent
# gunicorn puts `chdir` on the import path only after reading this file; the logger below needs
# the project's own module before that.
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from core.redaction import redact_secret_paths  # noqa: E402  (after the path above)

# The same `.env` that settings read, so GUNICORN_* can live there too; real variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

MULTIPROC_DIR = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or BASE_DIR / "var" / "prometheus").resolve()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(MULTIPROC_DIR)

from prometheus_client import multiprocess  # noqa: E402  (after the variable above, on purpose)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} is not valid: expected a whole number, not {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} is not valid: expected a whole number of at least 1")
    return value


def _cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: a container's CPU limit (cgroup v2 quota over period,
    rounded down, at least 1) when it has one, else the CPUs it may be scheduled on. The latter
    alone would count the host's CPUs under Kubernetes' or Docker's `--cpus` limits."""
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            return max(1, int(quota) // int(period))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit here
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


wsgi_app = "portal.wsgi:application"
chdir = str(BASE_DIR)
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
workers = _int("GUNICORN_WORKERS", 2 * _cpus() + 1)
# Threaded workers: a request stuck on a dependency (a database restarting) holds one thread, not
# the whole worker, so the probes and the other requests of that worker still get answered. Each
# worker's database pool is shared by its threads: keep DATABASE_POOL_MAX at least this.
# gunicorn's gthread worker, which also notes when it handed each request to a thread, so the
# latency histogram counts the wait for a free thread (monitoring/gunicorn_worker.py).
worker_class = "monitoring.gunicorn_worker.ThreadWorker"
threads = _int("GUNICORN_THREADS", 4)
# A request running longer than this is stuck: its worker is killed and replaced.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM (a deploy), workers finish the requests they have for up to this long.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Heartbeat files in memory, not on a container's overlay disk, where a slow write can get a
# healthy worker killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# No control socket: nothing here uses gunicornc, and its default path is shared by every instance
# run by the same user.
control_socket_disable = True
# No max_requests: each recycled worker would leave its metric files behind, and every scrape
# reads them all. Workers are replaced by deploys instead.

# --- Logging: to stderr, the access log without query strings, referrers or secrets in paths --

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Client, time, method, path (no query string), status, bytes, milliseconds, worker pid.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms pid=%(p)s'


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with the secret part of a path (allauth's password-reset and
    email-confirmation keys: core/redaction.py) replaced before it is written."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["U"] = redact_secret_paths(str(atoms.get("U") or ""))
        return atoms


logger_class = AccessLogger

# --- Server hooks ------------------------------------------------------------------------------


def on_starting(server: Any) -> None:
    """Empty the metrics directory before any worker starts. Only prometheus_client's own files
    are removed, in case the variable points somewhere shared by mistake."""
    MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
    for leftover in MULTIPROC_DIR.glob("*.db"):
        leftover.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone (finished, killed or timed out): drop its live gauges."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

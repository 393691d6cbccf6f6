"""gunicorn's threaded worker, telling the portal when each request reached it.

`deploy/gunicorn.conf.py` runs this as its `worker_class`; it is gunicorn's own gthread worker
and serves exactly as that does. A gthread worker's main thread accepts connections (and sees
kept-alive ones become readable) and hands each to a pool of GUNICORN_THREADS threads; while
they are all busy, the request waits in the pool's queue. Django, and so the latency histogram
(`portal_request_duration_seconds`), only see a request once a thread takes it: under load the
histogram's p95 read 11-17% below what the clients measured, the wait left out.

So the worker notes the moment it hands a connection to the pool (`enqueue_req`, on the main
thread: every request of a connection passes there, the first after `accept`, each next one when
the kept-alive socket turns readable) and puts it in the request's WSGI environ under
`REQUEST_START` (wall-clock seconds, `time.time()`, comparable with a proxy's X-Request-Start),
for monitoring.request_start to read. Why these hooks and no others, short of forking gunicorn:

- gunicorn's `pre_request` server hook runs in the thread, after the wait: too late.
- The environ is made inside `handle_request` (gunicorn.http.wsgi.create) from the parsed
  request alone, so the stamp reaches it through a thread-local, set in `handle_request` and
  moved into the environ by a wrapper around the WSGI application, which runs in that thread.
  Nothing a client sends can set it (a header could be forged).
- A new connection is handed over as soon as it is accepted, before its request has necessarily
  arrived. When a thread takes one that has nothing to read yet, nothing waited for a thread:
  the request starts when the thread starts serving it.

HTTP/2 streams (not enabled here) carry no stamp, and neither does a server run without this
worker (runserver, the test client): the middleware then starts its own clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers import gthread  # type: ignore[import-untyped]

# The environ key of the moment the worker handed the request's connection to a thread.
REQUEST_START = "portal.request_start"

_serving = threading.local()


_Application = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    wsgi: _Application  # set by gunicorn's `load_wsgi`

    def enqueue_req(self, conn: Any) -> None:
        conn.portal_handed_over = time.time()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        # A connection just accepted, its request not there yet: gunicorn waits for it in this
        # thread, which no other request was waiting for.
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(0):
            conn.portal_handed_over = None
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        _serving.request_start = getattr(conn, "portal_handed_over", None) or time.time()
        try:
            return super().handle_request(req, conn)
        finally:
            _serving.request_start = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        application = self.wsgi

        def stamped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            started = getattr(_serving, "request_start", None)
            if started is not None:
                environ[REQUEST_START] = started
            return application(environ, start_response)

        self.wsgi = stamped

"""WSGI entry point for gunicorn: `gunicorn portal.wsgi`.

Liveness probes (`GET /health/live`) are answered here, before Django: the answer says only that
the process answers, and taking it through Django's middleware (sessions, CSP, request metrics,
Sentry's transaction) cost several times Django's own bare request (docs/performance.md). So
probes are in gunicorn's access log but not in the request metrics or Sentry, which left them out
anyway. The view behind the same URL (`monitoring.views.live`) answers the test client; readiness
(`/health/ready`) and every other path go through Django.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = get_wsgi_application()

LIVE_PATH = "/health/live"
_LIVE_BODY = b"ok\n"
_LIVE_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(_LIVE_BODY))),
    # As the view's `never_cache` says it: a probe's answer is never reused.
    ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
]


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    method = environ.get("REQUEST_METHOD")
    if environ.get("PATH_INFO") == LIVE_PATH and method in ("GET", "HEAD"):
        start_response("200 OK", _LIVE_HEADERS)
        return [] if method == "HEAD" else [_LIVE_BODY]
    return django_application(environ, start_response)

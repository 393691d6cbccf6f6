"""WSGI entry point for gunicorn: `gunicorn portal.wsgi`.

Liveness probes (`GET /health/live`) are answered here, before Django: the answer says only that
the process answers, and taking it through Django's middleware (sessions, CSP, request metrics,
Sentry's transaction) cost several times Django's own bare request (docs/performance.md). So
probes are in gunicorn's access log but not in the request metrics or Sentry, which left them out
anyway. The view behind the same URL (`monitoring.views.live`) answers the test client; readiness
(`/health/ready`) and every other path go through Django. The probe's answer carries the same
security headers as every other response, made once by Django's own middleware from the settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from io import BytesIO
from wsgiref.types import StartResponse, WSGIEnvironment

from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIRequest
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django_permissions_policy import PermissionsPolicyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = get_wsgi_application()

# gunicorn runs no system checks: refuse to serve on settings that would lose members' mail. The
# portal app registers them (PortalConfig.ready); the bench's bare baseline, served through this
# same module, installs no app and has none.
_errors = [error for error in run_checks(tags=["portal"]) if error.is_serious()]
if _errors:
    raise ImproperlyConfigured("; ".join(str(error) for error in _errors))

LIVE_PATH = "/health/live"
_LIVE_BODY = b"ok\n"
_LIVE_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(_LIVE_BODY))),
    # As the view's `never_cache` says it: a probe's answer is never reused.
    ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
    # Plain text that loads nothing and is never framed.
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
]


def _probe_request(environ: WSGIEnvironment) -> WSGIRequest:
    return WSGIRequest({**environ, "wsgi.input": BytesIO()})


def _fixed_headers(*, secure: bool) -> list[tuple[str, str]]:
    """The headers that the settings' security middleware adds to a response of this path
    (X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy, X-Frame-Options,
    Permissions-Policy, and HSTS on a secure request when it is on), made by that middleware."""

    def respond(request: HttpRequest) -> HttpResponse:
        return HttpResponse(content_type="text/plain")

    chain = SecurityMiddleware(PermissionsPolicyMiddleware(XFrameOptionsMiddleware(respond)))  # type: ignore[arg-type]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": LIVE_PATH, "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
    response = chain(_probe_request({**environ, "wsgi.url_scheme": "https" if secure else "http"}))
    if not isinstance(response, HttpResponseBase):  # pragma: no cover - the chain is synchronous
        raise TypeError("the security middleware answered asynchronously")
    return [(name, value) for name, value in response.items() if name not in {"Content-Type", "Location"}]


_LIVE_HEADERS_PLAIN = _LIVE_HEADERS + _fixed_headers(secure=False)
_LIVE_HEADERS_SECURE = _LIVE_HEADERS + _fixed_headers(secure=True)


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    method = environ.get("REQUEST_METHOD")
    if environ.get("PATH_INFO") == LIVE_PATH and method in ("GET", "HEAD"):
        # Secure as Django decides it (the TLS proxy's header, SECURE_PROXY_SSL_HEADER): HSTS only then.
        secure = _probe_request(environ).is_secure()
        start_response("200 OK", _LIVE_HEADERS_SECURE if secure else _LIVE_HEADERS_PLAIN)
        return [] if method == "HEAD" else [_LIVE_BODY]
    return django_application(environ, start_response)

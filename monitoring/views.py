"""Health endpoints: liveness, readiness, the staff status page and the health API.

| URL | who | runs |
|---|---|---|
| `/health/live` | anyone | nothing: the process answers |
| `/health/ready` | anyone | database and cache; 503 only when the database is down |
| `/health/` | staff, or bearer `HEALTH_TOKEN` | every check; HTML, or JSON on `Accept: application/json` |
| `/api/health` | anyone | every check, shared for a few seconds; states only |
| `/api/health/advanced` | staff or the token | database latency, cache stats per tier, memory, traffic |

Every answer is `never_cache`d: a proxy must never serve an old health answer.

And `/vitals/`, where member pages send the Web Vitals their browser measured (monitoring/vitals.py).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from core import ratelimit
from core.cache import stats as cache_stats
from monitoring import checks
from monitoring.health import State, public_report, run_checks
from monitoring.metrics import exposition as metrics_exposition
from monitoring.metrics import observe_web_vital
from monitoring.traffic import recent_requests
from monitoring.vitals import MAX_BODY_BYTES, BeaconRefused, parse_beacon


@require_GET
@never_cache
def live(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches no database, cache or other dependency, so an
    orchestrator never restarts a healthy process because a dependency is down."""
    return HttpResponse("ok\n", content_type="text/plain")


def _status_code(state: State) -> int:
    return 503 if state is State.DOWN else 200


@require_GET
@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 while this process can serve, "degraded" included (without Redis it
    serves from the database), so a load balancer keeps it in rotation; 503 when it cannot."""
    report = run_checks(checks.READINESS)
    return JsonResponse(report.public(), status=_status_code(report.state))


@require_GET
@never_cache
def api_health(request: HttpRequest) -> JsonResponse:
    """The public status: the overall state and each check's state, nothing else."""
    report = public_report(checks.ALL)
    return JsonResponse(report.public(), status=_status_code(report.state))


# --- Staff or HEALTH_TOKEN -------------------------------------------------------------------


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _access(request: HttpRequest) -> str:
    """ "ok", "anonymous" (log in, or send the token) or "forbidden" (a member, not staff).

    A request carrying a bearer token is judged by the token alone, compared in constant time,
    and never touches the session: a monitoring tool gets no further with a wrong token and a
    stray cookie. An unset HEALTH_TOKEN opens nothing."""
    token = _bearer(request)
    if token is not None:
        expected = settings.HEALTH_TOKEN
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return "ok"
        return "anonymous"
    user = request.user
    if not user.is_authenticated:
        return "anonymous"
    return "ok" if user.is_active and user.is_staff else "forbidden"


def _wants_json(request: HttpRequest) -> bool:
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def _refusal(request: HttpRequest, access: str, *, as_json: bool) -> HttpResponse:
    if not as_json:
        if access == "anonymous":
            return redirect_to_login(request.get_full_path())
        raise PermissionDenied
    if access == "anonymous":
        response = JsonResponse(
            {
                "code": "not_authenticated",
                "message": "Log in as staff, or send Authorization: Bearer <HEALTH_TOKEN>.",
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="health"'
        return response
    return JsonResponse({"code": "permission_denied", "message": "Only staff may see this."}, status=403)


@require_GET
@never_cache
def status(request: HttpRequest) -> HttpResponse:
    """The ops page: each check, its state, how long it took and when it last failed.
    Answers 503 when the portal cannot serve, so a tool polling the JSON needs no parsing."""
    as_json = _wants_json(request)
    access = _access(request)
    if access != "ok":
        response = _refusal(request, access, as_json=as_json)
    else:
        report = run_checks(checks.ALL, with_last_failures=True)
        if as_json:
            response = JsonResponse(report.detailed(), status=_status_code(report.state))
        else:
            response = render(request, "monitoring/status.html", {"report": report}, status=_status_code(report.state))
    patch_vary_headers(response, ("Accept", "Authorization"))
    return response


@require_GET
@never_cache
def api_health_advanced(request: HttpRequest) -> JsonResponse | HttpResponse:
    """Numbers for on-call: database latency, cache statistics and hit rate per tier, memory,
    and this process's recent traffic."""
    access = _access(request)
    if access != "ok":
        return _refusal(request, access, as_json=True)
    report = run_checks((checks.Database, checks.Cache))
    database, cache = report.results
    body: dict[str, Any] = {
        "status": report.state,
        "database": {
            "state": database.state,
            "latency_ms": database.measurements.get("latency_ms"),
            "vendor": database.measurements.get("vendor"),
        },
        "cache": {
            "state": cache.state,
            "backend": cache.measurements.get("backend"),
            "latency_ms": cache.measurements.get("latency_ms"),
            # Read only while the cache answers: on a hung Redis each read would cost a timeout.
            "tiers": cache_stats.totals() if cache.state is State.OK else None,
        },
        "memory": checks.memory_usage(),
        "requests": recent_requests.summary().as_dict(),
    }
    return JsonResponse(body, status=_status_code(report.state))


# --- Prometheus ----------------------------------------------------------------------------------


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for `Authorization: Bearer <METRICS_TOKEN>`.

    Without a token configured it is open only with DEBUG on (a developer's machine), and in
    production it does not exist (404), so a forgotten token never publishes the numbers."""
    token = settings.METRICS_TOKEN
    if not token and not settings.DEBUG:
        raise Http404
    if token:
        scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
            response = HttpResponse(
                "This needs Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)


# --- Web Vitals beacons --------------------------------------------------------------------------

# navigator.sendBeacon sends a string as text/plain; a Blob could say application/json.
_BEACON_CONTENT_TYPES = frozenset({"text/plain", "application/json"})


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


def _from_our_page(request: HttpRequest) -> bool:
    """The Origin header names this host. Browsers send it on every POST, so a page of another
    site cannot post here in its visitor's name; tools without it are refused too. Only the host
    is compared, not the scheme: behind the TLS proxy the page's own origin is https while a
    misconfigured proxy header could make the request look like http, and neither changes who
    sent it."""
    origin = request.headers.get("Origin", "")
    return bool(origin) and origin != "null" and urlsplit(origin).netloc == request.get_host()


@csrf_exempt
@never_cache
def web_vitals(request: HttpRequest) -> HttpResponse:
    """Record a beacon of Web Vitals from a member page: 204, or a JSON refusal with a stable
    `code`, having recorded nothing.

    Exempt from CSRF on purpose: `navigator.sendBeacon` cannot send the CSRF header, and this
    endpoint is a write-only metrics sink that changes no member data and answers nothing secret.
    It is protected instead by the Origin check (`_from_our_page`), the Content-Type and size
    checks, strict bounds on every value and label (`parse_beacon`), and a rate limit per client
    IP (`WEB_VITALS_RATE_LIMIT_PER_IP`). The view itself runs no query; a member's session cookie
    costs the one that SessionTimeoutMiddleware spends loading the member on every request."""
    if request.method != "POST":
        response = _refuse(405, "method_not_allowed", "Send beacons with POST.")
        response["Allow"] = "POST"
        return response
    decision = ratelimit.hit(ratelimit.vitals_limit(), ratelimit.client_subject(request))
    if decision is not None and not decision.allowed:
        return ratelimit.rate_limited_response(decision, [decision])
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = MAX_BODY_BYTES + 1
    if length > MAX_BODY_BYTES:
        return _refuse(413, "body_too_large", f"A beacon is at most {MAX_BODY_BYTES} bytes.")
    if request.content_type not in _BEACON_CONTENT_TYPES:
        return _refuse(415, "unsupported_media_type", "Send the beacon as JSON, in text/plain or application/json.")
    if not _from_our_page(request):
        return _refuse(403, "cross_origin", "Beacons are accepted from the portal's own pages only.")
    try:
        beacon = parse_beacon(request.body)
    except BeaconRefused as refused:
        return _refuse(400, refused.code, refused.message)
    for measurement in beacon.measurements:
        observe_web_vital(measurement.name, measurement.value, page=beacon.page, member_tier=beacon.member_tier)
    return HttpResponse(status=204)

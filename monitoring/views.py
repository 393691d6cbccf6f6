"""Health endpoints."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@never_cache
def live(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches no database, cache or other dependency, so an
    orchestrator never restarts a healthy process because a dependency is down."""
    return HttpResponse("ok\n", content_type="text/plain")

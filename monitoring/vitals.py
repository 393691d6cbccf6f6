"""Web Vitals from members' browsers: what a page tells its script, and what a beacon may say.

Every page built on base.html loads `static/js/vitals.js` when `WEB_VITALS_SAMPLE_RATE` is above
zero. The script draws a number per page view and, for the sampled share, loads Google's
`web-vitals` library (vendored in `static/js/vendor/`) and sends what it measures with
`navigator.sendBeacon` to `/vitals/` (`monitoring.views.web_vitals`) when the page is hidden.
Nothing on a page depends on it: with JavaScript off, or not sampled, the page is the same.

A beacon is untrusted input that lands in Prometheus, so it is bounded before anything is
recorded: five metric names, a finite value within a sane range per metric, a page that is one of
the URLconf's names (so the `page` label has as many values as the portal has pages), a member
tier that is one of the four, at most `MAX_ENTRIES` values.

The page and the tier are what the server rendered into the page, sent back by the script. The
tier is not read from the session when the beacon arrives: the beacon leaves as the member
navigates away, so the page that logs a member in (or out) would be counted under the tier of
the page after it. A forged beacon can claim another tier, as it can claim any value: it stays
within the bounds above, and the rate limit caps how many.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from monitoring.metrics import MEMBER_TIERS

# The largest body a beacon needs: five metrics, each reported again after a back/forward-cache
# restore, comes to a few hundred bytes.
MAX_BODY_BYTES = 4096
MAX_ENTRIES = 20
# name -> (largest believable value as the browser reports it, divisor to the histogram's unit).
# web-vitals reports milliseconds, CLS without a unit. Beyond these a value is a broken clock or
# a forged beacon, not a slow page.
METRICS: dict[str, tuple[float, float]] = {
    "FCP": (120_000, 1000),
    "LCP": (120_000, 1000),
    "TTFB": (120_000, 1000),
    "INP": (60_000, 1000),
    "CLS": (10, 1),
}


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float  # in the histogram's unit: seconds, or none for CLS


@dataclass(frozen=True)
class Beacon:
    page: str
    member_tier: str
    measurements: tuple[Measurement, ...]


class BeaconRefused(Exception):
    """A beacon that records nothing: `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_beacon(body: bytes) -> Beacon:
    """The beacon in `body`, checked whole: any bad part refuses all of it."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BeaconRefused("invalid_json", "The body is not JSON.") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
        raise BeaconRefused("invalid_beacon", 'Expected {"page": "...", "metrics": [{"name": ..., "value": ...}]}.')
    page, tier = data.get("page"), data.get("tier")
    if not isinstance(page, str) or page not in page_names():
        raise BeaconRefused("unknown_page", "The page is not one of the portal's pages.")
    if not isinstance(tier, str) or tier not in MEMBER_TIERS:
        raise BeaconRefused("unknown_tier", f"Tiers are {', '.join(MEMBER_TIERS)}.")
    entries: list[Any] = data["metrics"]
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise BeaconRefused("invalid_beacon", f"Expected 1 to {MAX_ENTRIES} metrics.")
    measurements = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BeaconRefused("invalid_beacon", 'Each metric is {"name": ..., "value": ...}.')
        name, value = entry.get("name"), entry.get("value")
        if not isinstance(name, str) or name not in METRICS:
            raise BeaconRefused("unknown_metric", f"Metrics are {', '.join(METRICS)}.")
        ceiling, divisor = METRICS[name]
        # bool is an int to Python, and NaN or Infinity parse from JSON: none of them is a measurement.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BeaconRefused("invalid_value", f"{name} must be a finite number.")
        if not 0 <= value <= ceiling:
            raise BeaconRefused("invalid_value", f"{name} must be from 0 to {ceiling:g}.")
        measurements.append(Measurement(name, value / divisor))
    return Beacon(page, tier, tuple(measurements))


def page_names() -> frozenset[str]:
    """The pages a beacon may name: every URL name of the URLconf outside a namespace (the
    admin's and the API's have their own pages, which do not report), as `ResolverMatch.view_name`
    writes it."""
    return _names_in(get_resolver())


@cache
def _names_in(resolver: URLResolver) -> frozenset[str]:
    """Read once per URLconf (Django keeps one resolver per URLconf, and it does not change while
    the process runs)."""
    names: set[str] = set()

    def walk(patterns: list[URLPattern | URLResolver]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if not pattern.namespace:
                    walk(pattern.url_patterns)
            elif pattern.name:
                names.add(pattern.name)

    walk(resolver.url_patterns)
    return frozenset(names)


def web_vitals(request: HttpRequest) -> dict[str, Any]:
    """Context processor: what base.html writes on the script tag (`web_vitals`), or nothing when
    sampling is off or the page is not one a beacon may name (an error page, the admin). Costs no
    query: every page on base.html reads `request.user` for its navigation anyway."""
    rate: float = settings.WEB_VITALS_SAMPLE_RATE
    match = getattr(request, "resolver_match", None)
    if rate <= 0 or match is None or match.view_name not in page_names():
        return {}
    user = getattr(request, "user", None)
    tier = getattr(user, "tier", None) if user is not None and user.is_authenticated else None
    return {
        "web_vitals": {
            "endpoint": reverse("web-vitals"),
            "page": match.view_name,
            "tier": tier if tier in MEMBER_TIERS else "anonymous",
            "sample_rate": f"{rate:g}",
        }
    }

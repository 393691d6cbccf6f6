"""Every URL of the portal is either public on purpose or closed to anonymous visitors and to
other members.

The tests walk the URLconf rather than a list of pages, so a URL added without a login check,
or with an object in it that another member can reach, fails the suite until it is covered:
added to PUBLIC with a reason, or (for a URL with arguments) given an entry in OWNED_OBJECTS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from members.models import ApiToken, Member, TokenScope
from members.services import create_api_token

# Routes open to anyone, matched by prefix on the full route, each with the reason it may be.
# Static files are served by WhiteNoise's middleware, outside the URLconf, so need no entry.
PUBLIC: dict[str, str] = {
    "": "the landing page (exact match); logged-in members are sent on to the dashboard",
    "accounts/": "django-allauth: log in, sign up, reset and verify are public by design; its account "
    "pages require login themselves (checked below for the ones the navigation links to)",
    "admin/": "the Django admin: staff only, logged in through accounts/, with a second factor when "
    "ADMIN_REQUIRE_MFA is on (tests/portal/test_admin_access.py)",
    "api/v1/": "the JSON API: every operation needs a bearer token (never a session), which "
    "tests/members/test_api.py, tests/subscriptions/test_api.py and tests/portal/test_api_errors.py test; "
    "its schema and docs pages are public",
    "webhooks/stripe/": "Stripe's webhook: no session, but every delivery must carry Stripe's signature "
    "(400 without; tests/subscriptions/test_webhooks.py)",
    "health/live": "liveness probe for the orchestrator; touches nothing, says nothing",
    "health/ready": "readiness probe for the orchestrator and load balancer: states only "
    "(tests/monitoring/test_health.py)",
    "api/health": "the public status: the overall state and each check's, no internals "
    "(exact match: /api/health/advanced is staff-only; tests/monitoring/test_health.py)",
    "metrics": "Prometheus exposition for the bearer METRICS_TOKEN only, never a session: 401 without it, "
    "404 in production when no token is set (tests/monitoring/test_metrics.py)",
    "vitals/": "Web Vitals beacons from the portal's own pages, logged in or not: write-only metrics, "
    "checked for origin, size and values and rate limited per IP (tests/monitoring/test_web_vitals.py)",
}
EXACT_PUBLIC = {"", "health/ready", "api/health"}

# Routes for staff or an operator's bearer token (HEALTH_TOKEN), never for members: each is
# checked below to refuse anonymous visitors and members.
STAFF_OR_TOKEN: dict[str, str] = {
    "health/": "the detailed status page (HTML, or JSON for tools)",
    "api/health/advanced": "database latency, cache statistics, memory and traffic numbers",
}


def _bobs_token(owner: Member) -> dict[str, int]:
    token, _ = create_api_token(member=owner, name="owner's script", scopes=[TokenScope.READ], expires_at=None)
    return {"pk": token.pk}


def _token_untouched(kwargs: dict[str, int]) -> bool:
    return ApiToken.objects.live().filter(pk=kwargs["pk"]).exists()


@dataclass(frozen=True)
class OwnedObject:
    """How to make an object of `owner` for a URL's arguments, and how to tell it is unharmed."""

    make: Callable[[Member], dict[str, int]]
    untouched: Callable[[dict[str, int]], bool]


# Every URL with arguments, by URL name: the objects they address belong to one member.
OWNED_OBJECTS: dict[str, OwnedObject] = {
    "token-revoke": OwnedObject(make=_bobs_token, untouched=_token_untouched),
}

# allauth's own pages that members reach from the portal's navigation.
ALLAUTH_MEMBER_PAGES = ["/accounts/email/", "/accounts/password/change/", "/accounts/2fa/"]


@dataclass(frozen=True)
class Route:
    route: str  # the full route, as written in the URLconf: "tokens/<int:pk>/revoke/"
    name: str
    arguments: tuple[str, ...]
    is_regex: bool

    def path(self, kwargs: dict[str, int]) -> str:
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: str(kwargs[match[1]]), self.route)


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[Route]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        else:
            arguments = tuple(pattern.pattern.regex.groupindex)
            is_regex = isinstance(pattern.pattern, RegexPattern)
            yield Route(route=route, name=pattern.name or "", arguments=arguments, is_regex=is_regex)


def _is_public(route: str) -> bool:
    return any(route == public if public in EXACT_PUBLIC else route.startswith(public) for public in PUBLIC)


ALL_ROUTES = list(_walk(get_resolver().url_patterns))
MEMBER_ROUTES = [route for route in ALL_ROUTES if not _is_public(route.route) and route.route not in STAFF_OR_TOKEN]


def _redirects_to_login(response, path: str) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response["Location"])
    return location.path == "/accounts/login/" and parse_qs(location.query).get("next") == [path]


def test_the_walk_finds_every_member_page():
    # Guards the walk itself: were it to find nothing, every test below would pass vacuously.
    names = {route.name for route in MEMBER_ROUTES}
    assert {"dashboard", "profile", "tokens", "token-revoke", "activity", "subscription"} <= names


def test_member_pages_are_named_path_routes():
    # The tests below build each URL from its route and look its objects up by name.
    for route in MEMBER_ROUTES:
        assert not route.is_regex, f"{route.route}: use path(), not re_path(), for member pages"
        assert route.name, f"/{route.route} needs a name"


def test_every_public_entry_still_matches_a_route():
    # An entry left behind by a removed URL would silently open whatever later takes its place.
    for public in PUBLIC:
        assert any(
            route.route == public if public in EXACT_PUBLIC else route.route.startswith(public) for route in ALL_ROUTES
        ), f"PUBLIC lists {public!r}, which no URL matches any more"


@pytest.mark.parametrize("route", MEMBER_ROUTES, ids=lambda route: route.route)
def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, bob: Member, route: Route):
    if route.arguments:
        assert route.name in OWNED_OBJECTS, (
            f"/{route.route} takes {route.arguments}: add it to OWNED_OBJECTS so its ownership is tested"
        )
        kwargs = OWNED_OBJECTS[route.name].make(bob)
    else:
        kwargs = {}
    path = route.path(kwargs)

    for response in (client.get(path), client.post(path)):
        # Redirected to log in, or at worst refused outright; never served.
        assert _redirects_to_login(response, path) or response.status_code in {404, 405}, (
            f"anonymous {response.request['REQUEST_METHOD']} {path} answered {response.status_code}: "
            "protect it with login_required, or list it in PUBLIC with a reason"
        )
    if route.arguments:
        assert OWNED_OBJECTS[route.name].untouched(kwargs)


@pytest.mark.parametrize("route", [route for route in MEMBER_ROUTES if route.arguments], ids=lambda route: route.route)
def test_another_members_object_is_not_found(client: Client, alice: Member, bob: Member, route: Route):
    assert route.name in OWNED_OBJECTS, f"/{route.route}: add it to OWNED_OBJECTS so its ownership is tested"
    owned = OWNED_OBJECTS[route.name]
    bobs = owned.make(bob)
    alices = owned.make(alice)
    client.force_login(alice)

    assert client.get(route.path(alices)).status_code == 200  # the page works for its owner
    assert client.get(route.path(bobs)).status_code == 404
    assert client.post(route.path(bobs)).status_code == 404
    assert owned.untouched(bobs)


@pytest.mark.parametrize("route", MEMBER_ROUTES, ids=lambda route: route.route)
def test_member_pages_are_never_cached_and_refuse_a_post_without_csrf(alice: Member, route: Route):
    kwargs = OWNED_OBJECTS[route.name].make(alice) if route.arguments else {}
    path = route.path(kwargs)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.get(path)

    if response.status_code == 405:  # an action, answered to POST alone (its redirects are never_cache)
        assert response["Allow"] == "POST"
    else:
        assert response.status_code == 200
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= cache_control
    assert client.post(path).status_code == 403


@pytest.mark.parametrize("route", sorted(STAFF_OR_TOKEN))
def test_staff_pages_refuse_anonymous_visitors_and_members(client: Client, alice: Member, route: str):
    assert any(found.route == route for found in ALL_ROUTES), f"STAFF_OR_TOKEN lists /{route}, which no URL matches"
    path = "/" + route
    for headers in ({}, {"Accept": "application/json"}, {"Authorization": "Bearer not-the-token"}):
        response = client.get(path, headers=headers)
        assert _redirects_to_login(response, path) or response.status_code == 401, (
            f"anonymous GET {path} {headers} answered {response.status_code}"
        )
    client.force_login(alice)
    assert client.get(path).status_code == 403
    assert client.post(path).status_code in {403, 405}


@pytest.mark.parametrize("path", ALLAUTH_MEMBER_PAGES)
def test_allauths_account_pages_ask_an_anonymous_visitor_to_log_in(client: Client, db: None, path: str):
    assert _redirects_to_login(client.get(path), path)

"""Render-once pages: a view's whole response body cached under the data versions it was made
from, so a warm page costs one cache round trip and no template rendering.

    @cached_page(tier=MEDIUM, scopes=lambda request: [(MEMBER, request.user.pk)])
    def dashboard(request): ...

An entry is the body with the two things that must differ on every response taken out (the
CSRF token and the Content-Security-Policy nonce), the versions of the namespaces it was built
from (`core.cache`: every write that changes what a page shows invalidates its namespace), and
a time after which it is not served. One `get_many` reads the entry and the current versions;
the entry is served only when its versions are the current ones, so invalidation is exactly that
of the cached reads, across every process sharing the cache.

What is never served from or stored in the cache: a request with flash messages waiting (they
are shown once, by a render), a response other than a plain 200, one that sets a cookie, and
anything while the cache is down (the view renders as if there were no cache). The setting
`PAGE_CACHE = False` turns it off: every page renders.

Views mark what a page may not outlive with `valid_until` (the tokens page, the next expiry),
and `vary` names what a page shows beyond its namespaces' data (the member's own fields that
the page shell reads). Keys carry a fingerprint of the templates and code of this release, so
during a rolling deploy old and new instances never serve each other's pages.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from core import cache as cached
from core import messages
from core.cache import Namespace, TtlTier
from core.csrf import get_token

# Stand-ins in a stored body: made of characters that HTML escaping leaves alone, and not
# something a page could contain by chance.
CSRF_MARK = "pagecache-csrf-3c9e7f1a5b"
NONCE_MARK = "pagecache-nonce-3c9e7f1a5b"
_CSRF_BYTES = CSRF_MARK.encode()
_NONCE_BYTES = NONCE_MARK.encode()
_RENDERING = "_pagecache_rendering"
_VALID_UNTIL = "_pagecache_valid_until"

V = TypeVar("V", bound=Callable[..., HttpResponse])
Scopes = Callable[[Any], Iterable[tuple[Namespace, Hashable]]]


@dataclass(frozen=True)
class _Page:
    versions: tuple[int, ...]
    valid_until: float
    content_type: str
    body: bytes


@functools.cache
def release() -> str:
    """A fingerprint of the project's own templates, code and static files (names, sizes and
    modification times, read once per process): a release that changes any uses new keys. The
    static files count because pages inline the stylesheet under its hash (portal/inline.py)."""
    root = Path(settings.BASE_DIR)
    folders = {root / "templates", root / "static"} | {
        Path(config.path) for config in apps.get_app_configs() if Path(config.path).is_relative_to(root)
    }
    digest = hashlib.blake2b(digest_size=6)
    for folder in sorted(folders):
        for path in sorted(folder.rglob("*")):
            if path.suffix in {".py", ".html", ".txt", ".css", ".js"} and path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def csrf_context(request: HttpRequest) -> dict[str, str]:
    """Context for a render that may be cached: the CSRF token as a stand-in, put back with the
    request's own token whenever the body is served. Empty for any other render."""
    return {"csrf_token": CSRF_MARK} if getattr(request, _RENDERING, False) else {}


def valid_until(request: HttpRequest, at: float) -> None:
    """The page being rendered must not be served after `at` (a Unix time), whatever its TTL."""
    current = getattr(request, _VALID_UNTIL, None)
    setattr(request, _VALID_UNTIL, at if current is None else min(current, at))


def _serve(request: HttpRequest, page: _Page) -> HttpResponse:
    body = page.body
    if _CSRF_BYTES in body:
        body = body.replace(_CSRF_BYTES, get_token(request).encode())
    if _NONCE_BYTES in body:
        body = body.replace(_NONCE_BYTES, str(request.csp_nonce).encode())  # type: ignore[attr-defined]
    return HttpResponse(body, content_type=page.content_type)


def _storable(request: HttpRequest, response: HttpResponse) -> bytes | None:
    """The body to store with its stand-ins, or None if this response must not be cached; puts
    the request's own CSRF token in `response` (it was rendered with the stand-in)."""
    body = response.content
    if _CSRF_BYTES in body:
        response.content = body.replace(_CSRF_BYTES, get_token(request).encode())
    if (
        response.status_code != 200
        or response.cookies
        or response.streaming
        or messages.were_shown(request)
        or response.has_header("Content-Disposition")
    ):
        return None
    nonce = getattr(request, "_csp_nonce", None)  # django-csp's, set once a render asked for it
    if nonce:
        body = body.replace(str(nonce).encode(), _NONCE_BYTES)
    return body


def _lookup(
    request: HttpRequest, name: str, tier: TtlTier, namespaces: Sequence[tuple[Namespace, Hashable]], varies: Hashable
) -> tuple[str, tuple[int | None, ...], _Page | None]:
    """The entry's key, the namespaces' current versions (None for any not known) and the
    entry when it may be served; one `get_many` reads the entry and the versions."""
    fingerprint = hashlib.blake2b(repr((request.get_full_path(), varies)).encode(), digest_size=8).hexdigest()
    key = f"page:{release()}:{name}:{','.join(str(scope) for _, scope in namespaces)}:{fingerprint}"
    version_keys = [cached._version_key(namespace, scope) for namespace, scope in namespaces]
    found = cache.get_many([key, *version_keys])
    versions = tuple(found.get(version_key) for version_key in version_keys)
    page = found.get(key)
    if (
        isinstance(page, _Page)
        and None not in versions
        and page.versions == versions
        and page.valid_until > time.time()
    ):
        cached.stats.record(tier, "hits")
        return key, versions, page
    cached.stats.record(tier, "misses")
    if None in versions:  # never cached for this scope yet, or the cache is down
        versions = tuple(cached._version(namespace, scope) for namespace, scope in namespaces)
    return key, versions, None


def _keep(
    request: HttpRequest, key: str, tier: TtlTier, versions: tuple[int | None, ...], content_type: str, body: bytes
) -> None:
    """Store a body made from data at `versions` (read before the data was), unless the cache
    was down when they were read."""
    if None in versions:
        return
    ttl = tier.ttl
    until = min(time.time() + ttl, getattr(request, _VALID_UNTIL, None) or float("inf"))
    cache.set(key, _Page(tuple(int(v) for v in versions if v is not None), until, content_type, body), timeout=ttl)
    cached.stats.record(tier, "sets")


def cached_page(
    *,
    tier: TtlTier,
    scopes: Scopes,
    vary: Callable[[Any], Hashable] = lambda request: (),
) -> Callable[[V], V]:
    """Cache a GET view's body; see the module docstring. `scopes(request)`: the namespaces and
    scopes whose data the page shows; `vary(request)`: what else it depends on. The key also
    has the view, the full path and its query string."""

    def decorate(view: V) -> V:
        name = f"{view.__module__}.{view.__qualname__}"

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "GET" or not settings.PAGE_CACHE or messages.pending(request):
                return view(request, *args, **kwargs)
            key, versions, page = _lookup(request, name, tier, tuple(scopes(request)), vary(request))
            if page is not None:
                return _serve(request, page)
            setattr(request, _RENDERING, True)
            try:
                response = view(request, *args, **kwargs)
            finally:
                setattr(request, _RENDERING, False)
            body = _storable(request, response)
            if body is not None:
                _keep(request, key, tier, versions, response["Content-Type"], body)
            return response

        return wrapper  # type: ignore[return-value]

    return decorate


def cached_response(
    request: HttpRequest,
    *,
    name: str,
    tier: TtlTier,
    scopes: Sequence[tuple[Namespace, Hashable]],
    compute: Callable[[], Any],
    render: Callable[[HttpRequest, Any], HttpResponse],
    vary: Hashable = (),
) -> HttpResponse:
    """A GET API operation's response, its JSON body cached as `cached_page` caches a page's
    (no stand-ins: an API response has no form and no script). Called by the operation itself,
    after authentication and input validation, so only a request that may see the answer is
    served it: `compute()` is what the operation would return, `render(request, result)` the
    response the API makes of it. `name` names the operation in the key. Only a 200 is kept."""
    if request.method != "GET" or not settings.PAGE_CACHE:
        return render(request, compute())
    key, versions, page = _lookup(request, name, tier, scopes, vary)
    if page is not None:
        return HttpResponse(page.body, content_type=page.content_type)
    response = render(request, compute())
    if response.status_code == 200 and not response.cookies:
        _keep(request, key, tier, versions, response["Content-Type"], response.content)
    return response

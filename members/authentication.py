"""The logged-in member of a request and the API token of an API call, from the cache: no
database query on a warm request.

Django's `AuthenticationMiddleware` reads the member's row on every request that looks at
`request.user`, to check the session against it (`get_session_auth_hash`) and that the member
may still log in (`is_active`). `MemberAuthenticationMiddleware` replaces it: it keeps a
snapshot of the row in the cache, under the member's MEMBER namespace version, so every ORM
write of the member's rows (`members.receivers.on_member_data_saved`) makes it stale at once for
every process, and one `get_many` round trip reads the snapshot with its version.

What is cached, and what is not:
- The snapshot is the member as Django's own `auth.get_user` returned it, without the password
  hash (no hash of a password is kept in the cache). The field is deferred, so code that needs
  it (`has_usable_password`, a password change) loads it from the database as usual, and a
  `save()` of the snapshot writes only the fields it holds.
- Beside it, the session hash Django computed from that row (an HMAC with SECRET_KEY, which
  also covers `session_epoch`), under a key that names SECRET_KEY. A session whose hash is not
  that one, for instance one signed with a key in SECRET_KEY_FALLBACKS, goes the whole way
  through `auth.get_user`, which rotates or ends it exactly as Django does.
- Nothing is cached for a request without a logged-in session, nor when the cache is down: then
  every request reads the row, as without this middleware.

`authenticate_token` does the same for the API's bearer tokens (see its docstring).
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, load_backend
from django.contrib.auth.middleware import AuthenticationMiddleware, auser
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from django.utils.functional import SimpleLazyObject

from core import cache as cached
from core.cache import MEDIUM, MEMBER
from core.pagecache import release
from members import tokens
from members.models import ApiToken, Member


@dataclass(frozen=True)
class _Snapshot:
    version: int
    member: Member
    session_hash: str


def _key(member_id: Hashable) -> str:
    # The secret the snapshot's session hash was made with is in the key: once SECRET_KEY
    # changes, no session is checked against a hash of the old key, and a key taken out of
    # SECRET_KEY_FALLBACKS ends the sessions it signed, as in Django.
    return f"member-row:{release()}:{_secret_id(settings.SECRET_KEY)}:{member_id}"


@functools.lru_cache(maxsize=4)
def _secret_id(secret: str) -> str:
    return hashlib.blake2b(secret.encode(), digest_size=6, person=b"member-row").hexdigest()


def _verified(request: HttpRequest, snapshot: _Snapshot, backend_path: str) -> bool:
    session_hash = request.session.get(HASH_SESSION_KEY)
    backend: Any = load_backend(backend_path)  # ModelBackend or allauth's, both with the method below
    return (
        isinstance(session_hash, str)
        and constant_time_compare(session_hash, snapshot.session_hash)
        and bool(backend.user_can_authenticate(snapshot.member))
    )


def get_member(request: HttpRequest) -> Any:
    """`django.contrib.auth.get_user`, with the member's row from its cached snapshot."""
    try:
        member_id = auth._get_user_session_key(request)  # type: ignore[attr-defined]  # private, not in django-stubs
        backend_path = request.session[BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return auth.get_user(request)
    key, version_key = _key(member_id), cached._version_key(MEMBER, member_id)
    found = cache.get_many([key, version_key])
    snapshot, version = found.get(key), found.get(version_key)
    if isinstance(snapshot, _Snapshot) and snapshot.version == version and _verified(request, snapshot, backend_path):
        cached.stats.record(MEDIUM, "hits")
        return snapshot.member  # unpickled for this request alone
    cached.stats.record(MEDIUM, "misses")
    # Read before the row: a write that commits after it moves the version on, so the snapshot
    # taken below is stale at once (the order `core.cache.cached_read` keeps too).
    version = version if version is not None else cached._version(MEMBER, member_id)
    user = auth.get_user(request)
    if isinstance(user, Member) and version is not None:
        _store(member_id, version, user)
    return user


def _without_password(member: Member) -> Member:
    held = copy.copy(member)
    held.__dict__.pop("password", None)  # deferred: loaded from the database when used
    return held


def _store(member_id: Hashable, version: int, member: Member) -> None:
    snapshot = _Snapshot(int(version), _without_password(member), member.get_session_auth_hash())
    cache.set(_key(member_id), snapshot, timeout=MEDIUM.ttl)
    cached.stats.record(MEDIUM, "sets")


# --- API tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TokenEntry:
    """What the cache knows of a token: always its member (a token never changes hands), and
    once a request has read the member's version before the row, the token row as of it."""

    member_id: int
    version: int | None = None
    token: ApiToken | None = None


def _token_key(token_hash: str) -> str:
    return f"api-token:{release()}:{token_hash}"


def authenticate_token(plain: str) -> ApiToken | None:
    """`ApiToken.objects.authenticate`, from the cache when it can: the live token of an active
    member that `plain` is, with its member (without the password hash), or None.

    The token row is kept under its member's MEMBER version, which every write of the member's
    rows moves on (revoking a token records the member's activity, deactivating saves the
    member), and checked for expiry on each use. It is stored only by a request that read the
    version before the row, and the member's id is needed to read the version: so the first use
    of a token only notes its member, the second stores the row, and from then on a request costs
    two cache round trips and no query. A token that is not usable is never cached."""
    if not tokens.is_well_formed(plain):
        return None
    key = _token_key(tokens.hash_token(plain))
    entry = cache.get(key)
    version = None
    if isinstance(entry, _TokenEntry):
        version = cache.get(cached._version_key(MEMBER, entry.member_id))
        if entry.token is not None and version is not None and entry.version == version:
            cached.stats.record(MEDIUM, "hits")
            held = entry.token
            return held if held.is_live() and held.member.is_active else None
        if version is None:
            version = cached._version(MEMBER, entry.member_id)
    cached.stats.record(MEDIUM, "misses")
    token = ApiToken.objects.authenticate(plain)
    if token is None:
        return None
    if isinstance(entry, _TokenEntry) and entry.member_id == token.member_id and version is not None:
        held = copy.copy(token)
        held.member = _without_password(token.member)
        cache.set(key, _TokenEntry(token.member_id, int(version), held), timeout=MEDIUM.ttl)
        cached.stats.record(MEDIUM, "sets")
    else:
        cache.set(key, _TokenEntry(token.member_id), timeout=MEDIUM.ttl)
    return token


# --- The middleware ----------------------------------------------------------------------------


def _cached_member(request: HttpRequest) -> Any:
    if not hasattr(request, "_cached_user"):
        request._cached_user = get_member(request)  # type: ignore[attr-defined]  # Django's own attribute
    return request._cached_user  # type: ignore[attr-defined]


class MemberAuthenticationMiddleware(AuthenticationMiddleware):
    """Django's AuthenticationMiddleware (whose subclass the admin's checks ask for), with
    `get_member` behind `request.user`. After SessionMiddleware, in its place."""

    def process_request(self, request: HttpRequest) -> None:
        request.user = SimpleLazyObject(lambda: _cached_member(request))  # type: ignore[assignment]  # as Django's
        request.auser = functools.partial(auser, request)  # async views: Django's own

"""Bearer-token authentication of the JSON API: `READ` and `WRITE` for operations, and the
request type of an authenticated operation. Shared by every app's router."""

from __future__ import annotations

import re

from django.http import HttpRequest
from ninja.security import HttpBearer

from core.api import ApiError
from core.ratelimit import Decision, hit_token
from members import services, tokens
from members.authentication import authenticate_token
from members.http import origin
from members.models import ApiToken, TokenScope

# --- Authentication --------------------------------------------------------------------------

REALM = 'Bearer realm="Member Portal API"'
# One message for every unusable token, so the answer never tells a guesser which part was wrong.
REFUSED_MESSAGE = (
    "The API token is not valid: it is mistyped, unknown, expired or revoked, or its account is "
    "not active. Create a new token at /tokens/."
)
# Query parameters that clients commonly use for credentials, and anything shaped like our token.
_CREDENTIAL_PARAMETERS = frozenset({"token", "access_token", "api_key", "apikey"})
_TOKEN_LIKE = re.compile(re.escape(tokens.PREFIX) + r"[0-9A-Za-z]{4,}")


def _token_in_query(request: HttpRequest) -> bool:
    for name, values in request.GET.lists():
        if name.lower() in _CREDENTIAL_PARAMETERS or _TOKEN_LIKE.search(name):
            return True
        if any(_TOKEN_LIKE.search(value) for value in values):
            return True
    return False


def _record_use(request: HttpRequest, token: ApiToken, decision: Decision | None) -> None:
    """Note when and from where the token was last used, without a write on every request: only
    the first request of each minute window of the token's rate limit (`decision.count == 1`)
    writes. When the cache is down (no decision), nothing is written rather than a write per
    request."""
    if decision is None or decision.count != 1:
        return
    services.record_token_use(token=token, ip=origin(request)["ip"])


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`, and nothing else: no session cookie, no query string.

    A token in the query string is refused even beside a valid header, because a URL ends up in
    logs, browser history and Referer headers: the client must learn to stop sending it. Every
    token that is not usable gets the same answer, so nothing tells a guesser which part was
    wrong; a malformed one or one with a wrong checksum costs no query at all."""

    openapi_description = (
        "An API token created at /tokens/ (`mpt_...`), sent as `Authorization: Bearer <token>`. "
        "GET operations need the `read` scope; PATCH and DELETE need `write`."
    )

    def __init__(self, scope: TokenScope) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiToken:
        if _token_in_query(request):
            raise ApiError(
                401,
                "token_in_query",
                "Never put an API token in the URL: send it in the Authorization header "
                "(Authorization: Bearer <token>). Revoke the token you sent and create a new one at /tokens/.",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'},
            )
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401,
                "not_authenticated",
                "This needs an API token, sent as Authorization: Bearer <token>. Create one at /tokens/.",
                headers={"WWW-Authenticate": REALM},
            )
        return self.authenticate(request, credentials.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        found = authenticate_token(token)
        if found is None:
            raise ApiError(
                401,
                "invalid_token",
                REFUSED_MESSAGE,
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        _record_use(request, found, hit_token(request, found.pk))
        if not found.has_scope(self.scope):
            raise ApiError(
                403,
                "insufficient_scope",
                f"This token lacks the {self.scope} scope that this needs. "
                f"Create a token with the {self.scope} scope at /tokens/.",
                headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{self.scope}"'},
            )
        return found


READ = TokenAuth(TokenScope.READ)
WRITE = TokenAuth(TokenScope.WRITE)


class TokenRequest(HttpRequest):
    """A request that a token authenticated: `auth` is the token, with its member loaded."""

    auth: ApiToken

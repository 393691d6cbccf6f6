"""`get_token` of Django's CSRF protection, masked in a handful of calls instead of a few hundred.

Django masks the CSRF secret afresh for every response that shows a form (so a compressed page
never repeats the same secret: BREACH), drawing the 32 characters of the mask one
`secrets.choice` at a time and ciphering one generator step at a time: about 500 Python calls,
which on a page served from `core.pagecache` is a sixth of the request. `get_token` here makes
the same token, `mask + cipher` over the same alphabet, with the mask drawn from one
`secrets.token_bytes`; Django's middleware checks it as its own. When the request has no
secret yet, Django's `get_token` makes one (and sets the cookie).
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest
from django.middleware import csrf

_CHARS = csrf.CSRF_ALLOWED_CHARS
_BASE = len(_CHARS)  # 62
_INDEX = {char: index for index, char in enumerate(_CHARS)}
# Bytes at or above 248 (4 x 62) are dropped, so the rest fall evenly on the alphabet.
_UNEVEN = bytes(range(256 - 256 % _BASE, 256))


def _random_indexes(count: int) -> bytes:
    while True:
        raw = secrets.token_bytes(count + count // 2).translate(None, _UNEVEN)
        if len(raw) >= count:  # all but certain: 48 bytes keep fewer than 32 about once in 10^17
            return raw[:count]


def get_token(request: HttpRequest) -> str:
    """`django.middleware.csrf.get_token`: the request's CSRF token, masked anew."""
    secret = request.META.get("CSRF_COOKIE")
    if not isinstance(secret, str) or len(secret) != csrf.CSRF_SECRET_LENGTH:
        return csrf.get_token(request)
    request.META["CSRF_COOKIE_NEEDS_UPDATE"] = True  # as Django does: the cookie goes out again
    mask = [byte % _BASE for byte in _random_indexes(csrf.CSRF_SECRET_LENGTH)]
    cipher = [_CHARS[(_INDEX[char] + offset) % _BASE] for char, offset in zip(secret, mask, strict=True)]
    return "".join([_CHARS[offset] for offset in mask]) + "".join(cipher)

"""The API token format: `mpt_` + 30 random base62 characters + a 6-character CRC32 checksum.

30 base62 characters carry about 178 random bits. The checksum lets a typo or a truncated copy
be rejected before any database lookup, and the fixed prefix lets secret scanners recognise a
leaked token. Only the SHA-256 of the whole token is stored: a fast hash is right here because
the secret is long and random (no dictionary to try), and it keeps authentication to one
indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "mpt_"
_ALPHABET = string.digits + string.ascii_letters
_RANDOM_LENGTH = 30
_CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 4
DISPLAY_SUFFIX_LENGTH = 4


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


@dataclass(frozen=True)
class NewToken:
    """A freshly generated token. `plain` is shown to the member once and never stored."""

    plain: str
    hash: str
    prefix: str
    last_chars: str


def generate() -> NewToken:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    plain = PREFIX + body + _checksum(body)
    return NewToken(
        plain=plain,
        hash=hash_token(plain),
        prefix=plain[:DISPLAY_PREFIX_LENGTH],
        last_chars=plain[-DISPLAY_SUFFIX_LENGTH:],
    )


def is_well_formed(plain: str) -> bool:
    """Right prefix, length, alphabet and checksum. Needs no database."""
    if len(plain) != TOKEN_LENGTH or not plain.startswith(PREFIX):
        return False
    rest = plain[len(PREFIX) :]
    if any(char not in _ALPHABET for char in rest):
        return False
    body, checksum = rest[:_RANDOM_LENGTH], rest[_RANDOM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def hash_token(plain: str) -> str:
    return hashlib.sha256(plain.encode("ascii")).hexdigest()

"""The keyset cursor over a member's activity log, shared by the activity page and the API.

A cursor is a position in `ActivityLog.objects.recent()` order: the (created_at, id) of a row.
Reading the page after it is `recent().before(*cursor)`, one indexed seek however deep it is;
an OFFSET would make deep pages ever slower on a table of tens of millions of rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from members.models import ActivityLog

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_PK = 2**63 - 1
# Version, microseconds since the epoch, row id.
_CURSOR_RE = re.compile(r"1\.(-?\d{1,18})\.(\d{1,19})")
# Longer than any cursor `encode_cursor` makes; anything longer is refused unread.
MAX_CURSOR_LENGTH = 64


def encode_cursor(entry: ActivityLog) -> str:
    """The cursor after `entry`: the page that follows starts with the row after it."""
    return cursor_at(entry.created_at, entry.pk)


def cursor_at(created_at: dt.datetime, pk: int) -> str:
    """A position in the log: the (created_at, id) of a row, in exact microseconds (no float
    rounding), base64url-encoded so it reads as a token, not something to edit by hand."""
    micros = (created_at - _EPOCH) // dt.timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"1.{micros}.{pk}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(value: str) -> tuple[dt.datetime, int] | None:
    """The (created_at, id) in a cursor, or None for anything that is not a cursor we made.

    Every value is checked to fit the database columns, so a tampered cursor can never reach a
    query that fails (a too-large id is an error on PostgreSQL). A well-formed but invented
    cursor is harmless: it only moves within the member's own log."""
    if len(value) > MAX_CURSOR_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    match = _CURSOR_RE.fullmatch(raw)
    if match is None:
        return None
    pk = int(match[2])
    try:
        created_at = _EPOCH + dt.timedelta(microseconds=int(match[1]))
    except OverflowError:
        return None
    if not 1 <= pk <= _MAX_PK:
        return None
    return created_at, pk

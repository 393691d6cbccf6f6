"""CSV exports for staff, streamed a row at a time so a long list costs flat memory.

Cells are made safe for spreadsheets: a text cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return would be read as a formula by Excel or LibreOffice (CSV injection: a member who
names themselves `=HYPERLINK(...)` must not run anything on a staff laptop), so it gets a
leading `'`, which spreadsheets show as text (OWASP's advice), before the original text, kept
whole. Spreadsheets skip leading blanks and read full-width signs (U+FF1D, U+FF0B...) as
formula signs too, so the sign is looked for in the cell's NFKC form (where U+FF1D is `=`)
after any leading whitespace and invisible format characters (zero-width space and joiners,
word joiner, byte order mark, direction marks). Numbers and dates are ours and left alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse

FORMULA_SIGNS = ("=", "+", "-", "@")
# Characters that start a cell a spreadsheet may read as something other than text.
FORMULA_PREFIXES = (*FORMULA_SIGNS, "\t", "\r", "\n")


def starts_like_a_formula(text: str) -> bool:
    """Whether a spreadsheet could take `text` for a formula (see the module's docstring)."""
    if text.startswith(FORMULA_PREFIXES):
        return True
    # A character at a time, up to the first significant one, so a long cell is not normalised
    # whole. Whitespace and format characters (category Cf: U+200B..U+200D, U+2060, U+FEFF,
    # U+200E/F...), which show as nothing, are skipped.
    for char in text:
        significant = "".join(
            c for c in unicodedata.normalize("NFKC", char) if not (c.isspace() or unicodedata.category(c) == "Cf")
        )
        if significant:
            return significant.startswith(FORMULA_SIGNS)
    return False


def safe_cell(value: Any) -> str | int | float:
    """One value as a CSV cell: text neutralised as described above, JSON for dicts and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    text = str(value)
    if starts_like_a_formula(text):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose `write` hands the line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([safe_cell(name) for name in header])
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def stream_csv(*, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingHttpResponse:
    """A download of `rows` under `header`. `rows` is consumed while the response is sent: pass a
    QuerySet's `iterator()`, never a list."""
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Personal data: not to be kept by any cache on the way.
    response["Cache-Control"] = "private, no-store"
    return response

"""CSV exports for staff, streamed a row at a time so a long list costs flat memory, and the
admin mix-in (`CsvExportAdmin`) that offers them on a list.

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
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from core.db_router import heavy_reads
from members.http import origin
from members.models import Member
from members.services import record_export

_ModelT = TypeVar("_ModelT", bound=Model)

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


class CsvExportAdmin(admin.ModelAdmin[_ModelT]):
    """An "Export CSV" link above the list (the list as filtered, searched and ordered) and an
    "Export selected to CSV" action, both streamed (`stream_csv`) and both noted on the
    staff member's own activity log. Subclasses name the columns in `csv_columns` (header,
    attribute path or method name); nothing secret belongs there."""

    csv_columns: Sequence[tuple[str, str]] = ()
    # Rows fetched per round trip while streaming.
    csv_chunk_size = 2_000
    # A list of tens of millions of rows is filtered before it is exported, not after.
    csv_max_rows: int | None = None
    change_list_template = "admin/csv_export_change_list.html"

    def has_export_permission(self, request: HttpRequest) -> bool:
        # The export holds what the list shows to whoever may view it.
        return self.has_view_permission(request)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_view),
            name=f"{opts.app_label}_{opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if self.has_export_permission(request):
            opts = self.model._meta
            extra_context = {
                "csv_export_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_export"),
                **(extra_context or {}),
            }
        return super().changelist_view(request, extra_context)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The list as the changelist would show it with the same query string, every page."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist") + "?e=1")
        return self._export(request, changelist.queryset, rows=f"list ?{request.GET.urlencode()}")

    @admin.action(description="Export selected to CSV", permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[_ModelT]) -> StreamingHttpResponse:
        if request.POST.get("select_across") == "1":
            rows = f"all matching ?{request.GET.urlencode()}"
        else:
            rows = "selected " + ",".join(request.POST.getlist(ACTION_CHECKBOX_NAME))
        return self._export(request, queryset, rows=rows)

    def _export(self, request: HttpRequest, queryset: QuerySet[_ModelT], *, rows: str) -> StreamingHttpResponse:
        opts = self.model._meta
        record_export(actor=cast("Member", request.user), model=opts.label_lower, rows=rows[:500], **origin(request))
        # The rows are read while the response streams: pin the queryset to the read replica,
        # if there is one, now.
        with heavy_reads() as alias:
            queryset = queryset.using(alias)
        if self.csv_max_rows is not None:
            queryset = queryset[: self.csv_max_rows]
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return stream_csv(
            filename=f"{opts.model_name}-{stamp}.csv",
            header=[header for header, _ in self.csv_columns],
            rows=(self._csv_row(obj) for obj in queryset.iterator(chunk_size=self.csv_chunk_size)),
        )

    def _csv_row(self, obj: _ModelT) -> list[Any]:
        row = []
        for _, source in self.csv_columns:
            method = getattr(self, source, None)
            if callable(method):
                row.append(method(obj))
                continue
            value: Any = obj
            for part in source.split("__"):
                value = getattr(value, part, None)
            row.append(value)
        return row

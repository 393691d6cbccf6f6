"""Admin lists that stay fast on big tables (tens of millions of rows): capped or estimated
counts, no facet counts, related rows loaded for the page only, and a date filter that compares
the indexed column with constants. Used by every app's admin; imports no app of ours."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

_ModelT = TypeVar("_ModelT", bound=Model)


def estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in the queryset's table, when the queryset has no filter
    at all (None otherwise, on other databases, or before the table was first analysed).

    `pg_class.reltuples` is kept by VACUUM and ANALYZE (autovacuum runs them as the table
    grows), so it is close, and reading it costs one catalogue row instead of a scan of every
    row of the table."""
    if queryset.query.where or queryset.query.is_sliced:
        return None
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] < 0:  # -1: never analysed
        return None
    return int(row[0])


class CappedCountPaginator(Paginator[Any]):
    """Counts at most `cap` rows, so a page costs the same at 10 million rows as at 10 thousand.

    A plain `SELECT COUNT(*)` reads the whole table on every page view (about 0.1 s per 4 million
    activity rows with the table in memory, far more when it is not); counting a `LIMIT`ed
    subquery stops at the cap (3 ms). An unfiltered list on PostgreSQL shows the planner's
    estimate of the table's rows instead (`estimated_rows`), so staff still see its size.
    Either way the pages stop at the cap, so `OFFSET` never reaches deep into the table: to look
    further back, staff filter (by date, member, action...)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # The admin always pages a QuerySet.
        queryset = cast("QuerySet[Any]", self.object_list)
        estimate = estimated_rows(queryset)
        if estimate is not None and estimate > self.cap:
            return estimate
        # Any `cap` rows will do for counting: no ORDER BY, so no sort and the cheapest index.
        return queryset.order_by()[: self.cap].count()

    @cached_property
    def num_pages(self) -> int:
        pages = super().num_pages
        return min(pages, max(1, math.ceil(self.cap / self.per_page)))


class PagePrefetchChangeList(ChangeList):
    """Loads the related rows of the page's rows only, one query per relation, after the page is
    read (`prefetch_related`), instead of joining them into the page query (`select_related`).

    The join runs for every row that `OFFSET` skips as well: on 10 million activity rows, page
    100 took 66 ms with the member joined in and 7 ms without. On members filtered by a rare
    status, PostgreSQL hashed the whole profile table for the join (60 ms) where the prefetch
    reads 100 profiles by their index."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        # `select_related(None)` drops the joins that the admin's `get_queryset` adds for the
        # change page, and those the changelist adds for foreign keys in `list_display`.
        return queryset.select_related(None).prefetch_related(*getattr(self.model_admin, "list_prefetch_related", ()))


class BigListAdmin(admin.ModelAdmin[_ModelT]):
    """What every list over a big table shares: counts that are estimates or stop at the cap,
    no second count of the whole table, no facet counts (each would count every choice of every
    filter), and related rows loaded for the page only (`list_prefetch_related`)."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_prefetch_related: Sequence[str] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PagePrefetchChangeList

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj: _ModelT) -> SafeString:
        """The same checkbox as Django's, written directly: rendering a form widget's template
        for each of 100 rows took a third of the list's time."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )


class DateRangeListFilter(admin.DateFieldListFilter):
    """The admin's date filter (today, past 7 days, this month, this year) plus a from/before
    pair of date inputs, on the same two parameters (`<field>__gte`, `<field>__lt`). Both
    compare the indexed column with a constant: no `date_hierarchy`, whose year and month links
    aggregate the whole table."""

    template = "admin/date_range_filter.html"

    def __init__(
        self,
        field: Any,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: admin.ModelAdmin[Any],
        field_path: str,
    ) -> None:
        # An input left empty is sent as `created_at__lt=`: no bound, not a malformed one.
        for key in (f"{field_path}__gte", f"{field_path}__lt"):
            if key in params and not any(params[key]):
                del params[key]
        super().__init__(field, request, params, model, model_admin, field_path)

    @staticmethod
    def _bound(value: str) -> str | dt.datetime:
        """A date from the inputs is midnight in the site's time zone; the links already send
        aware datetimes, which are left to the field to parse."""
        try:
            day = parse_date(value)
        except ValueError as error:  # well formed, but no such day (2026-02-30)
            raise IncorrectLookupParameters(error) from None
        if day is None:
            return value
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        parameters = cast("dict[str, list[str]]", self.used_parameters)
        self.used_parameters = {
            key: [self._bound(value) for value in values] if key.endswith(("__gte", "__lt")) else values
            for key, values in parameters.items()
        }
        return cast("QuerySet[Any]", super().queryset(request, queryset))

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        # The other parameters of the list, carried by the date form as hidden inputs.
        self.hidden_params = [
            (key, value) for key, value in changelist.params.items() if key not in self.expected_parameters()
        ]
        self.since_value = str(self.date_params.get(self.lookup_kwarg_since, ""))[:10]
        self.until_value = str(self.date_params.get(self.lookup_kwarg_until, ""))[:10]
        yield from super().choices(changelist)

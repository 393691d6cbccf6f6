"""Staff admin for members, their profiles, API tokens and activity log.

Searches on these pages match the start of an email address, case-insensitively: emails are
stored lower-cased, so the search term is lower-cased and matched with `startswith`, which the
index on `email` serves (`LIKE 'term%'`). The admin's `^email` and `=email` would compare
`UPPER(email)`, which no index covers, so they would scan 100,000 members.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from members.models import ActivityLog, ApiToken, Member, Profile
from members.services import create_member, update_member
from portal.cache import MEMBER, invalidate_on_commit


class MemberCreationForm(AdminUserCreationForm[Member]):
    """The add form. `MemberAdmin.save_model` creates the member with `create_member`."""

    display_name = forms.CharField(max_length=80, required=False)

    class Meta:
        model = Member
        fields = ("email",)

    def clean_email(self) -> str:
        # Lower-cased before the uniqueness check, so `Alice@…` is caught as a duplicate of
        # `alice@…` here instead of failing on the unique index when saved.
        email: str = self.cleaned_data["email"]
        return email.strip().lower()


class MemberChangeForm(UserChangeForm[Member]):
    class Meta:
        model = Member
        fields = "__all__"

    def clean_email(self) -> str:
        # As on the add form: a duplicate in another letter case is a form error, not a crash.
        email: str = self.cleaned_data["email"]
        return email.strip().lower()


class ProfileInline(admin.StackedInline[Profile, Member]):
    model = Profile
    fields = ("display_name", "bio", "time_zone", "preferences")
    # Every member has exactly one profile, created with them by `create_member`.
    can_delete = False


class ReadOnlyInline(admin.TabularInline[Any, Member]):
    """Rows shown on the member's page for reference; each is changed on its own page, if at all."""

    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ApiTokenInline(ReadOnlyInline):
    """A member's tokens, read-only. The secret's hash is never shown."""

    model = ApiToken
    fields = ("name", "masked_token", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    ordering = ("-id",)

    @admin.display(description="token")
    def masked_token(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…{obj.last_chars}"


@admin.register(Member)
class MemberAdmin(UserAdmin[Member]):
    """Django's user admin (password change page, add page) adapted to email login.

    `is_active` is derived from `status`, so status is what staff edit. `tier` mirrors the live
    subscription and is read-only."""

    form = MemberChangeForm
    add_form = MemberCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Membership", {"fields": ("status", "tier", "activity")}),
        ("Permissions", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "display_name", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("tier", "activity", "last_login", "created_at", "updated_at")
    # `subscriptions.admin` registers this again with the member's subscriptions between the two.
    inlines: ClassVar[tuple[type[InlineModelAdmin[Any, Any]], ...]] = (ProfileInline, ApiTokenInline)
    list_display = ("email", "display_name", "status", "tier", "is_staff", "created_at", "last_login")
    list_select_related = ("profile",)
    list_filter = ("status", "tier", "is_staff")
    search_fields = ("email__startswith",)
    search_help_text = "Start of the email address."
    ordering = ("-created_at", "-id")
    # The paginator counts the filtered rows already; a second count of every member is waste
    # (and the same on the other big tables here).
    show_full_result_count = False

    @admin.display(description="display name")
    def display_name(self, obj: Member) -> str:
        # Rows written around the manager (raw SQL, fixtures) may have no profile.
        try:
            return obj.profile.display_name
        except Profile.DoesNotExist:
            return ""

    @admin.display(description="activity")
    def activity(self, obj: Member) -> str:
        # A link, not an inline: a member's history can run to many thousands of rows.
        url = reverse("admin:members_activitylog_changelist")
        return format_html('<a href="{}?member__id__exact={}">View activity</a>', url, obj.pk)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Member], search_term: str
    ) -> tuple[QuerySet[Member], bool]:
        return super().get_search_results(request, queryset, search_term.lower())

    def get_inline_instances(self, request: HttpRequest, obj: Member | None = None) -> list[InlineModelAdmin[Any, Any]]:
        # The add page has none: `create_member` makes the profile.
        if obj is None:
            return []
        return super().get_inline_instances(request, obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # The profile inline is saved here, around the services: what is cached for the member
        # (dashboard, API) must follow it.
        invalidate_on_commit(MEMBER, form.instance.pk)

    def save_model(self, request: HttpRequest, obj: Member, form: forms.Form, change: bool) -> None:
        if change:
            # Many-to-many fields (groups, permissions) are saved by the admin afterwards.
            columns = {field.name for field in Member._meta.concrete_fields}
            fields = [name for name in form.changed_data if name in columns]
            if fields:
                update_member(member=obj, fields=fields, actor=cast("Member", request.user))
            return
        # A new member gets their profile in the same transaction, through the one service that
        # creates members.
        data = form.cleaned_data
        member = create_member(
            email=obj.email,
            password=data["password1"] if data["set_usable_password"] else None,
            display_name=data["display_name"],
        )
        # The admin goes on to log the addition and redirect with `obj`: make it the new row.
        obj.pk = member.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # Staff deactivate members (status) rather than delete them. Deleting would also cascade
        # through the member's whole activity history, which the confirmation page would list
        # row by row, and the activity log is not deletable from the admin.
        return False


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin[Profile]):
    list_display = ("member", "display_name", "time_zone", "created_at")
    list_select_related = ("member",)
    search_fields = ("member__email__startswith",)
    search_help_text = "Start of the member's email address."
    fields = ("member", "display_name", "bio", "time_zone", "preferences", "created_at", "updated_at")
    readonly_fields = ("member", "created_at", "updated_at")
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Profile], search_term: str
    ) -> tuple[QuerySet[Profile], bool]:
        return super().get_search_results(request, queryset, search_term.lower())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        # The change page shows the member; the changelist has `list_select_related` too.
        return super().get_queryset(request).select_related("member")

    # Profiles are created with their member and go with them: one per member, always.
    def save_model(self, request: HttpRequest, obj: Profile, form: forms.Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        invalidate_on_commit(MEMBER, obj.member_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Profile | None = None) -> bool:
        return False


class TokenExpiryFilter(admin.SimpleListFilter):
    """Filters on `expires_at`, which is indexed. There is no "revoked" choice: `revoked_at` is
    indexed only as the condition of a partial index on live tokens, so it would scan the table."""

    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("expired", "Expired"), ("week", "Expires within 7 days"), ("never", "Never expires")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "week":
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + dt.timedelta(days=7))
        if self.value() == "never":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Read-only. Tokens are created and revoked by their services (the plain token is shown once,
    a revocation is recorded in the activity log); staff actions that call them come later.
    `token_hash` is on no page: it is as good as the token for an offline guess."""

    list_display = ("masked_token", "name", "member", "live", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_select_related = ("member",)
    list_filter = (TokenExpiryFilter,)
    search_fields = ("member__email__startswith",)
    search_help_text = "Start of the member's email address."
    fields = (
        "member",
        "name",
        "masked_token",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
    )
    readonly_fields = ("masked_token",)
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="token")
    def masked_token(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…{obj.last_chars}"

    @admin.display(description="live", boolean=True)
    def live(self, obj: ApiToken) -> bool:
        return obj.is_live()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiToken], search_term: str
    ) -> tuple[QuerySet[ApiToken], bool]:
        return super().get_search_results(request, queryset, search_term.lower())

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return super().get_queryset(request).select_related("member")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False


class CappedCountPaginator(Paginator[ActivityLog]):
    """Counts at most `cap` rows, so a page costs the same at 10 million rows as at 10 thousand.

    A plain `SELECT COUNT(*)` reads the whole activity table on every page view (about 0.1 s per
    4 million rows with the table in memory, far more when it is not); counting a `LIMIT`ed
    subquery stops at the cap (3 ms). It also caps the page number, so `OFFSET` never reaches deep
    into the table. To look further back, staff filter by member, action or date."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # The admin always pages a QuerySet.
        queryset = cast("QuerySet[ActivityLog]", self.object_list)
        return queryset[: self.cap].count()


@admin.register(ActivityLog)
class ActivityLogAdmin(admin.ModelAdmin[ActivityLog]):
    """Read-only: the log records what members did, and is pruned by `prune_activity`, not by staff.

    Built for 10 million rows. Every filter and ordering is served by an index: the list is newest
    first (`created_at`), filtered by action (`action, created_at`), by date (`created_at`), or by
    member through the link on the member's page (`member, created_at, id`). There is no search
    (no indexed text column), no date hierarchy (its year and month links aggregate the whole
    table), and only `created_at` is sortable."""

    list_display = ("created_at", "member", "action", "ip")
    list_select_related = ("member",)
    list_filter = ("action", "created_at")
    raw_id_fields = ("member",)
    fields = ("member", "action", "created_at", "ip", "user_agent", "detail")
    ordering = ("-created_at", "-id")
    sortable_by = ("created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ActivityLog]:
        return super().get_queryset(request).select_related("member")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            # The count below the list stops at the cap; say so, or it reads as the total.
            "subtitle": f"Newest first. Counts stop at {CappedCountPaginator.cap:,}: filter to look further back.",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ActivityLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ActivityLog | None = None) -> bool:
        return False

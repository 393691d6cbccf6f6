"""Staff admin for members, their profiles, API tokens and activity log.

Searches on these pages match the start of an email address, case-insensitively: emails are
stored lower-cased, so the search term is lower-cased and matched with `startswith`, which the
index on `email` serves (`LIKE 'term%'`). The admin's `^email` and `=email` would compare
`UPPER(email)`, which no index covers, so they would scan 100,000 members.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IS_POPUP_VAR, InlineModelAdmin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, ReadOnlyPasswordHashWidget, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin import BigListAdmin, CappedCountPaginator, DateRangeListFilter
from members.exports import CsvExportAdmin
from members.models import ActivityLog, ApiToken, Member, Profile
from members.services import (
    PRIVILEGE_FIELDS,
    PRIVILEGE_RELATIONS,
    create_member,
    deactivate_member,
    revoke_api_token,
    revoke_member_api_tokens,
    save_profile,
    set_member_privileges,
    update_member,
)


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


class LockedPasswordHashWidget(ReadOnlyPasswordHashWidget):
    """The password summary without the button to the password page, for staff who may not
    change this member's password (`MemberAdmin.may_change_credentials`). Rendered here: the
    form renderer does not read the project's templates folder."""

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        summary = self.get_context(name, value, attrs)["summary"]
        return format_html(
            "<div><p>{}</p></div>",
            format_html_join(
                " ",
                "<strong>{}</strong>{}",
                ((e["label"], f": {e['value']}" if e.get("value") else "") for e in summary),
            ),
        )


class MemberChangeForm(UserChangeForm[Member]):
    class Meta:
        model = Member
        fields = "__all__"

    def clean_email(self) -> str:
        # As on the add form: a duplicate in another letter case is a form error, not a crash.
        email: str = self.cleaned_data["email"]
        return email.strip().lower()


_ModelT = TypeVar("_ModelT", bound=Model)

# At most this many members per bulk action that writes (revoke tokens, deactivate): an action
# on "all 100,000 matching" by a slip of the mouse would be a disaster, not a shortcut.
MAX_MEMBERS_PER_ACTION = 100


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


class LatestActivityFormSet(BaseInlineFormSet[ActivityLog, Member, Any]):
    """Only the newest rows: a member's history can run to many thousands."""

    def get_queryset(self) -> QuerySet[ActivityLog]:
        # Called once per form: slice (and so query) once.
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset()[: LatestActivityInline.rows]
        return self._latest


class LatestActivityInline(ReadOnlyInline):
    """The member's latest activity on their page, newest first, from the (member, created_at,
    id) index; the "activity" link above opens the whole history, filtered to them."""

    model = ActivityLog
    formset = LatestActivityFormSet
    rows = 20
    verbose_name_plural = f"latest activity (newest {rows})"
    fields = ("created_at", "action", "ip", "user_agent", "detail")
    readonly_fields = fields
    ordering = ("-created_at", "-id")


@admin.register(Member)
class MemberAdmin(BigListAdmin[Member], CsvExportAdmin[Member], UserAdmin[Member]):
    """Django's user admin (password change page, add page) adapted to email login.

    `is_active` is derived from `status`, so status is what staff edit. `tier` mirrors the live
    subscription and is read-only. Built for 100,000 members: filters on indexed columns
    (status, tier, staff, sign-up date), sortable by email and sign-up date only (both indexed),
    search by the start of the email, and counts that stop at the cap."""

    form = MemberChangeForm
    add_form = MemberCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Membership", {"fields": ("status", "tier", "activity")}),
        ("Permissions", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at", "deletion_scheduled_for")}),
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
    readonly_fields = ("tier", "activity", "last_login", "created_at", "updated_at", "deletion_scheduled_for")
    # `subscriptions.admin` registers this again with the member's subscriptions after the profile.
    inlines: ClassVar[tuple[type[InlineModelAdmin[Any, Any]], ...]] = (
        ProfileInline,
        ApiTokenInline,
        LatestActivityInline,
    )
    list_display = ("email", "display_name", "status", "tier", "is_staff", "created_at", "last_login")
    list_prefetch_related = ("profile",)
    list_filter = ("status", "tier", "is_staff", ("created_at", DateRangeListFilter))
    sortable_by = ("email", "created_at")
    search_fields = ("email__startswith",)
    search_help_text = "Start of the email address."
    ordering = ("-created_at", "-id")
    actions: Sequence[str] = ("revoke_all_tokens", "deactivate_members", "export_csv")
    csv_columns = (
        ("id", "pk"),
        ("email", "email"),
        ("display name", "display_name"),
        ("status", "status"),
        ("tier", "tier"),
        ("staff", "is_staff"),
        ("joined", "created_at"),
        ("last login", "last_login"),
    )

    @admin.display(description="display name")
    def display_name(self, obj: Member) -> str:
        # Rows written around the manager (raw SQL, fixtures) may have no profile.
        try:
            return obj.profile.display_name
        except Profile.DoesNotExist:
            return ""

    @admin.display(description="activity")
    def activity(self, obj: Member) -> str:
        # The page shows the latest entries (`LatestActivityInline`); the history can run to
        # many thousands of rows, so all of it is a filtered list away.
        url = reverse("admin:members_activitylog_changelist")
        return format_html('<a href="{}?member__id__exact={}">View all activity</a>', url, obj.pk)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Member], search_term: str
    ) -> tuple[QuerySet[Member], bool]:
        return super().get_search_results(request, queryset, search_term.lower())

    # --- Who may change privileges and credentials ---------------------------------------------
    #
    # `members.change_member` is what support staff need (status, profile, the Deactivate
    # action). It must not let them make themselves, or anyone, a superuser, or take over a
    # staff account: only superusers change privileges, and the email (login is by email) and
    # password of staff. Everyone else sees those fields read-only, so a POST that sets them is
    # ignored, and gets 403 on a staff member's password page. That includes their own: the
    # admin's password page asks for no current password, while the account's own page
    # (/accounts/password/change/) does, and the account's email page verifies a new address.

    @staticmethod
    def may_change_credentials(request: HttpRequest, obj: Member | None) -> bool:
        """Whether this staff member may change `obj`'s email and password: superusers always,
        others only for members who are neither staff nor superuser."""
        if request.user.is_superuser:
            return True
        return obj is not None and not (obj.is_staff or obj.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is None:  # the add page: its form has no privilege fields
            return fields
        if not request.user.is_superuser:
            fields += PRIVILEGE_FIELDS
        if not self.may_change_credentials(request, obj):
            fields.append("email")
        return fields

    def get_form(self, request: HttpRequest, obj: Member | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "password" in form.base_fields and not self.may_change_credentials(request, obj):
            password = form.base_fields["password"] = copy.deepcopy(form.base_fields["password"])
            password.widget = LockedPasswordHashWidget()
            password.help_text = "Only a superuser can change the password of a staff member."
        return form

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        member = self.get_object(request, unquote(id))
        if member is not None and not self.may_change_credentials(request, member):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    def get_inline_instances(self, request: HttpRequest, obj: Member | None = None) -> list[InlineModelAdmin[Any, Any]]:
        # The add page has none: `create_member` makes the profile.
        if obj is None:
            return []
        return super().get_inline_instances(request, obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Groups and permissions go through their service, which records the change; the
        # admin saves the other many-to-many fields and the inlines. (For staff who are not
        # superusers the fields are read-only, so not in `cleaned_data` at all.)
        privileges = {name: form.cleaned_data.pop(name) for name in PRIVILEGE_RELATIONS if name in form.cleaned_data}
        super().save_related(request, form, formsets, change)
        if privileges:
            set_member_privileges(member=form.instance, actor=cast("Member", request.user), **privileges)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The profile inline is saved through `save_profile`, as the profile's own admin page
        saves it: the edit is in the member's activity and what is cached for them follows."""
        if formset.model is not Profile:
            super().save_formset(request, form, formset, change)
            return
        # What the admin's change message and history read from a saved formset.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if inline_form.has_changed():
                profile = inline_form.save(commit=False)
                changed = save_profile(
                    profile=profile, fields=list(inline_form.changed_data), actor=cast("Member", request.user)
                )
                if changed:
                    formset.changed_objects.append((profile, changed))

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

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The bulk actions that make sense for one member, as buttons on their page: each posts
        # to the list's action with this member selected, which asks for confirmation first.
        page_actions = [
            (name, action[2])
            for name, action in self.get_actions(request).items()
            if action is not None and name not in ("export_csv", "delete_selected")
        ]
        extra_context = {"member_actions": page_actions, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_revoke_tokens_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("members.change_apitoken")

    def has_deactivate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("members.change_member")

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[Member], *, action: str, title: str, explanation: str
    ) -> HttpResponse | None:
        """The page that asks before a bulk action writes; None once the staff member confirmed.
        Refuses (with a message, on the list) more than `MAX_MEMBERS_PER_ACTION` members."""
        if queryset[: MAX_MEMBERS_PER_ACTION + 1].count() > MAX_MEMBERS_PER_ACTION:
            self.message_user(
                request, f"Select at most {MAX_MEMBERS_PER_ACTION} members for this action.", messages.ERROR
            )
            return HttpResponseRedirect(request.get_full_path())
        if "confirm" in request.POST:
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explanation": explanation,
            "members": queryset.select_related(None).prefetch_related(None).only("pk", "email"),
            "action": action,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "is_popup": IS_POPUP_VAR in request.GET,
        }
        return TemplateResponse(request, "admin/members/member/confirm_action.html", context)

    @admin.action(description="Revoke all API tokens of selected members", permissions=["revoke_tokens"])
    def revoke_all_tokens(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        page = self._confirm(
            request,
            queryset,
            action="revoke_all_tokens",
            title="Revoke all API tokens",
            explanation="Every API token of these members stops working at once. They can create new ones.",
        )
        if page is not None:
            return page
        staff = cast("Member", request.user)
        revoked = sum(revoke_member_api_tokens(member=member, actor=staff) for member in queryset)
        self.message_user(request, f"Revoked {revoked} token{'s' if revoked != 1 else ''}.", messages.SUCCESS)
        return None

    @admin.action(
        description="Deactivate selected members (ends their sessions and tokens)", permissions=["deactivate"]
    )
    def deactivate_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse | None:
        page = self._confirm(
            request,
            queryset,
            action="deactivate_members",
            title="Deactivate members",
            explanation="These members are logged out everywhere, their API tokens are revoked and they can no "
            "longer log in. A subscription they pay for is not cancelled: cancel it from the subscriptions list.",
        )
        if page is not None:
            return page
        staff = cast("Member", request.user)
        done, skipped = 0, []
        for member in queryset:
            if member.pk == staff.pk:
                skipped.append(f"{member.email}: you cannot deactivate your own account")
                continue
            deactivate_member(member=member, actor=staff)
            done += 1
        if done:
            self.message_user(request, f"Deactivated {done} member{'s' if done != 1 else ''}.", messages.SUCCESS)
        for line in skipped:
            self.message_user(request, f"Not deactivated: {line}", messages.ERROR)
        return None

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # Staff deactivate members (status) rather than delete them. Deleting would also cascade
        # through the member's whole activity history, which the confirmation page would list
        # row by row, and the activity log is not deletable from the admin.
        return False


@admin.register(Profile)
class ProfileAdmin(BigListAdmin[Profile]):
    list_display = ("member", "display_name", "time_zone", "created_at")
    list_prefetch_related = ("member",)
    search_fields = ("member__email__startswith",)
    search_help_text = "Start of the member's email address."
    fields = ("member", "display_name", "bio", "time_zone", "preferences", "created_at", "updated_at")
    readonly_fields = ("member", "created_at", "updated_at")
    # Read-only here; should it become editable, it must not be a <select> of 100,000 members.
    autocomplete_fields = ("member",)
    list_filter = (("created_at", DateRangeListFilter),)
    sortable_by = ("created_at",)
    ordering = ("-created_at", "-id")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Profile], search_term: str
    ) -> tuple[QuerySet[Profile], bool]:
        return super().get_search_results(request, queryset, search_term.lower())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        # The change page shows the member (the list loads them for its page only).
        return super().get_queryset(request).select_related("member")

    # Profiles are created with their member and go with them: one per member, always.
    def save_model(self, request: HttpRequest, obj: Profile, form: forms.Form, change: bool) -> None:
        save_profile(profile=obj, fields=list(form.changed_data), actor=cast("Member", request.user))

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
class ApiTokenAdmin(BigListAdmin[ApiToken], CsvExportAdmin[ApiToken]):
    """Read-only. Tokens are created and revoked by their services (the plain token is shown once,
    a revocation is recorded in the activity log); staff revoke them with the actions here and
    on the member list. `token_hash` is on no page and in no export: it is as good as the token
    for an offline guess."""

    list_display = ("masked_token", "name", "member", "live", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_prefetch_related = ("member",)
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
    autocomplete_fields = ("member",)
    sortable_by = ("expires_at",)
    ordering = ("-id",)
    actions = ("revoke_selected", "export_csv")
    csv_columns = (
        ("id", "pk"),
        ("member", "member__email"),
        ("name", "name"),
        ("token", "masked_token"),
        ("scopes", "scopes"),
        ("created", "created_at"),
        ("expires", "expires_at"),
        ("last used", "last_used_at"),
        ("revoked", "revoked_at"),
    )

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

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("members.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        staff = cast("Member", request.user)
        revoked = sum(revoke_api_token(token=token, actor=staff) for token in queryset.filter(revoked_at__isnull=True))
        if revoked:
            self.message_user(request, f"Revoked {revoked} token{'s' if revoked != 1 else ''}.", messages.SUCCESS)
        else:
            self.message_user(request, "The selected tokens were revoked already.", messages.WARNING)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False


@admin.register(ActivityLog)
class ActivityLogAdmin(BigListAdmin[ActivityLog], CsvExportAdmin[ActivityLog]):
    """Read-only: the log records what members did, and is pruned by `prune_activity`, not by staff.

    Built for 10 million rows. Every filter and ordering is served by an index: the list is newest
    first (`created_at`), filtered by action (`action, created_at`), by date (`created_at`), or by
    member, through the link on the member's page or a search for their whole email address
    (`member, created_at, id`). There is no date hierarchy (its year and month links aggregate
    the whole table), no facet counts, only `created_at` is sortable, and the count is the
    table's estimate or stops at the cap (`CappedCountPaginator`)."""

    list_display = ("created_at", "member", "action", "ip")
    list_prefetch_related = ("member",)
    list_filter = ("action", ("created_at", DateRangeListFilter))
    # A member's whole email: one member by the unique index, then their rows by theirs. A
    # prefix could match thousands of members, whose rows would all be sorted together.
    search_fields = ("member__email__exact",)
    search_help_text = "A member's whole email address."
    autocomplete_fields = ("member",)
    fields = ("member", "action", "created_at", "ip", "user_agent", "detail")
    ordering = ("-created_at", "-id")
    sortable_by = ("created_at",)
    actions = ("export_csv",)
    csv_columns = (
        ("id", "pk"),
        ("at", "created_at"),
        ("member", "member__email"),
        ("action", "action"),
        ("ip", "ip"),
        ("user agent", "user_agent"),
        ("detail", "detail"),
    )
    csv_max_rows = 1_000_000

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ActivityLog], search_term: str
    ) -> tuple[QuerySet[ActivityLog], bool]:
        """The member is looked up first, so the list filters on `member_id = <constant>` and
        reads their newest rows straight from their index. Filtering on the joined email
        instead, PostgreSQL reads every row of the member and sorts them."""
        email = search_term.strip().lower()
        if not email:
            return queryset, False
        member_id = Member.objects.with_email(email).values_list("pk", flat=True).first()
        if member_id is None:
            return queryset.none(), False
        return queryset.filter(member_id=member_id), False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ActivityLog]:
        return super().get_queryset(request).select_related("member")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            # The count below the list is an estimate or stops at the cap; say so, or it reads as
            # an exact total.
            "subtitle": f"Newest first. Counts are estimates or stop at {CappedCountPaginator.cap:,}, "
            "and so do the pages: filter to look further back.",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ActivityLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ActivityLog | None = None) -> bool:
        return False

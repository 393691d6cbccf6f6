"""Members, their profiles, API tokens and activity log."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from members import tokens


class Tier(models.TextChoices):
    FREE = "free", "Free"
    BASIC = "basic", "Basic"
    PRO = "pro", "Pro"


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    DEACTIVATED = "deactivated", "Deactivated"


class MemberQuerySet(models.QuerySet["Member"]):
    def active(self) -> MemberQuerySet:
        return self.filter(status=MemberStatus.ACTIVE)

    def with_email(self, email: str) -> MemberQuerySet:
        """Case-insensitive match. Emails are stored lower-cased, so this is a plain equality
        that the unique index on `email` serves."""
        return self.filter(email=email.strip().lower())

    def in_tier(self, tier: str) -> MemberQuerySet:
        return self.filter(tier=tier)


class MemberManager(BaseUserManager["Member"]):
    def get_queryset(self) -> MemberQuerySet:
        return MemberQuerySet(self.model, using=self._db)

    def active(self) -> MemberQuerySet:
        return self.get_queryset().active()

    def with_email(self, email: str) -> MemberQuerySet:
        return self.get_queryset().with_email(email)

    def in_tier(self, tier: str) -> MemberQuerySet:
        return self.get_queryset().in_tier(tier)

    def get_by_natural_key(self, username: str | None) -> Member:
        return self.with_email(username or "").get()

    def create_user(self, email: str, password: str | None = None, *, display_name: str = "", **extra: Any) -> Member:
        """A member with their profile, in one transaction, so no member is ever without one.
        `createsuperuser` and the admin come through here too."""
        if not email:
            raise ValueError("A member needs an email address.")
        with transaction.atomic(using=self._db):
            member = self.model(email=self.normalize_email(email).lower(), **extra)
            member.set_password(password)
            member.save(using=self._db)
            Profile.objects.using(self._db).create(member=member, display_name=display_name)
        return member

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> Member:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class Member(AbstractBaseUser, PermissionsMixin):
    """A person with an account. Logs in with their email address, in any letter case."""

    email = models.EmailField("email address", max_length=254, unique=True)
    tier = models.CharField(
        max_length=16,
        choices=Tier.choices,
        default=Tier.FREE,
        help_text="Mirrors the plan of the member's live subscription; free when there is none.",
    )
    status = models.CharField(max_length=16, choices=MemberStatus.choices, default=MemberStatus.ACTIVE)
    is_staff = models.BooleanField("staff status", default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    session_epoch = models.PositiveIntegerField(
        default=0,
        # Also in the database: bulk loads (seed_demo's COPY, raw SQL) name only the columns they fill.
        db_default=0,
        editable=False,
        help_text="Moved on to end every session of the member at once: each session holds a hash of it.",
    )
    deletion_scheduled_for = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the member asked to delete their account: the moment it will be deleted, unless they "
        "log in and keep it before then.",
    )

    objects: ClassVar[MemberManager] = MemberManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            # Emails are stored lower-cased, so the unique index on `email` makes addresses
            # unique whatever their letter case, even for rows written around `save()`.
            models.CheckConstraint(condition=Q(email=Lower("email")), name="member_email_lowercase"),
            models.CheckConstraint(condition=Q(tier__in=Tier.values), name="member_tier_valid"),
            models.CheckConstraint(condition=Q(status__in=MemberStatus.values), name="member_status_valid"),
        ]
        indexes = [
            # Staff dashboard: new members in the last 7/30 days, sign-ups per day.
            models.Index(fields=["created_at"], name="member_created_idx"),
            # Admin filter and business gauges: members by tier.
            models.Index(fields=["tier"], name="member_tier_idx"),
            # Admin filter and gauges: members by status (suspended, deactivated).
            models.Index(fields=["status"], name="member_status_idx"),
            # Admin filter "staff status: yes": the few staff among 100k members.
            models.Index(fields=["is_staff"], name="member_staff_idx", condition=Q(is_staff=True)),
            # purge_deleted_members: the few accounts whose deletion is due.
            models.Index(
                fields=["deletion_scheduled_for"],
                name="member_deletion_due_idx",
                condition=Q(deletion_scheduled_for__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = self.email.strip().lower()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "updated_at" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        """Only active members may log in; derived from `status` so the two never disagree."""
        return self.status == MemberStatus.ACTIVE

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        """Django's hash of the password, which every session stores and checks on each request,
        with `session_epoch` mixed in once it has moved: `deactivate_member` moves it to end
        every session at once, and they stay ended if the member is reactivated. At epoch 0 the
        hash is Django's own, so sessions from before this field existed stay valid."""
        if not self.session_epoch:
            hashed: str = super()._get_session_auth_hash(secret=secret)  # type: ignore[misc]  # not in django-stubs
            return hashed
        key_salt = "members.Member.get_session_auth_hash"
        return salted_hmac(
            key_salt, f"{self.password}:{self.session_epoch}", secret=secret, algorithm="sha256"
        ).hexdigest()


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError("%(value)s is not a known time zone.", params={"value": value})


class Profile(models.Model):
    member = models.OneToOneField(Member, on_delete=models.CASCADE, related_name="profile")
    display_name = models.CharField(max_length=80, blank=True)
    bio = models.TextField(max_length=2000, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    preferences = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The member lookup is served by the one-to-one's unique index.
        indexes = [
            # Staff reports: profiles created per period.
            models.Index(fields=["created_at"], name="profile_created_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name or str(self.member_id)


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def for_member(self, member: Member) -> ApiTokenQuerySet:
        return self.filter(member=member)

    def live(self, at: dt.datetime | None = None) -> ApiTokenQuerySet:
        """Neither revoked nor expired at `at` (now by default)."""
        at = at or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))

    def live_or_ended_since(self, since: dt.datetime) -> ApiTokenQuerySet:
        """Live tokens, and those revoked or expired after `since`: what the tokens page lists,
        so tokens that ended long ago drop off the page."""
        return self.filter(
            Q(revoked_at__isnull=True, expires_at__isnull=True)
            | Q(revoked_at__isnull=True, expires_at__gt=since)
            | Q(revoked_at__gt=since)
        )

    def expiring(self) -> ApiTokenQuerySet:
        """Tokens that have an expiry date, soonest first (the dashboard's "next to expire")."""
        return self.filter(expires_at__isnull=False).order_by("expires_at", "id")

    def newest_first(self) -> ApiTokenQuerySet:
        return self.order_by("-created_at", "-id")

    def authenticate(self, plain: str, at: dt.datetime | None = None) -> ApiToken | None:
        """The live token of an active member that `plain` is, or None.

        A malformed token or one with a wrong checksum (a typo, a truncated paste) is refused
        without touching the database; a well-formed one costs one indexed lookup."""
        if not tokens.is_well_formed(plain):
            return None
        token = self.live(at).select_related("member").filter(token_hash=tokens.hash_token(plain)).first()
        if token is None or not token.member.is_active:
            return None
        return token


class ApiToken(models.Model):
    """A member's API token. Only a hash of the secret is stored, never the secret."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, shown to recognise it.")
    last_chars = models.CharField(max_length=8, help_text="The token's last characters, shown to recognise it.")
    token_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the token, hex.")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        constraints = [
            # Authentication: `ApiToken.objects.live().get(token_hash=...)`, one row per secret.
            models.UniqueConstraint(fields=["token_hash"], name="apitoken_hash_unique"),
        ]
        indexes = [
            # Dashboard and tokens page: a member's live tokens, soonest expiry first.
            models.Index(
                fields=["member", "expires_at"],
                name="apitoken_member_live_idx",
                condition=Q(revoked_at__isnull=True),
            ),
            # Expiry sweeps and "expiring soon" notices: tokens by expiry date.
            models.Index(fields=["expires_at"], name="apitoken_expires_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…{self.last_chars})"

    def is_live(self, at: dt.datetime | None = None) -> bool:
        at = at or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class Action(models.TextChoices):
    SIGNUP = "signup", "Signed up"
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    LOGOUT = "logout", "Logged out"
    PASSWORD_CHANGED = "password_changed", "Changed password"
    PASSWORD_RESET = "password_reset", "Reset password"
    EMAIL_CHANGED = "email_changed", "Changed email"
    MFA_ENABLED = "mfa_enabled", "Turned on two-factor authentication"
    MFA_DISABLED = "mfa_disabled", "Turned off two-factor authentication"
    MFA_CODE_WRONG = "mfa_code_wrong", "Wrong two-factor code"
    PROFILE_UPDATED = "profile_updated", "Updated profile"
    TOKEN_CREATED = "token_created", "Created an API token"
    TOKEN_REVOKED = "token_revoked", "Revoked an API token"
    SUBSCRIPTION_CHANGED = "subscription_changed", "Subscription changed"
    PAYMENT_SUCCEEDED = "payment_succeeded", "Payment received"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    STATUS_CHANGED = "status_changed", "Account status changed"
    # Staff status, superuser status, groups or permissions, changed by a superuser.
    PRIVILEGES_CHANGED = "privileges_changed", "Staff privileges changed"
    # On the staff member's own log: what they exported from the admin.
    DATA_EXPORTED = "data_exported", "Exported data from the admin"
    # The member's own data and account.
    ACCOUNT_EXPORTED = "account_exported", "Downloaded their data"
    DELETION_REQUESTED = "deletion_requested", "Asked to delete their account"
    DELETION_CANCELLED = "deletion_cancelled", "Kept their account (deletion cancelled)"


class ActivityLogQuerySet(models.QuerySet["ActivityLog"]):
    def for_member(self, member: Member) -> ActivityLogQuerySet:
        return self.filter(member=member)

    def recent(self) -> ActivityLogQuerySet:
        """Newest first, with `id` as the tie-breaker so a cursor over it is exact."""
        return self.order_by("-created_at", "-id")

    def before(self, created_at: dt.datetime, pk: int) -> ActivityLogQuerySet:
        """Rows after the cursor (created_at, pk) in `recent()` order: the keyset for the next page.

        The `created_at <= cursor` term is redundant with the OR but lets the database seek in
        the (member, created_at, id) index straight to the cursor, however deep it is; the OR
        then only sorts out the rows that share the cursor's instant."""
        return self.filter(created_at__lte=created_at).filter(Q(created_at__lt=created_at) | Q(id__lt=pk))

    def after(self, created_at: dt.datetime, pk: int) -> ActivityLogQuerySet:
        """Rows newer than the cursor (created_at, pk), nearest first: the keyset for the
        previous page of `recent()`, read backwards through the same index. Reverse the result
        to show it newest first."""
        return (
            self.filter(created_at__gte=created_at)
            .filter(Q(created_at__gt=created_at) | Q(id__gt=pk))
            .order_by("created_at", "id")
        )


class ActivityLog(models.Model):
    """One thing a member did. The table grows to tens of millions of rows."""

    id = models.BigAutoField(primary_key=True)
    # The composite index below serves every lookup by member, so no index of its own.
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="activity", db_index=False)
    action = models.CharField(max_length=32, choices=Action.choices)
    created_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = ActivityLogQuerySet.as_manager()

    class Meta:
        indexes = [
            # A member's activity newest first, keyset-paginated:
            # WHERE member_id = ? AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC.
            models.Index(fields=["member", "-created_at", "-id"], name="activity_member_recent_idx"),
            # A member's activity filtered by action, newest first (activity page filter).
            models.Index(fields=["member", "action", "-created_at"], name="activity_member_action_idx"),
            # Admin filter by action across all members, newest first.
            models.Index(fields=["action", "-created_at"], name="activity_action_idx"),
            # Pruning (`prune_activity --older-than`) and activity volume per day.
            models.Index(fields=["created_at"], name="activity_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} at {self.created_at:%Y-%m-%d %H:%M}"


class TotpUse(models.Model):
    """The last TOTP time step accepted from an authenticator (members/mfa.py): a code of that
    step or an earlier one is refused, so a code works once. Kept here rather than in the cache,
    so that TOTP works, and still only once, while Redis is down."""

    authenticator = models.OneToOneField(
        "mfa.Authenticator", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_step = models.BigIntegerField()

    def __str__(self) -> str:
        return f"TOTP step {self.last_step} of authenticator {self.authenticator_id}"

"""Cached reads of a member's own data (core/cache.py), each beside its key; every service that
changes what one shows invalidates the member's MEMBER namespace (members/services.py)."""

from __future__ import annotations

from dataclasses import dataclass

from core.cache import MEDIUM, MEMBER, cached_read
from members.models import Profile


@dataclass(frozen=True)
class ProfileSummary:
    display_name: str
    bio: str
    time_zone: str
    email_updates: bool


@cached_read(tier=MEDIUM, namespace=MEMBER)
def profile_summary(member_id: int) -> ProfileSummary:
    """The member's profile: the profile half of the API's /me (the member half comes from the
    row the token loaded, so it is always fresh), and the time zone every member page shows
    times in. `update_profile` invalidates MEMBER."""
    profile = Profile.objects.only("display_name", "bio", "time_zone", "preferences").get(member_id=member_id)
    return ProfileSummary(
        display_name=profile.display_name,
        bio=profile.bio,
        time_zone=profile.time_zone,
        email_updates=bool(profile.preferences.get("email_updates", False)),
    )

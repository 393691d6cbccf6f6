"""Member, token and activity rules that hold at the database, whatever writes the rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from members.models import Action, ActivityLog, ApiToken, Member, MemberStatus
from members.services import create_member, record_activity


def test_email_is_stored_lower_case_and_found_in_any_case(alice):
    assert Member.objects.with_email("  ALICE@Example.COM ").get() == alice
    assert Member.objects.get_by_natural_key("Alice@example.com") == alice


def test_a_second_account_for_the_same_email_in_other_case_is_refused(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        create_member(email="Alice@Example.com", password=None)


def test_a_mixed_case_email_written_around_save_is_refused_by_the_database(alice):
    # bulk_create skips save(): the check constraint is what stops "ALICE@…" sneaking in
    # beside "alice@…" and making two accounts for one address.
    with pytest.raises(IntegrityError), transaction.atomic():
        Member.objects.bulk_create([Member(email="ALICE@EXAMPLE.COM")])


def test_every_member_made_by_the_service_has_a_profile(alice):
    assert alice.profile.display_name == "Alice"


def test_only_active_members_may_log_in(alice, client):
    from tests.conftest import PASSWORD

    assert client.login(email="alice@example.com", password=PASSWORD)
    client.logout()
    alice.status = MemberStatus.SUSPENDED
    alice.save(update_fields=["status"])
    assert not alice.is_active
    assert not client.login(email="alice@example.com", password=PASSWORD)
    assert list(Member.objects.active()) == []


def test_save_with_update_fields_also_bumps_updated_at(alice):
    before = alice.updated_at
    alice.status = MemberStatus.SUSPENDED
    alice.save(update_fields=["status"])
    alice.refresh_from_db()
    assert alice.updated_at > before


def test_live_tokens_exclude_revoked_and_expired(alice):
    now = timezone.now()

    def token(name: str, **fields: object) -> ApiToken:
        return ApiToken.objects.create(
            member=alice, name=name, prefix="mpt_x", last_chars="abcd", token_hash=name * 8, **fields
        )

    live = token("live", expires_at=now + dt.timedelta(days=1))
    forever = token("ever")
    token("gone", revoked_at=now)
    token("past", expires_at=now - dt.timedelta(seconds=1))
    assert set(ApiToken.objects.for_member(alice).live()) == {live, forever}
    assert live.is_live() and not live.is_live(at=now + dt.timedelta(days=2))


def test_activity_recent_is_newest_first_and_before_continues_exactly(alice):
    moment = timezone.now()
    # Three rows in the same instant: the id breaks the tie, so no row is lost between pages.
    rows = [record_activity(member=alice, action=Action.LOGIN) for _ in range(3)]
    ActivityLog.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=moment)
    older = record_activity(member=alice, action=Action.LOGOUT)
    ActivityLog.objects.filter(pk=older.pk).update(created_at=moment - dt.timedelta(minutes=1))

    first_page = list(ActivityLog.objects.for_member(alice).recent()[:2])
    assert [r.pk for r in first_page] == [rows[2].pk, rows[1].pk]
    last = first_page[-1]
    rest = list(ActivityLog.objects.for_member(alice).recent().before(moment, last.pk))
    assert [r.pk for r in rest] == [rows[0].pk, older.pk]

"""The API token format and the services that create and revoke tokens."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from members import tokens
from members.models import Action, ActivityLog, ApiToken, TokenScope
from members.services import create_api_token, revoke_api_token


def test_a_generated_token_is_well_formed_and_unique():
    made = {tokens.generate().plain for _ in range(200)}
    assert len(made) == 200
    for plain in made:
        assert plain.startswith("mpt_")
        assert len(plain) == tokens.TOKEN_LENGTH
        assert tokens.is_well_formed(plain)


def test_a_typo_breaks_the_checksum():
    plain = tokens.generate().plain
    position = 10
    swapped = "A" if plain[position] != "A" else "B"
    assert not tokens.is_well_formed(plain[:position] + swapped + plain[position + 1 :])
    assert not tokens.is_well_formed(plain[:-1])
    assert not tokens.is_well_formed("ghp_" + plain[4:])
    assert not tokens.is_well_formed(plain[:-1] + "!")


def test_only_the_hash_of_a_created_token_is_stored(alice):
    token, plain = create_api_token(member=alice, name="backup script", scopes=[TokenScope.READ], expires_at=None)
    assert token.token_hash == tokens.hash_token(plain)
    assert plain.startswith(token.prefix) and plain.endswith(token.last_chars)
    # Search every text column of the token table for the secret: it is nowhere.
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, prefix, last_chars, token_hash, scopes FROM members_apitoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert plain not in stored
    assert ActivityLog.objects.filter(member=alice, action=Action.TOKEN_CREATED).count() == 1


def test_revoking_a_token_twice_records_one_revocation(alice):
    expires = timezone.now() + dt.timedelta(days=30)
    token, _ = create_api_token(
        member=alice, name="ci", scopes=[TokenScope.WRITE, TokenScope.READ, TokenScope.READ], expires_at=expires
    )
    assert token.scopes == ["read", "write"]
    assert revoke_api_token(token=token) is True
    assert revoke_api_token(token=ApiToken.objects.get(pk=token.pk)) is False
    assert not ApiToken.objects.live().filter(pk=token.pk).exists()
    assert ActivityLog.objects.filter(member=alice, action=Action.TOKEN_REVOKED).count() == 1


def test_a_token_authenticates_its_member_in_one_query(alice, django_assert_num_queries):
    token, plain = create_api_token(member=alice, name="ci", scopes=[TokenScope.READ], expires_at=None)
    with django_assert_num_queries(1):
        found = ApiToken.objects.authenticate(plain)
    assert found == token
    assert found is not None and found.member == alice


def test_a_token_with_a_wrong_checksum_is_refused_without_a_query(alice, django_assert_num_queries):
    _, plain = create_api_token(member=alice, name="ci", scopes=[TokenScope.READ], expires_at=None)
    typo = plain[:12] + ("x" if plain[12] != "x" else "y") + plain[13:]
    with django_assert_num_queries(0):
        assert ApiToken.objects.authenticate(typo) is None
        assert ApiToken.objects.authenticate("mpt_short") is None
        assert ApiToken.objects.authenticate("") is None


def test_revoked_expired_and_suspended_members_tokens_are_refused(alice):
    from members.models import MemberStatus

    revoked, revoked_plain = create_api_token(member=alice, name="a", scopes=[TokenScope.READ], expires_at=None)
    revoke_api_token(token=revoked)
    soon = timezone.now() + dt.timedelta(days=1)
    _, expiring_plain = create_api_token(member=alice, name="b", scopes=[TokenScope.READ], expires_at=soon)
    _, live_plain = create_api_token(member=alice, name="c", scopes=[TokenScope.READ], expires_at=None)

    assert ApiToken.objects.authenticate(revoked_plain) is None
    assert ApiToken.objects.authenticate(expiring_plain) is not None
    assert ApiToken.objects.authenticate(expiring_plain, at=soon + dt.timedelta(seconds=1)) is None
    alice.status = MemberStatus.SUSPENDED
    alice.save(update_fields=["status"])
    assert ApiToken.objects.authenticate(live_plain) is None

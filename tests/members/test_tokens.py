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

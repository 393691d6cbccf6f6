"""Migrations: committed for every model change, and applying from zero on this database."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection


def test_no_model_change_is_missing_a_migration(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_every_migration_unapplies_to_zero_and_applies_again():
    call_command("migrate", "contenttypes", "zero", verbosity=0)
    tables = set(connection.introspection.table_names())
    assert not {"members_member", "members_activitylog", "subscriptions_subscription"} & tables
    call_command("migrate", verbosity=0)
    tables = set(connection.introspection.table_names())
    assert {"members_member", "members_profile", "members_apitoken", "members_activitylog"} <= tables
    assert {"subscriptions_plan", "subscriptions_subscription"} <= tables

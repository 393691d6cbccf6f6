"""`warm_cache` fills the plans and the busiest members' dashboards."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from members.models import Action, Tier
from members.services import record_activity
from tests.conftest import make_plan


def test_it_warms_the_plans_and_the_busiest_members_dashboards(client, alice, bob, carol, django_assert_num_queries):
    make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=900)
    for _ in range(3):
        record_activity(member=alice, action=Action.LOGIN)
    record_activity(member=bob, action=Action.LOGIN)

    out = StringIO()
    call_command("warm_cache", "--members", "1", "--no-progress", stdout=out)
    # The default plans: free, basic and pro.
    assert out.getvalue().strip().startswith("Warmed 3 plans and 1 member dashboards")

    with django_assert_num_queries(0):
        assert "Basic" in client.get("/").content.decode()
    client.force_login(alice)
    with django_assert_num_queries(1):  # the logged-in member; the summary is warm
        assert client.get("/dashboard/").status_code == 200
    client.force_login(bob)
    with django_assert_num_queries(6):  # not among the busiest one: cold
        assert client.get("/dashboard/").status_code == 200


def test_it_refuses_bad_numbers(db):
    with pytest.raises(CommandError):
        call_command("warm_cache", "--members", "-1")

"""The staff admin for plans and subscriptions, and the subscriptions on a member's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from members.models import Member, Tier
from members.services import create_member
from subscriptions.models import Plan, PlanInterval, Subscription, SubscriptionStatus


def _populate(rows: int) -> Member:
    """`rows` plans and `rows` members, each with a live subscription; the first member also has
    `rows - 1` canceled ones, so a query per row on any page shows up. Returns that member."""
    plans = [
        Plan.objects.create(
            code=f"plan-{i}", name=f"Plan {i}", tier=Tier.BASIC, price_cents=500 + i, stripe_price_id=f"price_{i}"
        )
        for i in range(rows)
    ]
    members = [create_member(email=f"member{i}@example.com", password=None) for i in range(rows)]
    for member, plan in zip(members, plans, strict=True):
        Subscription.objects.create(member=member, plan=plan, status=SubscriptionStatus.ACTIVE)
    for plan in plans[1:]:
        Subscription.objects.create(member=members[0], plan=plan, status=SubscriptionStatus.CANCELED)
    return members[0]


# Queries per page for a logged-in superuser, the same at 3 rows and at 10.
# Plans (a handful of rows, so the total is shown too): the staff user, the filtered count, the
# total count, the rows.
# Subscriptions: the staff user, the plan filter's choices, the count, the rows with their member
# and plan joined in.
CHANGELIST_QUERIES: list[tuple[str, type[Plan] | type[Subscription], int]] = [
    ("admin:subscriptions_plan_changelist", Plan, 4),
    ("admin:subscriptions_subscription_changelist", Subscription, 4),
]


@pytest.mark.parametrize("rows", [3, 10])
@pytest.mark.parametrize(("url_name", "model", "queries"), CHANGELIST_QUERIES)
@pytest.mark.usefixtures("warm_content_types")
def test_changelist_query_count_does_not_grow_with_rows(
    client: Client,
    carol: Member,
    django_assert_num_queries: Any,
    rows: int,
    url_name: str,
    model: type[Plan] | type[Subscription],
    queries: int,
) -> None:
    _populate(rows)
    client.force_login(carol)

    with django_assert_num_queries(queries):
        response = client.get(reverse(url_name))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == model.objects.count() >= rows


# Plan: the staff user, the plan. Subscription: the staff user, the subscription with its member
# and plan joined in (both are read-only there, so no choices to load).
@pytest.mark.parametrize("rows", [3, 10])
@pytest.mark.parametrize(("page", "queries"), [("plan", 2), ("subscription", 2)])
@pytest.mark.usefixtures("warm_content_types")
def test_change_page_query_count_does_not_grow_with_rows(
    client: Client, carol: Member, django_assert_num_queries: Any, rows: int, page: str, queries: int
) -> None:
    first = _populate(rows)
    subscription = Subscription.objects.filter(member=first).latest("id")
    urls = {
        "plan": reverse("admin:subscriptions_plan_change", args=[subscription.plan_id]),
        "subscription": reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
    }
    client.force_login(carol)

    with django_assert_num_queries(queries):
        response = client.get(urls[page])

    assert response.status_code == 200


def test_member_without_staff_status_cannot_open_subscriptions(client: Client, alice: Member) -> None:
    client.force_login(alice)

    response = client.get(reverse("admin:subscriptions_subscription_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_add_a_plan(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_plan_add"),
        {
            "code": "pro-yearly",
            "name": "Pro, yearly",
            "tier": Tier.PRO,
            "price_cents": "12000",
            "currency": "eur",
            "interval": PlanInterval.YEAR,
            "stripe_price_id": "price_123",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    plan = Plan.objects.get(code="pro-yearly")
    assert (plan.tier, plan.price, plan.interval, plan.is_active) == (Tier.PRO, "120.00 EUR", "year", True)


def test_a_plan_with_a_malformed_currency_is_refused_with_a_message(client: Client, carol: Member) -> None:
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_plan_add"),
        {
            "code": "odd",
            "name": "Odd",
            "tier": Tier.BASIC,
            "price_cents": "100",
            "currency": "US$",
            "interval": "month",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Plan.objects.filter(code="odd").exists()


def test_subscriptions_filter_by_status(client: Client, carol: Member) -> None:
    first = _populate(3)
    client.force_login(carol)

    response = client.get(
        reverse("admin:subscriptions_subscription_changelist"), {"status__exact": SubscriptionStatus.CANCELED}
    )

    results = list(response.context["cl"].result_list)
    assert len(results) == 2
    assert all(s.member == first and s.status == SubscriptionStatus.CANCELED for s in results)


def test_subscription_search_finds_the_members_subscriptions_by_email_prefix(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    plan = Plan.objects.create(code="basic", name="Basic", tier=Tier.BASIC, price_cents=500)
    alices = Subscription.objects.create(member=alice, plan=plan, status=SubscriptionStatus.ACTIVE)
    Subscription.objects.create(member=bob, plan=plan, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.get(reverse("admin:subscriptions_subscription_changelist"), {"q": "Alice@"})

    assert list(response.context["cl"].result_list) == [alices]


def test_member_autocomplete_on_the_subscription_form_matches_email_prefixes(
    client: Client, carol: Member, alice: Member, bob: Member
) -> None:
    client.force_login(carol)

    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "subscriptions", "model_name": "subscription", "field_name": "member", "term": "AL"},
    )

    assert response.status_code == 200
    assert [result["text"] for result in response.json()["results"]] == ["alice@example.com"]


def test_member_page_lists_their_subscriptions_with_links(client: Client, carol: Member, alice: Member) -> None:
    plan = Plan.objects.create(code="basic", name="Basic monthly", tier=Tier.BASIC, price_cents=500)
    subscription = Subscription.objects.create(member=alice, plan=plan, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_change", args=[alice.pk]))

    html = response.content.decode()
    assert "Basic monthly" in html
    assert reverse("admin:subscriptions_subscription_change", args=[subscription.pk]) in html


def test_adding_a_live_subscription_moves_the_members_tier_to_the_plans(
    client: Client, carol: Member, alice: Member
) -> None:
    plan = Plan.objects.create(code="pro", name="Pro", tier=Tier.PRO, price_cents=1200)
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_subscription_add"),
        {"member": alice.pk, "plan": plan.pk, "status": SubscriptionStatus.COMPED},
    )

    subscription = Subscription.objects.get(member=alice)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:subscriptions_subscription_changelist")
    assert (subscription.plan, subscription.status) == (plan, SubscriptionStatus.COMPED)
    alice.refresh_from_db()
    assert alice.tier == Tier.PRO


def test_a_second_live_subscription_is_refused_with_a_message(client: Client, carol: Member, alice: Member) -> None:
    plan = Plan.objects.create(code="pro", name="Pro", tier=Tier.PRO, price_cents=1200)
    Subscription.objects.create(member=alice, plan=plan, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_subscription_add"),
        {"member": alice.pk, "plan": plan.pk, "status": SubscriptionStatus.COMPED},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Subscription.objects.filter(member=alice).count() == 1


def test_member_plan_and_status_cannot_be_changed_on_the_subscription_page(
    client: Client, carol: Member, alice: Member
) -> None:
    basic = Plan.objects.create(code="basic", name="Basic", tier=Tier.BASIC, price_cents=500)
    pro = Plan.objects.create(code="pro", name="Pro", tier=Tier.PRO, price_cents=1200)
    subscription = Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
        {
            "plan": pro.pk,
            "status": SubscriptionStatus.CANCELED,
            "stripe_subscription_id": "sub_123",
            "stripe_customer_id": "cus_123",
        },
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.plan, subscription.status) == (basic, SubscriptionStatus.ACTIVE)
    assert subscription.stripe_subscription_id == "sub_123"

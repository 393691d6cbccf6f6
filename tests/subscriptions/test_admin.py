"""The staff admin for plans and subscriptions, and the subscriptions on a member's page."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Action, ActivityLog, Member, Tier
from members.services import create_member
from subscriptions.models import Plan, PlanInterval, ReconciliationRun, StripeEvent, Subscription, SubscriptionStatus
from subscriptions.services import comp_membership, sync_stripe_subscription
from subscriptions.stripe_api import SubscriptionState
from tests.conftest import make_plan
from tests.subscriptions import fake_stripe
from tests.subscriptions.conftest import deliver
from tests.subscriptions.fake_stripe import FakeStripe


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
    plan = make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=500)
    alices = Subscription.objects.create(member=alice, plan=plan, status=SubscriptionStatus.ACTIVE)
    Subscription.objects.create(member=bob, plan=plan, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.get(reverse("admin:subscriptions_subscription_changelist"), {"q": "Alice@"})

    assert list(response.context["cl"].result_list) == [alices]


def test_member_page_lists_their_subscriptions_with_links(client: Client, carol: Member, alice: Member) -> None:
    plan = make_plan(code="basic", name="Basic monthly", tier=Tier.BASIC, price_cents=500)
    subscription = Subscription.objects.create(member=alice, plan=plan, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    response = client.get(reverse("admin:members_member_change", args=[alice.pk]))

    html = response.content.decode()
    assert "Basic monthly" in html
    assert reverse("admin:subscriptions_subscription_change", args=[subscription.pk]) in html


def test_the_subscription_page_is_read_only(client: Client, carol: Member, alice: Member) -> None:
    basic = make_plan(code="basic", name="Basic", tier=Tier.BASIC, price_cents=500)
    pro = make_plan(code="pro", name="Pro", tier=Tier.PRO, price_cents=1200)
    subscription = Subscription.objects.create(member=alice, plan=basic, status=SubscriptionStatus.ACTIVE)
    client.force_login(carol)

    page = client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    posted = client.post(
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
        {"plan": pro.pk, "status": SubscriptionStatus.CANCELED, "stripe_subscription_id": "sub_123"},
    )

    assert page.status_code == 200
    assert posted.status_code == 403
    subscription.refresh_from_db()
    assert (subscription.plan, subscription.status, subscription.stripe_subscription_id) == (
        basic,
        SubscriptionStatus.ACTIVE,
        "",
    )
    assert client.get(reverse("admin:subscriptions_subscription_add")).status_code == 403


# --- Stripe events, reconciliation runs and the actions ----------------------------------------


def _events(rows: int) -> None:
    now = timezone.now()
    for i in range(rows):
        StripeEvent.objects.create(
            stripe_id=f"evt_{i}",
            type="invoice.paid",
            stripe_created_at=now,
            payload={"id": f"evt_{i}", "type": "invoice.paid", "data": {"object": {}}},
            processed_at=None if i % 2 else now,
            error="Invoice in_1 bills subscription sub_1, which is not known yet." if i % 2 else "",
        )
        ReconciliationRun.objects.create(finished_at=now, checked=10, drifted=i % 3, changes=[f"sub_{i}: drift"])


# Events: the staff user, the type filter's choices, the count, the rows. Runs (a few a day, so the
# total is shown too): the staff user, the filtered count, the total count, the rows.
@pytest.mark.parametrize("rows", [3, 10])
@pytest.mark.parametrize(
    ("url_name", "queries"),
    [("admin:subscriptions_stripeevent_changelist", 4), ("admin:subscriptions_reconciliationrun_changelist", 4)],
)
@pytest.mark.usefixtures("warm_content_types")
def test_event_and_run_lists_query_count_does_not_grow_with_rows(
    client: Client, carol: Member, django_assert_num_queries: Any, rows: int, url_name: str, queries: int
) -> None:
    _events(rows)
    client.force_login(carol)

    with django_assert_num_queries(queries):
        response = client.get(reverse(url_name))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == rows


def test_failed_events_are_one_filter_away(client: Client, carol: Member) -> None:
    _events(4)
    client.force_login(carol)

    response = client.get(reverse("admin:subscriptions_stripeevent_changelist"), {"processing": "failed"})

    assert [event.stripe_id for event in response.context["cl"].result_list] == ["evt_3", "evt_1"]


def test_the_event_log_is_read_only(client: Client, carol: Member) -> None:
    _events(1)
    client.force_login(carol)
    event = StripeEvent.objects.get()

    assert client.get(reverse("admin:subscriptions_stripeevent_add")).status_code == 403
    assert client.post(reverse("admin:subscriptions_stripeevent_change", args=[event.pk]), {}).status_code == 403
    assert client.get(reverse("admin:subscriptions_stripeevent_delete", args=[event.pk])).status_code == 403


def test_staff_reprocess_a_failed_event_once_its_cause_is_fixed(
    client: Client, carol: Member, alice: Member, plans: dict[str, Plan], webhook_secrets: Any
) -> None:
    event = fake_stripe.event(
        "customer.subscription.created", fake_stripe.subscription(price_id="price_new", member_id=alice.pk)
    )
    deliver(client, event)
    make_plan(code="pro", stripe_price_id="price_new")
    row = StripeEvent.objects.get()
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_stripeevent_changelist"),
        {"action": "reprocess_selected", "_selected_action": [row.pk]},
        follow=True,
    )

    assert "Processed 1 event." in response.content.decode()
    row.refresh_from_db()
    assert (row.error, row.processed_at is not None) == ("", True)
    alice.refresh_from_db()
    assert alice.tier == Tier.PRO


def test_staff_cancel_a_comp_and_a_paid_subscription(
    client: Client, carol: Member, alice: Member, bob: Member, plans: dict[str, Plan], stripe_server: FakeStripe
) -> None:
    comp = comp_membership(member=alice, plan=plans["pro"], until=timezone.now() + dt.timedelta(days=9), actor=carol)
    sub = stripe_server.add(fake_stripe.subscription(member_id=bob.pk))
    paid = sync_stripe_subscription(state=SubscriptionState.from_stripe(sub), state_at=timezone.now(), source="test")
    assert paid is not None
    client.force_login(carol)

    response = client.post(
        reverse("admin:subscriptions_subscription_changelist"),
        {"action": "cancel_selected", "_selected_action": [comp.pk, paid.pk]},
        follow=True,
    )

    assert "Cancelled 2 subscriptions." in response.content.decode()
    comp.refresh_from_db()
    paid.refresh_from_db()
    assert comp.status == SubscriptionStatus.CANCELED  # a comp ends now
    assert (paid.status, paid.cancel_at_period_end) == (SubscriptionStatus.ACTIVE, True)  # paid: at period end
    assert stripe_server.calls[-1].form == {"cancel_at_period_end": "true"}
    entry = ActivityLog.objects.filter(member=bob, action=Action.SUBSCRIPTION_CHANGED).latest("id")
    assert (entry.detail["actor"], entry.detail["source"]) == (carol.pk, "staff")
    alice.refresh_from_db()
    assert alice.tier == Tier.FREE


def test_staff_without_the_permission_see_no_actions(client: Client, alice: Member) -> None:
    viewer = Member.objects.create_user(email="viewer@example.com", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_subscription"))
    client.force_login(viewer)

    response = client.get(reverse("admin:subscriptions_subscription_changelist"))

    assert response.status_code == 200
    assert "cancel_selected" not in response.content.decode()

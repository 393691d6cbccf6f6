"""Concurrent writers on one member (`concurrent_writers`): for a fixed time, eight threads change
the same member at once, each through a path a member, a script or Stripe would use:

- two scripts PATCH `/api/v1/me` with a new display name each time, a third with a new bio
  (a partial update: it must never write back a stale value of a field it did not send);
- the member saves the profile form at `/profile/` (every field, a new display name and bio);
- the member creates API tokens at `/tokens/`, from two browser tabs;
- Stripe delivers signed webhooks for the member's subscription, every event twice at once
  (two threads sending the same events in the same order): `invoice.paid`, and every fourth a
  `customer.subscription.updated` flipping `cancel_at_period_end`.

Then the database must hold exactly what was acknowledged: one activity entry per acknowledged
write naming only the fields that write sent, the final profile equal to the last write of each
field, each created token once, each webhook event recorded and applied once, the subscription in
the state of the newest event, and the API serving the final profile (no stale cache).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.drills.lab import WEBHOOK_SECRET, Lab
from bench.drills.load import Client, Clock, Recorder, Sample, expect, figures
from bench.drills.outage import Expectation, Result, describe
from tests.subscriptions import fake_stripe
from tools.servers import HOST

SUBSCRIPTION = "sub_drill_writer"
CUSTOMER = "cus_drill_writer"
PRICE = "price_drill_basic"


@dataclass
class Write:
    value: str  # the value written, the token's name or the event's id
    sample: Sample
    outcome: str = ""  # webhooks: "processed" or "duplicate", as the portal answered


@dataclass
class Writer:
    name: str  # also its user agent, as the activity log records it
    send: Callable[[Client, int], Write]
    client: Client
    writes: list[Write] = field(default_factory=list)

    @property
    def acknowledged(self) -> list[Write]:
        return [write for write in self.writes if write.sample.ok]

    @property
    def unanswered(self) -> list[Write]:
        return [write for write in self.writes if not write.sample.ok]


def _events(member_id: int, count: int) -> list[dict[str, Any]]:
    base = int(time.time())
    events = []
    for index in range(count):
        if index % 4 == 3:
            sub = fake_stripe.subscription(
                sub_id=SUBSCRIPTION,
                customer=CUSTOMER,
                price_id=PRICE,
                member_id=member_id,
                cancel_at_period_end=(index // 4) % 2 == 0,
            )
            events.append(fake_stripe.event("customer.subscription.updated", sub, created=base + index))
        else:
            paid = fake_stripe.invoice(sub_id=SUBSCRIPTION, customer=CUSTOMER)
            events.append(fake_stripe.event("invoice.paid", paid, created=base + index))
    return events


def concurrent_writers(lab: Lab, *, quick: bool) -> Result:
    accounts = lab.seeded
    writer = accounts.writer
    seconds = 8.0 if quick else 30.0
    cap = 1500 if quick else 6000  # requests per thread, at most
    with lab.portal("concurrent_writers") as (portal, database):
        url = lab.postgres.url(database)
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT id FROM members_member WHERE email = %s", (writer.email,)).fetchone()
        if row is None:
            raise RuntimeError(f"{writer.email} was not seeded")
        member_id = int(row[0])
        clock = Clock()
        recorder = Recorder(clock, max_requests=10 * cap)

        def client() -> Client:
            return Client(HOST, portal.port)

        # The subscription the invoices bill, created as Stripe would create it.
        created = fake_stripe.event(
            "customer.subscription.created",
            fake_stripe.subscription(sub_id=SUBSCRIPTION, customer=CUSTOMER, price_id=PRICE, member_id=member_id),
            created=int(time.time()) - 60,
        )
        first, _ = _deliver(recorder, client(), json.dumps(created))
        if not first.sample.ok:
            raise RuntimeError(f"the subscription could not be created: {first.sample}")

        events = _events(member_id, 4000)
        payloads = [json.dumps(event) for event in events]

        def patch(field_name: str, prefix: str, agent: str) -> Callable[[Client, int], Write]:
            headers = {
                "Authorization": f"Bearer {writer.token}",
                "Content-Type": "application/json",
                "User-Agent": agent,
            }

            def send(visitor: Client, index: int) -> Write:
                value = f"{prefix}-{index}"
                body = json.dumps({field_name: value}).encode()
                sample, _ = recorder.call(
                    "api_patch_me", visitor, "PATCH", "/api/v1/me", expect(200), body=body, headers=headers
                )
                return Write(value, sample)

            return send

        def form(visitor: Client, index: int) -> Write:
            value = f"f-{index}"
            data = [("display_name", value), ("bio", f"fb-{index}"), ("time_zone", "UTC")]
            if index % 2:
                data.append(("email_updates", "on"))
            sample, _ = recorder.call(
                "profile_post",
                visitor,
                "POST",
                "/profile/",
                expect(302, location="/profile/"),
                form=data,
                headers={"User-Agent": "drill-form-profile"},
            )
            return Write(value, sample)

        def token(prefix: str) -> Callable[[Client, int], Write]:
            def send(visitor: Client, index: int) -> Write:
                name = f"{prefix}-{index}"
                data = [("name", name), ("scopes", "read"), ("expiry", "30")]
                sample, answer = recorder.call(
                    "token_post",
                    visitor,
                    "POST",
                    "/tokens/",
                    expect(200),
                    form=data,
                    headers={"User-Agent": f"drill-form-{prefix}"},
                )
                if sample.ok and answer is not None and b"mpt_" not in answer.body:
                    sample = Sample(sample.kind, sample.sent, sample.latency, sample.status, False, "no token shown")
                return Write(name, sample)

            return send

        def webhook(visitor: Client, index: int) -> Write:
            if index >= len(payloads):
                raise IndexError
            write, _ = _deliver(recorder, visitor, payloads[index])
            return write

        writers = [
            Writer("drill-api-name-1", patch("display_name", "n1", "drill-api-name-1"), client()),
            Writer("drill-api-name-2", patch("display_name", "n2", "drill-api-name-2"), client()),
            Writer("drill-api-bio", patch("bio", "b", "drill-api-bio"), client()),
            Writer("drill-form-profile", form, client()),
            Writer("drill-form-t1", token("t1"), client()),
            Writer("drill-form-t2", token("t2"), client()),
            Writer("webhook-a", webhook, client()),
            Writer("webhook-b", webhook, client()),
        ]
        for entry in writers[3:6]:
            answer = entry.client.log_in(writer.email, writer.password)
            if answer.status != 302:
                raise RuntimeError(f"could not log the writer in: {answer.status}")
        lab.say(f"{len(writers)} writers on member {member_id} for {seconds:g} s")
        clock.started = time.monotonic()
        start = threading.Barrier(len(writers))

        def run(entry: Writer) -> None:
            start.wait()
            index = 0
            while clock.now() < seconds and index < cap:
                try:
                    entry.writes.append(entry.send(entry.client, index))
                except IndexError:
                    return
                index += 1

        threads = [threading.Thread(target=run, args=(entry,), name=entry.name, daemon=True) for entry in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)

        # What the API serves now, through the cache.
        reader = client()
        _, me = recorder.call(
            "api_me", reader, "GET", "/api/v1/me", expect(200), headers={"Authorization": f"Bearer {writer.token}"}
        )
        served = me.json() if me is not None and me.status == 200 else {}
        with psycopg.connect(url) as connection:
            state = _database_state(connection, member_id)
        log = portal.log_text()

    return _verdict(writers, recorder, state, served, log, quick=quick, started=clock.wall_started, seconds=seconds)


def _deliver(recorder: Recorder, visitor: Client, payload: str) -> tuple[Write, str]:
    event_id = json.loads(payload)["id"]
    headers = {
        "Stripe-Signature": fake_stripe.signed(payload, WEBHOOK_SECRET),
        "Content-Type": "application/json",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    sample, answer = recorder.call(
        "webhook", visitor, "POST", "/webhooks/stripe/", expect(200), body=payload.encode(), headers=headers
    )
    outcome = ""
    if answer is not None and answer.status == 200:
        outcome = str(answer.json().get("status", ""))
    return Write(event_id, sample, outcome), outcome


@dataclass
class State:
    profile: dict[str, Any]
    # (id, user agent, fields) of every profile_updated entry, in id order
    profile_rows: list[tuple[int, str, list[str]]]
    token_names: list[str]
    token_rows: dict[str, int]  # user agent: token_created entries
    events: dict[str, tuple[bool, int]]  # stripe id: (processed, deliveries)
    payments: dict[str, int]  # invoice id: payment_succeeded entries
    cancel_at_period_end: bool | None


def _database_state(connection: psycopg.Connection[tuple[Any, ...]], member_id: int) -> State:
    profile_row = connection.execute(
        "SELECT display_name, bio FROM members_profile WHERE member_id = %s", (member_id,)
    ).fetchone()
    if profile_row is None:
        raise RuntimeError("the writer has no profile")
    rows = connection.execute(
        "SELECT id, user_agent, detail FROM members_activitylog"
        " WHERE member_id = %s AND action = 'profile_updated' ORDER BY id",
        (member_id,),
    ).fetchall()
    tokens = connection.execute(
        "SELECT name FROM members_apitoken WHERE member_id = %s AND name <> 'drill'", (member_id,)
    ).fetchall()
    token_rows = connection.execute(
        "SELECT user_agent, count(*) FROM members_activitylog"
        " WHERE member_id = %s AND action = 'token_created' GROUP BY user_agent",
        (member_id,),
    ).fetchall()
    events = connection.execute("SELECT stripe_id, processed_at IS NOT NULL, deliveries FROM subscriptions_stripeevent")
    payments = connection.execute(
        "SELECT detail->>'invoice', count(*) FROM members_activitylog"
        " WHERE member_id = %s AND action = 'payment_succeeded' GROUP BY 1",
        (member_id,),
    ).fetchall()
    subscription = connection.execute(
        "SELECT cancel_at_period_end FROM subscriptions_subscription WHERE stripe_subscription_id = %s",
        (SUBSCRIPTION,),
    ).fetchone()
    return State(
        profile={"display_name": profile_row[0], "bio": profile_row[1]},
        profile_rows=[(int(row[0]), str(row[1]), list((row[2] or {}).get("fields", []))) for row in rows],
        token_names=[str(row[0]) for row in tokens],
        token_rows={str(row[0]): int(row[1]) for row in token_rows},
        events={str(row[0]): (bool(row[1]), int(row[2])) for row in events.fetchall()},
        payments={str(row[0]): int(row[1]) for row in payments},
        cancel_at_period_end=bool(subscription[0]) if subscription else None,
    )


def _expected_last(writers: list[Writer], state: State, field_name: str) -> tuple[str | None, str]:
    """The value the last committed write of `field_name` wrote. Each writer's writes are
    sequential, so its k-th activity entry is its k-th write; the entries' ids follow the
    commit order, as each is written under the profile's row lock."""
    by_agent = {entry.name: entry for entry in writers}
    counts: dict[str, int] = {}
    last: tuple[str, int] | None = None
    for _, agent, fields in state.profile_rows:
        counts[agent] = counts.get(agent, 0) + 1
        if field_name in fields:
            last = (agent, counts[agent])
    if last is None:
        return None, "no entry"
    agent, ordinal = last
    entry = by_agent.get(agent)
    if entry is None:
        return None, f"last written by {agent!r}, not a drill writer"
    if entry.unanswered:
        return None, f"{agent} has unanswered writes: which one committed last is unknown"
    value = entry.writes[ordinal - 1].value
    if entry.name == "drill-form-profile" and field_name == "bio":
        value = "fb-" + value.split("-")[1]
    return value, f"{agent}'s write #{ordinal}"


def _verdict(
    writers: list[Writer],
    recorder: Recorder,
    state: State,
    served: dict[str, Any],
    log: str,
    *,
    quick: bool,
    started: float,
    seconds: float,
) -> Result:
    samples = recorder.samples
    failed = [sample for sample in samples if not sample.ok]
    server_errors = [sample for sample in samples if sample.server_error or sample.status is None]

    # Profile: one entry per acknowledged write, naming exactly the fields it sent.
    rows_by_agent: dict[str, list[list[str]]] = {}
    for _, agent, fields in state.profile_rows:
        rows_by_agent.setdefault(agent, []).append(fields)
    profile_writers = writers[:4]
    profile_notes = []
    profile_ok = True
    for entry in profile_writers:
        rows = rows_by_agent.get(entry.name, [])
        acked, unanswered = len(entry.acknowledged), len(entry.unanswered)
        count_ok = acked <= len(rows) <= acked + unanswered
        sent_field = {"drill-api-bio": "bio"}.get(entry.name, "display_name")
        clobbers = 0 if entry.name == "drill-form-profile" else sum(fields != [sent_field] for fields in rows)
        profile_ok &= count_ok and clobbers == 0
        profile_notes.append(
            f"{entry.name}: {acked} acknowledged, {len(rows)} entries"
            + (f", {clobbers} touching other fields" if clobbers else "")
        )
    final_notes = []
    for field_name in ("display_name", "bio"):
        expected, why = _expected_last(writers, state, field_name)
        actual = state.profile[field_name]
        holds = expected is not None and expected == actual
        profile_ok &= holds
        final_notes.append(f"{field_name} {actual!r} (expected {expected!r}: {why})")
    cache_ok = served.get("display_name") == state.profile["display_name"] and served.get("bio") == state.profile["bio"]

    # Tokens: each acknowledged creation exists once, with one activity entry.
    token_writers = writers[4:6]
    acked_names = [write.value for entry in token_writers for write in entry.acknowledged]
    unanswered_names = {write.value for entry in token_writers for write in entry.unanswered}
    names = state.token_names
    duplicates = len(names) - len(set(names))
    missing = set(acked_names) - set(names)
    strays = set(names) - set(acked_names) - unanswered_names
    token_entries = sum(state.token_rows.get(entry.name, 0) for entry in token_writers)
    tokens_ok = not duplicates and not missing and not strays and token_entries == len(names)

    # Webhooks: every event delivered is recorded once, applied once, counted per delivery.
    hooks = writers[6:]
    deliveries: dict[str, int] = {}
    processed: dict[str, int] = {}
    for entry in hooks:
        for write in entry.acknowledged:
            deliveries[write.value] = deliveries.get(write.value, 0) + 1
            processed[write.value] = processed.get(write.value, 0) + (write.outcome == "processed")
    sent_events = {write.value for entry in hooks for write in entry.writes}
    not_recorded = [event for event in deliveries if event not in state.events]
    not_applied = [event for event in deliveries if not state.events.get(event, (False, 0))[0]]
    applied_twice = [event for event, count in processed.items() if count != 1]
    miscounted = [event for event, count in deliveries.items() if state.events.get(event, (False, 0))[1] < count]
    payment_twice = [invoice for invoice, count in state.payments.items() if count != 1]
    invoices_paid = len(state.payments)
    events_ok = not (not_recorded or not_applied or applied_twice or miscounted or payment_twice)

    expected_cancel = _expected_cancel(hooks, state)
    subscription_ok = expected_cancel is not None and state.cancel_at_period_end == expected_cancel

    by_kind = {kind: figures(s for s in samples if s.kind == kind) for kind in sorted({s.kind for s in samples})}
    expectations = [
        Expectation(
            "no 5xx, every write answered",
            not server_errors,
            f"{len(samples)} requests, {sum(s.server_error for s in samples)} 5xx, "
            f"{sum(s.status is None for s in samples)} without answer; failures: {describe(failed)}",
        ),
        Expectation(
            "no lost update: profile",
            profile_ok,
            "; ".join(profile_notes) + "; final " + "; ".join(final_notes),
        ),
        Expectation(
            "no stale read after the writes (API through the cache)",
            cache_ok,
            f"GET /api/v1/me: display_name {served.get('display_name')!r}, bio {served.get('bio')!r}",
        ),
        Expectation(
            "no lost update: tokens",
            tokens_ok,
            f"{len(acked_names)} creations acknowledged, {len(names)} tokens stored ({duplicates} duplicate names, "
            f"{len(missing)} missing, {len(strays)} unexpected), {token_entries} token_created entries",
        ),
        Expectation(
            "no lost update: webhooks (each event once)",
            events_ok,
            f"{len(sent_events)} distinct events, {sum(deliveries.values())} deliveries acknowledged; "
            f"{len(not_recorded)} not recorded, {len(not_applied)} not applied, {len(applied_twice)} applied "
            f"other than once, {len(miscounted)} with deliveries undercounted; {invoices_paid} invoices paid, "
            f"{len(payment_twice)} recorded other than once",
        ),
        Expectation(
            "subscription in the state of the newest event",
            subscription_ok,
            f"cancel_at_period_end {state.cancel_at_period_end} (newest acknowledged update says {expected_cancel})",
        ),
    ]
    return Result(
        drill="concurrent_writers",
        title="Concurrent writers on one member",
        quick=quick,
        started_at=dt.datetime.fromtimestamp(started, tz=dt.UTC).isoformat(timespec="seconds"),
        events=[(0.0, f"{len(writers)} writer threads for {seconds:g} s")],
        phases={"writes": by_kind},
        headline={
            "requests": len(samples),
            "5xx": sum(s.server_error for s in samples),
            "no_answer": sum(s.status is None for s in samples),
            "max_latency_ms": round(max((s.latency for s in samples), default=0) * 1000),
            "writes": {
                entry.name: {"acknowledged": len(entry.acknowledged), "unanswered": len(entry.unanswered)}
                for entry in writers
            },
        },
        expectations=expectations,
        server={
            "worker_timeouts": log.count("WORKER TIMEOUT"),
            "tracebacks": log.count("Traceback (most recent call last)"),
            "deadlocks": log.count("deadlock detected"),
        },
        extra={
            "profile_entries": len(state.profile_rows),
            "tokens": len(names),
            "events": len(deliveries),
            "payments": invoices_paid,
        },
    )


def _expected_cancel(hooks: list[Writer], state: State) -> bool | None:
    """cancel_at_period_end of the newest subscription update that was acknowledged."""
    acknowledged = {write.value for entry in hooks for write in entry.acknowledged}
    newest: tuple[int, bool] | None = None
    for entry in hooks:
        for index, write in enumerate(entry.writes):
            if index % 4 == 3 and write.value in acknowledged:
                cancel = (index // 4) % 2 == 0
                if newest is None or index > newest[0]:
                    newest = (index, cancel)
    return None if newest is None else newest[1]

"""Stripe's API, played on loopback, for the calls the portal makes.

The portal's real `stripe` client talks HTTP to this server (through `STRIPE_API_BASE`), so the
stub sits at the HTTP layer only: request encoding, authentication headers, error bodies and
list pagination all go through the library as they would against Stripe. Payloads follow
Stripe's API version 2026-10-28 (periods on subscription items, `invoice.parent`)."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import stripe

API_VERSION = "2026-10-28.endive"
DAY = 86_400


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(8)}"


def price(price_id: str, amount: int = 900) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "currency": "usd",
        "product": f"prod_{price_id}",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
        "unit_amount": amount,
    }


def subscription(
    *,
    sub_id: str | None = None,
    customer: str = "cus_test_alice",
    price_id: str = "price_basic",
    status: str = "active",
    member_id: int | None = None,
    start: int | None = None,
    cancel_at_period_end: bool = False,
    canceled_at: int | None = None,
) -> dict[str, Any]:
    """A subscription object as Stripe returns it, one item, a month long from `start`."""
    start = start if start is not None else int(time.time()) - DAY
    sub_id = sub_id or _id("sub")
    return {
        "id": sub_id,
        "object": "subscription",
        "cancel_at": start + 30 * DAY if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "collection_method": "charge_automatically",
        "created": start,
        "currency": "usd",
        "customer": customer,
        "ended_at": canceled_at if status == "canceled" else None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id[4:]}",
                    "object": "subscription_item",
                    "current_period_start": start,
                    "current_period_end": start + 30 * DAY,
                    "price": price(price_id),
                    "quantity": 1,
                    "subscription": sub_id,
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": _id("in"),
        "livemode": False,
        "metadata": {"member_id": str(member_id)} if member_id is not None else {},
        "start_date": start,
        "status": status,
    }


def invoice(*, sub_id: str, customer: str = "cus_test_alice", paid: bool = True, amount: int = 900) -> dict[str, Any]:
    return {
        "id": _id("in"),
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "attempt_count": 1,
        "billing_reason": "subscription_cycle",
        "currency": "usd",
        "customer": customer,
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"metadata": {}, "subscription": sub_id},
        },
        "status": "paid" if paid else "open",
    }


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": _id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send, made by the `stripe` library itself."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


@dataclass
class Call:
    method: str
    path: str
    form: dict[str, str]
    authorization: str


@dataclass
class FakeStripe:
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # While set, every call answers this HTTP status with Stripe's error body.
    failing: int | None = None
    page_size_limit: int = 100
    url: str = ""
    # Called with each call as it arrives, before it is answered (in the server's thread): a test
    # looks at the database from there, or sleeps to play a slow Stripe.
    on_call: Callable[[Call], None] | None = None

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.subscriptions[obj["id"]] = obj
        return obj

    def complete_checkout(self, session_id: str, *, sub: dict[str, Any]) -> None:
        """What a member paying on Checkout does: the session completes with a new subscription."""
        self.add(sub)
        self.checkout_sessions[session_id].update(
            status="complete", payment_status="paid", subscription=sub["id"], customer=sub["customer"]
        )

    # --- HTTP -----------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: str, authorization: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(raw_path)
        form = {key: values[-1] for key, values in parse_qs(body or parts.query, keep_blank_values=True).items()}
        self.calls.append(Call(method, parts.path, form, authorization))
        if self.on_call is not None:
            self.on_call(self.calls[-1])
        if self.failing is not None:
            return self.failing, _error("api_error", "Something went wrong on Stripe's end.")
        if not authorization.startswith("Bearer sk_test_"):
            return 401, _error("invalid_request_error", "Invalid API Key provided.")
        segments = parts.path.strip("/").split("/")
        match (method, segments):
            case ("POST", ["v1", "checkout", "sessions"]):
                return 200, self._create_checkout(form)
            case ("GET", ["v1", "checkout", "sessions", session_id]):
                session = self.checkout_sessions.get(session_id)
                if session is None:
                    return 404, _missing("checkout.session", session_id)
                expanded = dict(session)
                if "subscription" in form.get("expand[0]", "") and session.get("subscription"):
                    expanded["subscription"] = self.subscriptions[session["subscription"]]
                return 200, expanded
            case ("POST", ["v1", "billing_portal", "sessions"]):
                return 200, {
                    "id": _id("bps"),
                    "object": "billing_portal.session",
                    "customer": form.get("customer"),
                    "flow": {"type": form["flow_data[type]"]} if "flow_data[type]" in form else None,
                    "livemode": False,
                    "return_url": form.get("return_url"),
                    "url": f"https://billing.stripe.com/p/session/{_id('ps')}",
                }
            case ("GET", ["v1", "subscriptions"]):
                return 200, self._list(form)
            case ("GET", ["v1", "subscriptions", sub_id]):
                found = self.subscriptions.get(sub_id)
                return (200, found) if found else (404, _missing("subscription", sub_id))
            case ("POST", ["v1", "subscriptions", sub_id]):
                found = self.subscriptions.get(sub_id)
                if found is None:
                    return 404, _missing("subscription", sub_id)
                if "cancel_at_period_end" in form:
                    cancel = form["cancel_at_period_end"] == "true"
                    item = found["items"]["data"][0]
                    found.update(cancel_at_period_end=cancel, cancel_at=item["current_period_end"] if cancel else None)
                return 200, found
            case ("DELETE", ["v1", "subscriptions", sub_id]):
                found = self.subscriptions.get(sub_id)
                if found is None:
                    return 404, _missing("subscription", sub_id)
                now = int(time.time())
                found.update(status="canceled", canceled_at=now, ended_at=now, cancel_at=None)
                return 200, found
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {parts.path}).")

    def _create_checkout(self, form: dict[str, str]) -> dict[str, Any]:
        session_id = _id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "customer": form.get("customer"),
            "customer_email": form.get("customer_email"),
            "livemode": False,
            "metadata": {"member_id": form.get("metadata[member_id]")},
            "mode": form.get("mode"),
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": form.get("success_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self.checkout_sessions[session_id] = session
        return session

    def _list(self, form: dict[str, str]) -> dict[str, Any]:
        limit = min(int(form.get("limit", "10")), self.page_size_limit)
        everything = sorted(self.subscriptions.values(), key=lambda sub: (-sub["created"], sub["id"]))
        if form.get("status") != "all":
            everything = [sub for sub in everything if sub["status"] != "canceled"]
        if after := form.get("starting_after"):
            position = next(index for index, sub in enumerate(everything) if sub["id"] == after)
            everything = everything[position + 1 :]
        page = everything[:limit]
        return {"object": "list", "data": page, "has_more": len(everything) > limit, "url": "/v1/subscriptions"}

    # --- Server ---------------------------------------------------------------------------------

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = fake.handle(self.command, self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{next(_request_ids)}")
                # Stripe tells clients whether a retry could help; here it never does.
                self.send_header("Stripe-Should-Retry", "false")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


_request_ids = itertools.count(1)


def _error(kind: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def _missing(kind: str, object_id: str) -> dict[str, Any]:
    return _error("invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing", param="id")

"""What the API root (portal/api.py) gives every operation: the JSON error shape for every 4xx and
5xx, bodies refused before they are read, rate limiting, ETags, cache headers, and a schema that
documents it all."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
import schemathesis
import time_machine
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from schemathesis.core.result import Ok

from members.models import Member, Profile, TokenScope
from members.services import create_api_token
from portal.api import CACHE_CONTROL, MAX_BODY_BYTES, _edge, api

START = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)  # on a rate-limit window boundary
OPERATIONS = {
    ("GET", "/api/v1/me"),
    ("PATCH", "/api/v1/me"),
    ("GET", "/api/v1/activity"),
    ("GET", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
    ("GET", "/api/v1/subscription"),
    ("GET", "/api/v1/plans"),
}


@pytest.fixture
def plain(alice: Member) -> str:
    return create_api_token(member=alice, name="script", scopes=[TokenScope.READ, TokenScope.WRITE], expires_at=None)[1]


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


def assert_error(response: Any, status: int, code: str, *, through_edge: bool = True) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    if through_edge:
        assert response["Cache-Control"] == CACHE_CONTROL
    body: dict[str, Any] = json.loads(response.content)  # the handlers' own responses have no .json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert body["message"]
    return body


# --- Errors outside any operation ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/me/", "/api/v1/tokens/1/2", "/api/v1/"])
def test_an_unknown_path_is_a_json_404(client: Client, db: None, path: str):
    assert_error(client.get(path), 404, "not_found")


def test_a_method_an_operation_lacks_is_a_json_405_with_allow(client: Client, plain: str):
    for method in ("post", "put", "delete"):
        response = getattr(client, method)("/api/v1/me", headers=bearer(plain))
        body = assert_error(response, 405, "method_not_allowed")
        assert set(response["Allow"].split(", ")) == {"GET", "PATCH"}
        assert "GET" in body["message"]
    assert Profile.objects.get(member__email="alice@example.com").display_name == "Alice"


# --- Bodies ----------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_unread_before_any_query(client: Client, plain: str, django_assert_num_queries):
    body = json.dumps({"bio": "x" * MAX_BODY_BYTES})
    with django_assert_num_queries(0):
        response = client.patch("/api/v1/me", data=body, content_type="application/json", headers=bearer(plain))
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"] == {"limit": MAX_BODY_BYTES}


def test_a_body_just_under_the_limit_is_read(client: Client, plain: str):
    # Valid JSON, but no field may be this long: the body was read and validated.
    body = json.dumps({"bio": "x" * (MAX_BODY_BYTES - 20)})
    response = client.patch("/api/v1/me", data=body, content_type="application/json", headers=bearer(plain))
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", "application/jsonx"],
)
def test_a_body_that_is_not_json_is_a_415(client: Client, plain: str, content_type: str):
    response = client.patch("/api/v1/me", data='{"bio": "hi"}', content_type=content_type, headers=bearer(plain))
    assert_error(response, 415, "unsupported_media_type")
    assert Profile.objects.get(member__email="alice@example.com").bio == ""


def test_a_charset_of_utf_8_is_fine(client: Client, plain: str):
    response = client.patch(
        "/api/v1/me", data='{"bio": "hi"}', content_type="application/json; charset=UTF-8", headers=bearer(plain)
    )
    assert response.status_code == 200


@pytest.mark.parametrize("body", ["{", '{"bio": }', "\xff\xfe", "[" * 5000 + "]" * 5000, "1" * 5000])
def test_malformed_json_is_a_400(client: Client, plain: str, body: str):
    response = client.patch("/api/v1/me", data=body, content_type="application/json", headers=bearer(plain))
    # Deep nesting and huge numbers are refused by the parser too; all without a 500.
    assert response.status_code in {400, 422}
    assert response.json()["code"] in {"bad_request", "validation_error"}
    if body in ("{", '{"bio": }'):
        assert_error(response, 400, "bad_request")


def test_a_body_that_is_not_an_object_is_a_422(client: Client, plain: str):
    for body in ("[]", '"bio"', "null", "42"):
        response = client.patch("/api/v1/me", data=body, content_type="application/json", headers=bearer(plain))
        error = assert_error(response, 422, "validation_error")
        assert error["details"][0]["field"] == "body"


def test_a_422_lists_every_invalid_field(client: Client, plain: str):
    response = client.patch(
        "/api/v1/me",
        data=json.dumps({"display_name": 1, "email_updates": "no", "colour": "red"}),
        content_type="application/json",
        headers=bearer(plain),
    )
    error = assert_error(response, 422, "validation_error")
    assert sorted(item["field"] for item in error["details"]) == ["colour", "display_name", "email_updates"]
    assert all(item["message"] for item in error["details"])


def test_too_many_query_parameters_are_a_400_not_a_500(client: Client, plain: str):
    query = "&".join(f"p{i}=1" for i in range(1200))
    assert_error(client.get(f"/api/v1/me?{query}", headers=bearer(plain)), 400, "bad_request")


# --- 500 ---------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_a_bare_500_and_is_logged(db: None, caplog: pytest.LogCaptureFixture):
    # No operation is broken on purpose: the handler every operation's exceptions go to is
    # called the way django-ninja calls it.
    request = RequestFactory().get("/api/v1/me")
    secret = "password authentication failed for user portal at 10.0.0.5"
    try:
        raise RuntimeError(secret)
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR, logger="portal.api"):
            response = api.on_exception(request, exc)

    error = assert_error(response, 500, "server_error", through_edge=False)
    assert error["details"] is None
    assert secret not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    record = next(record for record in caplog.records if record.name == "portal.api")
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert secret in str(record.exc_info[1])
    assert "/api/v1/me" in record.getMessage()


def test_an_exception_outside_any_operation_is_a_json_500_too(caplog: pytest.LogCaptureFixture):
    # Every URL under /api/v1/ is wrapped in `_edge`, which has the last word on exceptions.
    def broken_view(request: HttpRequest) -> HttpResponse:
        raise KeyError("internal detail")

    with caplog.at_level(logging.ERROR, logger="portal.api"):
        response = _edge(broken_view)(RequestFactory().get("/api/v1/anything"))

    assert isinstance(response, HttpResponse)
    assert_error(response, 500, "server_error")
    assert "internal detail" not in response.content.decode()
    assert any(record.name == "portal.api" for record in caplog.records)


# --- Rate limits -------------------------------------------------------------------------------


def test_a_token_over_its_limit_gets_a_429_with_the_headers(client: Client, plain: str, settings):
    settings.API_RATE_LIMIT_PER_TOKEN = 3
    with time_machine.travel(START, tick=False) as clock:
        answers = [client.get("/api/v1/me", headers=bearer(plain)) for _ in range(4)]
        assert [response.status_code for response in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        error = assert_error(refused, 429, "rate_limited")
        assert error["details"] == {"limit": "token", "retry_after": 60}
        assert refused["Retry-After"] == "60"
        assert '"token";q=3;w=60' in refused["RateLimit-Policy"]
        assert '"token";r=0;t=60' in refused["RateLimit"]
        assert '"token";r=2;t=60' in answers[0]["RateLimit"]

        # A write is counted against the same token and refused the same way.
        response = client.patch("/api/v1/me", data="{}", content_type="application/json", headers=bearer(plain))
        assert_error(response, 429, "rate_limited")

        # Two windows on, the count has slid out.
        clock.move_to(START + dt.timedelta(seconds=120))
        assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 200


# --- Caching headers ---------------------------------------------------------------------------


def test_a_get_answers_304_to_its_own_etag(client: Client, plain: str):
    first = client.get("/api/v1/me", headers=bearer(plain))
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert first["Cache-Control"] == CACHE_CONTROL
    assert "Authorization" in first["Vary"]

    for if_none_match in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response = client.get("/api/v1/me", headers={**bearer(plain), "If-None-Match": if_none_match})
        assert response.status_code == 304
        assert response.content == b""
        assert response["ETag"] == etag
        assert response["Cache-Control"] == CACHE_CONTROL

    assert client.get("/api/v1/me", headers={**bearer(plain), "If-None-Match": '"stale"'}).status_code == 200


def test_an_etag_never_hides_an_error(client: Client, plain: str):
    first = client.get("/api/v1/me", headers=bearer(plain))
    # A 304 is only ever the answer to a request that would have been a 200.
    response = client.get("/api/v1/me", headers={"If-None-Match": first["ETag"]})
    assert_error(response, 401, "not_authenticated")
    assert "ETag" not in response


@pytest.mark.django_db(transaction=True)
def test_the_etag_changes_once_a_patch_commits(client: Client):
    # Committed for real, so the invalidation runs as it does in production: after COMMIT.
    alice = Member.objects.create_user("alice@example.com", "correct horse battery staple", display_name="Alice")
    plain = create_api_token(member=alice, name="script", scopes=[TokenScope.READ, TokenScope.WRITE], expires_at=None)[
        1
    ]
    before = client.get("/api/v1/me", headers=bearer(plain))
    assert client.get("/api/v1/me", headers={**bearer(plain), "If-None-Match": before["ETag"]}).status_code == 304

    client.patch("/api/v1/me", data='{"bio": "New."}', content_type="application/json", headers=bearer(plain))

    after = client.get("/api/v1/me", headers={**bearer(plain), "If-None-Match": before["ETag"]})
    assert after.status_code == 200
    assert after.json()["bio"] == "New."
    assert after["ETag"] != before["ETag"]


# --- The schema ------------------------------------------------------------------------------


@pytest.fixture
def openapi(client: Client, db: None) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_the_schema_describes_every_operation_and_every_error(openapi: dict[str, Any]):
    assert openapi["openapi"].startswith("3.")
    assert openapi["info"]["version"] == "1"
    found = {(method.upper(), path) for path, item in openapi["paths"].items() for method in item}
    assert found == OPERATIONS
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "403", "429", "500"} <= set(responses), (method, path)
            assert operation["security"] == [{"TokenAuth": []}]
            for status, response in responses.items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]["$ref"]
                    expected = "ValidationFailure" if status == "422" else "Error"
                    assert schema == f"#/components/schemas/{expected}", (method, path, status)
            if method == "get":
                assert "304" in responses and "ETag" in responses["200"]["headers"]
            assert "Retry-After" in responses["429"]["headers"]
            assert "WWW-Authenticate" in responses["401"]["headers"]
    patch = openapi["paths"]["/api/v1/me"]["patch"]["responses"]
    assert {"400", "413", "415", "422"} <= set(patch)
    assert "404" in openapi["paths"]["/api/v1/tokens/{token_id}"]["delete"]["responses"]
    assert openapi["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"


def test_the_schema_names_every_error_code(openapi: dict[str, Any]):
    codes = set(openapi["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert codes == {
        "bad_request",
        "not_authenticated",
        "invalid_token",
        "token_in_query",
        "insufficient_scope",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "validation_error",
        "rate_limited",
        "server_error",
        "service_unavailable",
    }


def test_the_schema_loads_in_schemathesis(openapi: dict[str, Any]):
    # Schemathesis validates the document as it loads it and resolves every reference.
    schema = schemathesis.openapi.from_dict(openapi)
    labels = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        labels.add(result.ok().label)
    assert labels == {f"{method} {path}" for method, path in OPERATIONS}


def test_the_docs_page_is_served(client: Client, db: None):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/api/v1/openapi.json" in response.content

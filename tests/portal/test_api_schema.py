"""Schemathesis against the live OpenAPI schema: every operation, up to 100 generated examples
each (operations without parameters have fewer distinct requests to make), authenticated with
a real read-and-write token. No 5xx, and every response matches the schema: status code,
content type, headers and body."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import negative_data_rejection

from members.models import Action, ApiToken, Member, TokenScope
from members.pagination import cursor_at
from members.services import create_api_token, create_member, record_activity

# The activity cursor is opaque (`format: activity-cursor`): generate real ones, anywhere in
# time and id, rather than strings the API rightly refuses.
schemathesis.openapi.format(
    "activity-cursor",
    st.builds(
        cursor_at,
        # Hypothesis takes naive bounds; the time zone comes from `timezones`.
        st.datetimes(
            min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001
            max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
            timezones=st.just(dt.UTC),
        ),
        st.integers(1, 2**63 - 1),
    ),
)
# A bare handler: django.setup() has already run under pytest-django.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", WSGIHandler())


@pytest.fixture
def fuzz_token(settings) -> tuple[ApiToken, str]:
    # The generated load would hit the rate limits long before the examples run out.
    settings.API_RATE_LIMIT_PER_TOKEN = 1_000_000
    settings.API_RATE_LIMIT_PER_IP = 1_000_000
    settings.API_AUTH_FAILURES_PER_IP = 1_000_000  # it sends wrong tokens on purpose
    member: Member = create_member(email="fuzz@example.com", password=None, display_name="Fuzz")
    for _ in range(3):
        record_activity(member=member, action=Action.LOGIN, ip="192.0.2.1", user_agent="fuzz")
    create_api_token(member=member, name="spare", scopes=[TokenScope.READ], expires_at=None)
    return create_api_token(member=member, name="fuzz", scopes=[TokenScope.READ, TokenScope.WRITE], expires_at=None)


# Real commits: the WSGI handler closes the request's connection as a server does, which the
# test-transaction wrapper of a plain `db` test cannot survive.
@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_within_its_schema(case, fuzz_token):
    token, plain = fuzz_token
    # DELETE /tokens/{id} may draw the fuzzing token's own id: keep it live for every example.
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)
    # Every default check runs (no 5xx; status, content type, headers and body as documented)
    # except "negative data rejected": a generated request whose only flaw is a mangled
    # Authorization header is sent with our valid one instead, and so is rightly accepted.
    case.call_and_validate(headers={"Authorization": f"Bearer {plain}"}, excluded_checks=[negative_data_rejection])

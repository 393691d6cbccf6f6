"""The Content-Security-Policy header built once per process (core/csp.py): the same header as
django-csp builds, with each response's own nonce, and django-csp's own path for a response that
carries a policy of its own."""

from __future__ import annotations

import re
from typing import Any

from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.http import HttpResponse
from django.test import Client, RequestFactory

from core.csp import CSPMiddleware

NONCE = re.compile(r"'nonce-([^']+)'")


def _answer(response: HttpResponse, *, use_nonce: bool) -> tuple[Any, Any]:
    request = RequestFactory().get("/")
    middleware = CSPMiddleware(lambda request: response)
    middleware.process_request(request)
    if use_nonce:
        str(request.csp_nonce)  # type: ignore[attr-defined]  # a template asked for it
    return middleware.process_response(request, response), request


def test_the_header_is_django_csps_with_the_responses_nonce():
    response, request = _answer(HttpResponse(), use_nonce=True)

    assert response["Content-Security-Policy"] == build_policy(nonce=request._csp_nonce)


def test_without_a_nonce_the_header_names_none():
    response, _ = _answer(HttpResponse(), use_nonce=False)

    assert response["Content-Security-Policy"] == build_policy()
    assert "nonce" not in response["Content-Security-Policy"]


def test_every_page_gets_a_nonce_of_its_own(client: Client, db: None):
    first, second = client.get("/accounts/login/"), client.get("/accounts/login/")

    nonces = [NONCE.search(response["Content-Security-Policy"])[1] for response in (first, second)]  # type: ignore[index]
    assert nonces[0] != nonces[1]
    for response, nonce in zip((first, second), nonces, strict=True):
        assert f'nonce="{nonce}"' in response.content.decode()


def test_a_response_with_a_policy_of_its_own_takes_django_csps_path():
    response = HttpResponse()
    response._csp_update = {"img-src": ["https://images.example"]}  # type: ignore[attr-defined]  # what csp_update sets

    answered, _ = _answer(response, use_nonce=False)

    expected = HttpResponse()
    expected._csp_update = response._csp_update  # type: ignore[attr-defined]
    request = RequestFactory().get("/")
    django_csp = DjangoCSPMiddleware(lambda request: expected)
    django_csp.process_request(request)
    assert (
        answered["Content-Security-Policy"] == django_csp.process_response(request, expected)["Content-Security-Policy"]
    )
    assert "https://images.example" in answered["Content-Security-Policy"]


def test_a_changed_setting_changes_the_header(settings):
    before, _ = _answer(HttpResponse(), use_nonce=False)
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}

    after, _ = _answer(HttpResponse(), use_nonce=False)

    assert after["Content-Security-Policy"] == "default-src 'none'" != before["Content-Security-Policy"]

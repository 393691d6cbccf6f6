"""The CSRF token masked in a few calls (core/csrf.py): a token Django's middleware takes as its
own, masked afresh each time, and Django's own path when the request has no secret yet."""

from __future__ import annotations

import re

from django.conf import settings
from django.middleware import csrf as django_csrf
from django.test import Client, RequestFactory

from core.csrf import get_token
from members.models import ApiToken, Member

SECRET = "a" * 16 + "Z9" * 8


def test_the_token_unmasks_to_the_requests_secret_and_is_new_each_time():
    request = RequestFactory().get("/")
    request.META["CSRF_COOKIE"] = SECRET

    tokens = {get_token(request) for _ in range(50)}

    assert len(tokens) == 50
    for token in tokens:
        assert len(token) == django_csrf.CSRF_TOKEN_LENGTH
        assert set(token) <= set(django_csrf.CSRF_ALLOWED_CHARS)
        assert (
            django_csrf._unmask_cipher_token(  # type: ignore[attr-defined]  # private, not in django-stubs
                token
            )
            == SECRET
        )
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"] is True  # the cookie goes out again, as with Django's


def test_the_mask_uses_the_whole_alphabet():
    request = RequestFactory().get("/")
    request.META["CSRF_COOKIE"] = SECRET

    masks = "".join(get_token(request)[: django_csrf.CSRF_SECRET_LENGTH] for _ in range(200))

    assert set(masks) == set(django_csrf.CSRF_ALLOWED_CHARS)


def test_without_a_secret_django_makes_one():
    request = RequestFactory().get("/")

    token = get_token(request)

    assert (
        django_csrf._unmask_cipher_token(  # type: ignore[attr-defined]  # private, not in django-stubs
            token
        )
        == request.META["CSRF_COOKIE"]
    )


def test_a_form_posted_with_the_token_of_a_cached_page_passes_csrf(alice: Member):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/tokens/")  # renders and caches the page
    page = browser.get("/tokens/").content.decode()  # from the cache, its token from core.csrf
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]  # type: ignore[index]

    response = browser.post(
        "/tokens/", {"csrfmiddlewaretoken": token, "name": "deploy", "scopes": ["read"], "expiry": "90"}
    )
    refused = browser.post(
        "/tokens/", {"csrfmiddlewaretoken": "x" * 64, "name": "deploy", "scopes": ["read"], "expiry": "90"}
    )

    assert response.status_code == 200  # the new token, shown once
    assert refused.status_code == 403
    assert ApiToken.objects.filter(member=alice, name="deploy").count() == 1
    assert settings.CSRF_COOKIE_NAME in browser.cookies

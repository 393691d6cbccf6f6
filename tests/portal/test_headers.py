"""Production settings: `check --deploy` is clean, and every response carries the security headers
and every cookie its attributes, on every URL of the URLconf, for visitors and for members.

The portal runs in a fresh interpreter with DEBUG off, as in production (the test run's own
settings have DEBUG on), on an in-memory SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from typing import Any

from tests.portal.test_settings import CONTRACT, ROOT, run_python

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-secret-key-for-the-header-tests-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "testserver",
    "DATABASE_URL": "sqlite:///:memory:",
}

WALK = """
import json, re, django
django.setup()
from django.test.utils import override_settings
# Static files as collected or not: the pages' headers are the subject here, not the manifest.
override_settings(STORAGES={
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}).enable()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from allauth.account.models import EmailAddress
from django.test import Client
from members.models import TokenScope
from members.services import create_api_token, create_member
from tests.portal.test_access import ALL_ROUTES

HEADERS = ("Strict-Transport-Security", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
           "Cross-Origin-Opener-Policy", "X-Frame-Options", "Permissions-Policy")
member = create_member(email="hedy@example.com", password="a-long-password-for-the-headers")
EmailAddress.objects.create(user=member, email=member.email, primary=True, verified=True)
token, _ = create_api_token(member=member, name="script", scopes=[TokenScope.READ], expires_at=None)

def fill(route):
    path = re.sub(r"<int:\\w+>", str(token.pk), route.route)
    path = re.sub(r"<(?:\\w+:)?\\w+>", "x", path)
    if route.is_regex:
        path = re.sub(r"\\(\\?P<\\w+>[^)]*\\)", "x", path).lstrip("^").rstrip("$").replace("\\\\", "")
    return "/" + path

anonymous, logged_in = Client(), Client()
logged_in.force_login(member)
seen = {}
paths = sorted({fill(route) for route in ALL_ROUTES} | {"/no-such-page/"})
for who, client in (("anonymous", anonymous), ("member", logged_in)):
    for path in paths:
        response = client.get(path, secure=True)
        seen[f"{who} GET {path}"] = {"status": response.status_code, **{h: response.get(h) for h in HEADERS}}

# The cookies a login sets: the CSRF cookie with the form, the session cookie at login.
visitor = Client()
visitor.get("/accounts/login/", secure=True)
visitor.post("/accounts/login/", {"login": member.email, "password": "a-long-password-for-the-headers"}, secure=True)
cookies = {
    name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"]), "samesite": m["samesite"],
           "path": m["path"], "domain": m["domain"]}
    for name, m in visitor.cookies.items()
}
print("WALK " + json.dumps({"responses": seen, "cookies": cookies}))
"""


@cache
def walk() -> dict[str, Any]:
    result = run_python(WALK, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("WALK "))
    data: dict[str, Any] = json.loads(line.removeprefix("WALK "))
    return data


def test_the_walk_covers_the_member_pages_the_admin_and_the_api() -> None:
    responses = walk()["responses"]
    assert len(responses) > 100
    statuses = {key: value["status"] for key, value in responses.items()}
    assert statuses["member GET /dashboard/"] == 200
    assert statuses["anonymous GET /dashboard/"] == 302
    assert statuses["member GET /api/v1/openapi.json"] == 200
    assert statuses["anonymous GET /no-such-page/"] == 404


def test_every_response_carries_every_security_header() -> None:
    wrong: list[str] = []
    for key, headers in walk()["responses"].items():
        expected = {
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cross-Origin-Opener-Policy": "same-origin",
            "X-Frame-Options": "DENY",
        }
        for name, value in expected.items():
            if headers[name] != value:
                wrong.append(f"{key}: {name} is {headers[name]!r}")
        policy = headers["Content-Security-Policy"] or ""
        directives = {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}
        # Scripts from our own origin, plus the page's nonce when it has a script tag: nothing inline.
        scripts = directives.get("script-src", [])
        if "'self'" not in scripts or any(value != "'self'" and not value.startswith("'nonce-") for value in scripts):
            wrong.append(f"{key}: script-src is {scripts}")
        if (
            "unsafe" in policy
            or directives.get("frame-ancestors") != ["'none'"]
            or directives.get("object-src") != ["'none'"]
        ):
            wrong.append(f"{key}: Content-Security-Policy is {policy!r}")
        if "camera=()" not in (headers["Permissions-Policy"] or ""):
            wrong.append(f"{key}: Permissions-Policy is {headers['Permissions-Policy']!r}")
    assert wrong == []


def test_cookies_are_secure_host_only_and_http_only() -> None:
    cookies = walk()["cookies"]
    # The login's "Successfully signed in" is a flash message, in a cookie of its own.
    assert set(cookies) == {"__Host-csrftoken", "__Host-sessionid", "__Host-messages"}
    for name, attributes in cookies.items():
        # __Host-: Secure, Path=/ and no Domain, or browsers refuse the cookie.
        assert attributes == {"secure": True, "httponly": True, "samesite": "Lax", "path": "/", "domain": ""}, name


def test_the_deploy_checklist_is_clean() -> None:
    environment = {key: value for key, value in os.environ.items() if key not in CONTRACT}
    environment.update(PRODUCTION, EMAIL_URL="smtp+tls://portal:pw@smtp.example:587")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout

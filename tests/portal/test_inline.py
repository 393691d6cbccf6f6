"""The stylesheet and the Web Vitals reporter inlined into every page (portal/inline.py): each
page carries the files' own text, the policy allows exactly that stylesheet by its hash and that
script by the response's nonce, and a changed file gets a new hash."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from members.models import Member
from portal import inline

ROOT = Path(__file__).resolve().parents[2]
STYLESHEET = ROOT / "static" / "css" / "portal.css"
VITALS = ROOT / "static" / "js" / "vitals.js"


def sha256_source(text: str) -> str:
    """The CSP source a browser computes for an inline element's text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def assert_inlined_and_allowed(response) -> None:
    html = response.content.decode()
    policy = directives(response["Content-Security-Policy"])
    # One <style> element, with the stylesheet's text as it is in the file, allowed by its hash
    # and nothing else inline; no stylesheet link left to wait for.
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL)
    assert styles == [STYLESHEET.read_text()]
    assert policy["style-src"] == ["'self'", sha256_source(styles[0])]
    assert 'rel="stylesheet"' not in html
    # The reporter inline, with no src of its own, under this response's nonce.
    scripts = re.findall(r'<script nonce="([^"]+)" data-endpoint="[^>]*>(.*?)</script>', html, flags=re.DOTALL)
    assert [text for _, text in scripts] == [VITALS.read_text()]
    assert policy["script-src"] == ["'self'", f"'nonce-{scripts[0][0]}'"]
    assert "unsafe" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/accounts/signup/"])
def test_a_visitors_page_carries_the_stylesheet_and_the_policy_allows_exactly_it(client: Client, db: None, path: str):
    assert_inlined_and_allowed(client.get(path))


@pytest.mark.django_db(transaction=True)  # the page cache's invalidations run on commit
@pytest.mark.parametrize("path", ["/dashboard/", "/tokens/", "/activity/"])
def test_a_member_page_from_the_page_cache_carries_them_too(client: Client, alice: Member, path: str):
    client.force_login(alice)
    first = client.get(path)
    second = client.get(path)  # the body stored by the first, with this response's nonce put back
    assert_inlined_and_allowed(first)
    assert_inlined_and_allowed(second)
    assert first["Content-Security-Policy"] != second["Content-Security-Policy"]  # a nonce each


def test_the_policy_is_computed_from_the_file_at_start_up(settings):
    assert inline.read(STYLESHEET, element="style") == settings.INLINE_STYLESHEET
    assert settings.INLINE_STYLESHEET.csp_source == sha256_source(STYLESHEET.read_text())
    assert settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"] == [
        "'self'",
        sha256_source(STYLESHEET.read_text()),
    ]


def test_a_changed_stylesheet_gets_a_new_hash(tmp_path: Path):
    path = tmp_path / "portal.css"
    path.write_text(STYLESHEET.read_text())
    before = inline.read(path, element="style")
    path.write_text(STYLESHEET.read_text() + "main { padding: 0; }\n")
    after = inline.read(path, element="style")
    assert after.csp_source != before.csp_source
    assert after.csp_source == sha256_source(path.read_text())
    assert after.text.endswith("main { padding: 0; }\n")


@pytest.mark.parametrize(
    ("element", "text"), [("style", "p::after { content: '</STYLE>'; }"), ("script", "'</script>'")]
)
def test_a_file_that_would_close_its_element_early_stops_start_up(tmp_path: Path, element: str, text: str):
    path = tmp_path / "asset"
    path.write_text(text)
    with pytest.raises(ImproperlyConfigured, match=f"contains '</{element}'"):
        inline.read(path, element=element)


def test_a_missing_file_stops_start_up_naming_it(tmp_path: Path):
    with pytest.raises(ImproperlyConfigured, match=r"missing\.css cannot be read"):
        inline.read(tmp_path / "missing.css", element="style")

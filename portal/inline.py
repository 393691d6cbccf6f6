"""What base.html inlines instead of linking: the stylesheet and the Web Vitals reporter.

On a phone every request the first paint waits for costs a round trip. The stylesheet linked
from the page was one: nothing could be drawn before it arrived. The reporter
(static/js/vitals.js) was another in Lighthouse's reckoning: a deferred script runs before the
first paint, so its request counted towards the Largest Contentful Paint. Both are small
(portal.css about 6.6 KB, 2 KB gzipped; vitals.js 2.5 KB), so each page built on base.html
carries them inline, and the first screen needs nothing but the HTML. With JavaScript off the
page is the same: no script swaps a stylesheet in.

The Content-Security-Policy stays strict. The stylesheet is allowed by its SHA-256, which
settings.py computes at start-up from the file (`read`) and lists in `style-src`; base.html
writes the very text that was hashed, so an edited file gets a new hash at the next start and a
<style> element with any other text is refused. The script carries the request's nonce, as its
tag did when it had a `src`. Neither directive has 'unsafe-inline'.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:
    from django.http import HttpRequest


@dataclass(frozen=True)
class Inline:
    text: SafeString  # written into the page as it is: escaping would change what was hashed
    csp_source: str  # "'sha256-<base64>'": the CSP source that allows exactly this text inline


def read(path: Path, *, element: str) -> Inline:
    """The file at `path`, to be written inside a <`element`> (style or script)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImproperlyConfigured(f"{path} cannot be read to be inlined: {exc.strerror}") from None
    # Inside <style> and <script> the HTML parser ends the element at the first "</style" or
    # "</script", whatever the CSS or JavaScript around it.
    if f"</{element}" in text.lower():
        raise ImproperlyConfigured(f"{path} contains '</{element}', which would end it early when inlined")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return Inline(text=mark_safe(text), csp_source=f"'sha256-{digest}'")  # noqa: S308 (our own file, checked above)


def inline_assets(request: HttpRequest) -> dict[str, SafeString]:
    """Context processor: what base.html inlines, as read at start-up."""
    return {
        "inline_stylesheet": settings.INLINE_STYLESHEET.text,
        "inline_vitals_script": settings.INLINE_VITALS_SCRIPT.text,
    }

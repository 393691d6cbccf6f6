"""Secrets that travel in URL paths, and their removal from text that leaves the process.

allauth's password-reset and email-confirmation links carry their key in the path
(`/accounts/password/reset/key/<uidb36>-<key>/`, `/accounts/confirm-email/<key>/`): whoever reads
the key can reset the password or confirm the address. Paths are written to gunicorn's access
log (deploy/gunicorn.conf.py) and sent to Sentry inside request URLs, transaction names,
breadcrumbs (`Not Found: /accounts/...`), span descriptions and Referer headers
(monitoring/sentry.py); both remove the key with `redact_secret_paths`. Imports nothing of
Django's, so gunicorn's master can use it before any app is loaded.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# The key runs to the end of its path segment, wherever the path appears in the text: alone, in
# a full URL, or inside a log message.
_SECRET_IN_PATH = re.compile(r"(/accounts/(?:password/reset/key|confirm-email)/)[^/\s?#\"'<>]+")


def redact_secret_paths(text: str, replacement: str = REDACTED) -> str:
    """`text` with the key of every reset or confirmation path in it replaced."""
    if "/accounts/" not in text:  # the common case, without running the pattern
        return text
    return _SECRET_IN_PATH.sub(lambda match: match[1] + replacement, text)

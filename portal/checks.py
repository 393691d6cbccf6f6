"""System checks of the portal's settings, run by every management command (`check --deploy`,
`migrate`, `runserver`) and by portal/wsgi.py when gunicorn loads the app."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

TAG = "portal"  # portal/wsgi.py runs the checks of this tag by name


@checks.register(TAG)
def email_is_configured(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """With DEBUG off, mail sent to the console would be lost without anyone noticing."""
    if settings.DEBUG or settings.EMAIL_URL_SET:
        return []
    return [
        checks.Error(
            "EMAIL_URL is not set while DEBUG is off: members' mail (confirmations, password "
            "resets) would only be printed to the console.",
            hint="Set EMAIL_URL to your SMTP server (smtp+tls://user:password@host:587), or to "
            "consolemail:// if printing mail to the log is intended.",
            id="portal.E001",
        )
    ]

"""The portal with allauth's login rate limits lifted, for bench/run.py's login POST path: at
30 logins a minute per address, a load test from one address would measure the refusals.
Everything else is `portal.settings`."""

from __future__ import annotations

from portal.settings import *  # noqa: F403

ACCOUNT_RATE_LIMITS = False  # type: ignore[assignment]  # allauth's documented value for no limits

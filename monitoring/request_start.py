"""When a request really started, for the latency histogram (monitoring/middleware.py): the
earliest moment we can vouch for, so the time it waited before Django saw it is counted.

In order:

1. The proxy's `X-Request-Start`, when the request came from one of our own proxies
   (TRUSTED_PROXIES, core/proxies.py): the time the proxy received it, so a wait for a free
   upstream connection at the proxy counts too. nginx sends it as
   `proxy_set_header X-Request-Start "t=${msec}";` (seconds, with milliseconds), Heroku's router
   as bare milliseconds, Apache as `t=%t` microseconds; all are read, the unit told by the
   size. A value is used only when it is sane: at most `MAX_SKEW` ahead of our clock (clocks
   differ a little) and at most `MAX_AGE` old; anything else (garbled, repeated, a replay, a
   clock far off) is ignored. The proxy must set the header itself, replacing any a client
   sent (nginx's `proxy_set_header` does): passed through, it would be the client's word.
2. The moment gunicorn's worker handed the connection to a thread (monitoring/gunicorn_worker.py),
   so the wait in the worker's queue for a free thread counts.
3. Neither (runserver, the test client): the moment the middleware saw it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.proxies import _is_trusted  # the one trust rule of TRUSTED_PROXIES, shared with client_ip
from monitoring.gunicorn_worker import REQUEST_START

# Older than this: not this request's start (a replayed header, a proxy clock far behind);
# gunicorn's own timeout (30 s) ends any request long before.
MAX_AGE = 60.0
# Ahead of our clock by more than this: a clock we do not share.
MAX_SKEW = 2.0

# `t=` and a number of seconds, milliseconds or microseconds since the epoch.
_HEADER = re.compile(r"(?:t=)?(\d{1,17}(?:\.\d{1,9})?)")
# Seconds, milliseconds, microseconds: today's date is 10 digits of seconds, 13 of ms, 16 of µs.
_SCALES = (1.0, 1e3, 1e6)


def parse_request_start(value: str, *, now: float) -> float | None:
    """The time (seconds since the epoch) that an X-Request-Start header says, or None when it
    is not one, or not sane at `now`."""
    match = _HEADER.fullmatch(value.strip())
    if match is None:
        return None
    number = float(match.group(1))
    for scale in _SCALES:
        seconds = number / scale
        if now - MAX_AGE <= seconds <= now + MAX_SKEW:
            return seconds
    return None


def request_started_at(environ: Mapping[str, Any], *, now: float) -> float | None:
    """The earliest trustworthy start of the request (seconds since the epoch) by the WSGI
    `environ`, or None when only the middleware's own clock is left. `now` is the wall clock as
    the middleware saw the request."""
    handed_over = environ.get(REQUEST_START)
    header = environ.get("HTTP_X_REQUEST_START")
    if header and _is_trusted(environ.get("REMOTE_ADDR", "")):
        started = parse_request_start(header, now=now)
        if started is not None:
            # A proxy clock ahead of ours (within the skew) cannot make the request start after
            # gunicorn had it.
            return min(started, handed_over) if handed_over is not None else min(started, now)
    return float(handed_over) if handed_over is not None else None

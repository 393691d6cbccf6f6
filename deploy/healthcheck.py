"""The container's health check (the Dockerfile's HEALTHCHECK): GET /health/live on this
container's own gunicorn and exit 0 on a 200, 1 otherwise. Plain urllib: the slim image has no curl.

Two things a plain `urlopen("http://127.0.0.1:8000/health/live")` would get wrong:
- Django answers 400 to a Host header not in ALLOWED_HOSTS, and 127.0.0.1 is rarely there, so
  the request names a host that ALLOWED_HOSTS lists.
- A redirect is a failure, not followed: following one (to https://the-site/...) would ask
  another instance, or the public site, whether this one is alive.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from email.message import Message
from typing import IO

DEFAULT_PORT = 8000


def probe_host(allowed_hosts: str) -> str:
    """A Host header that ALLOWED_HOSTS accepts: its first entry, made concrete."""
    first = next((host.strip() for host in allowed_hosts.split(",") if host.strip()), "localhost")
    if first == "*":
        return "localhost"
    return first.lstrip(".")  # ".example.org" accepts example.org and its subdomains


def probe_port(bind: str) -> int:
    """The port of GUNICORN_BIND's first TCP address ("0.0.0.0:8000", "[::]:8000")."""
    for address in bind.split(","):
        host, _, port = address.strip().rpartition(":")
        if host and not address.strip().startswith(("unix:", "fd://")) and port.isdigit():
            return int(port)
    return DEFAULT_PORT


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def main() -> int:
    port = probe_port(os.environ.get("GUNICORN_BIND", ""))
    host = probe_host(os.environ.get("ALLOWED_HOSTS", ""))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/live", headers={"Host": host})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=4) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"health check: no answer on port {port}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"health check: /health/live answered {status} (Host: {host})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

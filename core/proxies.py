"""The client's address behind our own reverse proxies. Imports no app of ours: every app may
use it."""

from __future__ import annotations

import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest


@cache
def _trusted_networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _trusted_networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request: HttpRequest) -> str | None:
    """The address of the client, as far as we can trust it.

    REMOTE_ADDR is the peer that connected to us. Only when that peer is one of our own reverse
    proxies (TRUSTED_PROXIES) is X-Forwarded-For read, from the right: each trusted proxy
    appended the address it received from, so the first address that is not a trusted proxy is
    the client. Anything left of it was written by the client and could be forged, so it is
    never used. A garbled entry ends the walk at the last address we can vouch for."""
    remote: str | None = request.META.get("REMOTE_ADDR") or None
    if remote is None or not _is_trusted(remote):
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    client = remote
    for address in reversed(forwarded):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            break
        client = address
        if not _is_trusted(address):
            break
    return client

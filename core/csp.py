"""django-csp's middleware with the policy built once per process, not once per response.

`csp.middleware.CSPMiddleware` rebuilds the header from the settings on every response (copies
of each directive, a dataclass turned into a dict twice, the nonce put in): about 360 Python
calls, a tenth of a warm member page. The header only changes with the settings and the
request's nonce, so this subclass builds it once with a stand-in for the nonce and puts each
response's nonce in its place. A response that carries its own policy (django-csp's
`csp_update`, `csp_replace` or `csp_override` decorators) takes django-csp's own path, and so do
the checks around the header: they are django-csp's, only the building is memoised.
"""

from __future__ import annotations

import functools
import http
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.http.response import HttpResponseBase

# Stands for the nonce in the memoised header; base64 never produces `*`.
_NONCE = "*nonce*"
# What a decorator of django-csp sets on a response to give it a policy of its own.
_OWN_POLICY = ("_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro")
_DEBUG_EXEMPT = (http.HTTPStatus.INTERNAL_SERVER_ERROR, http.HTTPStatus.NOT_FOUND)


@functools.cache
def _header(report_only: bool, with_nonce: bool) -> tuple[str, tuple[str, ...]]:
    """The policy from the settings, with `_NONCE` for the nonce; and its excluded URL prefixes."""
    setting = getattr(
        settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY" if report_only else "CONTENT_SECURITY_POLICY", None
    )
    policy = build_policy(nonce=_NONCE if with_nonce else None, report_only=report_only)
    return policy, tuple((setting or {}).get("EXCLUDE_URL_PREFIXES") or ())


@receiver(setting_changed)
def _forget(setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _header.cache_clear()


class CSPMiddleware(DjangoCSPMiddleware):
    """In django-csp's place in MIDDLEWARE."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if any(getattr(response, name, None) is not None for name in _OWN_POLICY):
            return super().process_response(request, response)
        if response.status_code in _DEBUG_EXEMPT and settings.DEBUG:
            return response
        nonce = getattr(request, "_csp_nonce", None)
        for header, report_only, exempt in (
            (HEADER, False, "_csp_exempt"),
            (HEADER_REPORT_ONLY, True, "_csp_exempt_ro"),
        ):
            policy, excluded = _header(report_only, bool(nonce))
            if (
                policy
                and header not in response
                and not getattr(response, exempt, False)
                and not request.path_info.startswith(excluded)
            ):
                response[header] = policy.replace(_NONCE, nonce) if nonce else policy
        if nonce is None:  # django-csp's guard: a nonce asked for after the header went out is an error
            request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response

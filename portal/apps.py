from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Member Portal"

    def ready(self) -> None:
        from portal import checks  # noqa: F401  (registers the checks)


class PortalAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the portal's site (`portal.admin.PortalAdminSite`) as the default."""

    default = False  # listed by its full path in INSTALLED_APPS; "portal" is `PortalConfig`
    default_site = "portal.admin.PortalAdminSite"

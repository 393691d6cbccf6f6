"""A bare Django project, the floor every portal path is measured against (bench/run.py): one
view that answers "hello", no apps, no middleware, no database, no templates. It runs under the
portal's own gunicorn configuration (deploy/gunicorn.conf.py, through `portal.wsgi` with
DJANGO_SETTINGS_MODULE pointing here), so the two differ only in what the portal adds."""

from __future__ import annotations

import os

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.baseline.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

"""Settings read from the environment: defaults, the PostgreSQL and Redis shapes, and start-up
errors that name the variable. Each case starts a fresh interpreter with its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DUMP = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "db": {k: settings.DATABASES["default"][k] for k in ("ENGINE", "NAME", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS")},
    "pool": settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
    "cache": settings.CACHES["default"],
    "session_engine": settings.SESSION_ENGINE,
    "hashers": settings.PASSWORD_HASHERS,
    "ttls": [getattr(settings, f"CACHE_TTL_{tier}") for tier in ("SHORT", "MEDIUM", "LONG", "VERY_LONG")],
    "debug": settings.DEBUG,
}, default=str))
"""
# Variables of the contract, cleared so that the caller's environment does not leak in.
CONTRACT = [
    "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "DATABASE_POOL_MIN", "DATABASE_POOL_MAX",
    "REDIS_URL", "CACHE_TTL_SHORT", "CACHE_TTL_MEDIUM", "CACHE_TTL_LONG", "CACHE_TTL_VERY_LONG",
    "SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_RELEASE", "SENTRY_TRACES_SAMPLE_RATE",
    "SENTRY_PROFILES_SAMPLE_RATE", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "METRICS_TOKEN",
    "HEALTH_TOKEN", "EMAIL_URL", "DATABASE_REPLICA_URL", "WEB_VITALS_SAMPLE_RATE", "WEB_VITALS_RATE_LIMIT_PER_IP",
    "RATE_LIMIT_IPV6_PREFIX",
]  # fmt: skip


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in CONTRACT}
    environment.update(env, DJANGO_SETTINGS_MODULE="portal.settings")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def settings_with(**env: str) -> dict[str, Any]:
    result = run_python(DUMP, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_up_error(**env: str) -> str:
    """Start `manage.py check` and return the last line it printed on failure."""
    environment = {k: v for k, v in os.environ.items() if k not in CONTRACT}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, "start-up should have failed"
    return result.stderr.strip().splitlines()[-1]


def test_no_environment_runs_on_sqlite_and_local_memory():
    values = settings_with()
    assert values["db"]["ENGINE"] == "django_prometheus.db.backends.sqlite3"
    assert values["db"]["NAME"].endswith("var/db.sqlite3")
    assert values["cache"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert values["ttls"] == [60, 300, 600, 1800]
    assert values["session_engine"] == "django.contrib.sessions.backends.cached_db"
    assert values["hashers"][0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_database_url_selects_postgresql_with_a_sized_pool_and_health_checks():
    values = settings_with(
        DATABASE_URL="postgres://portal:secret@db.internal:5432/portal", DATABASE_POOL_MIN="3", DATABASE_POOL_MAX="12"
    )
    assert values["db"]["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert values["db"]["NAME"] == "portal"
    assert values["db"]["CONN_HEALTH_CHECKS"] is True
    assert values["db"]["CONN_MAX_AGE"] == 0
    assert values["pool"]["min_size"] == 3
    assert values["pool"]["max_size"] == 12
    # Long enough to ride out a PostgreSQL restart rather than fail the waiting requests.
    # Fail fast while the database is down, and reconnect soon after it is back (the drills).
    assert values["pool"]["timeout"] == 2
    assert values["pool"]["reconnect_timeout"] == 5


def test_redis_url_selects_django_redis_that_degrades_instead_of_failing():
    cache = settings_with(REDIS_URL="redis://cache.internal:6379/1")["cache"]
    assert cache["BACKEND"] == "django_redis.cache.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/1"
    assert cache["OPTIONS"]["IGNORE_EXCEPTIONS"] is True
    assert cache["OPTIONS"]["SOCKET_TIMEOUT"] <= 1
    assert cache["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] <= 1


def test_cache_ttl_tiers_come_from_the_environment():
    values = settings_with(CACHE_TTL_SHORT="5", CACHE_TTL_MEDIUM="50", CACHE_TTL_LONG="500", CACHE_TTL_VERY_LONG="5000")
    assert values["ttls"] == [5, 50, 500, 5000]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@localhost/portal"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://portal@db:port/portal"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://portal@db:5432/"}, "DATABASE_URL"),
        ({"DATABASE_POOL_MIN": "five"}, "DATABASE_POOL_MIN"),
        ({"DATABASE_POOL_MAX": "0"}, "DATABASE_POOL_MAX"),
        ({"DATABASE_POOL_MIN": "30", "DATABASE_POOL_MAX": "20"}, "DATABASE_POOL_MIN"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL"),
        ({"CACHE_TTL_SHORT": "-1"}, "CACHE_TTL_SHORT"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"SENTRY_DSN": "not-a-dsn"}, "SENTRY_DSN"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "2"}, "SENTRY_TRACES_SAMPLE_RATE"),
        ({"WEB_VITALS_SAMPLE_RATE": "1.5"}, "WEB_VITALS_SAMPLE_RATE"),
        ({"WEB_VITALS_RATE_LIMIT_PER_IP": "0"}, "WEB_VITALS_RATE_LIMIT_PER_IP"),
        ({"RATE_LIMIT_IPV6_PREFIX": "129"}, "RATE_LIMIT_IPV6_PREFIX"),
        ({"RATE_LIMIT_IPV6_PREFIX": "/64"}, "RATE_LIMIT_IPV6_PREFIX"),
        ({"STRIPE_SECRET_KEY": "pk_live_123"}, "STRIPE_SECRET_KEY"),
        ({"STRIPE_WEBHOOK_SECRET": "secret"}, "STRIPE_WEBHOOK_SECRET"),
        ({"EMAIL_URL": "ftp://mail"}, "EMAIL_URL"),
        ({"DEBUG": "false"}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": "k" * 50}, "ALLOWED_HOSTS"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, named):
    line = start_up_error(**env)
    assert "ImproperlyConfigured" in line
    assert named in line


def test_the_ipv6_prefix_of_every_limit_comes_from_one_variable():
    code = (
        "import django; from django.conf import settings; from allauth import app_settings; django.setup(); "
        "print(settings.RATE_LIMIT_IPV6_PREFIX, app_settings.RATE_LIMIT_IPV6_PREFIX)"
    )
    assert run_python(code).stdout.split() == ["64", "64"]
    assert run_python(code, RATE_LIMIT_IPV6_PREFIX="56").stdout.split() == ["56", "56"]


def test_the_start_up_error_does_not_echo_a_password():
    line = start_up_error(DATABASE_URL="postgres://portal:hunter2hunter2@db:nope/portal")
    assert "DATABASE_URL" in line
    assert "hunter2hunter2" not in line


def test_redis_outage_degrades_to_misses_and_database_sessions():
    """Nothing listens on port 1: the cache answers misses instead of raising, and sessions
    (cached_db) still save and load from the database."""
    code = """
import django
django.setup()
from django.core.cache import cache
from django.core.management import call_command
from django.contrib.sessions.backends.cached_db import SessionStore
call_command("migrate", verbosity=0)
cache.set("k", "v")
assert cache.get("k") is None
store = SessionStore()
store["member"] = 42
store.save()
assert SessionStore(session_key=store.session_key)["member"] == 42
print("served")
"""
    result = run_python(code, REDIS_URL="redis://127.0.0.1:1/0", DATABASE_URL="sqlite:///:memory:")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "served"
    assert "django_redis" in result.stderr  # the ignored error is logged, not swallowed


REDIRECTS = """
import json, django
from django.conf import settings
django.setup()
from django.test import Client
settings.ALLOWED_HOSTS = ["testserver"]
client = Client()
print(json.dumps({path: client.get(path).status_code for path in ("/health/live", "/dashboard/", "/metrics")}))
"""


def test_in_production_pages_redirect_to_https_but_probes_and_scrapes_do_not():
    # The orchestrator probes and Prometheus scrapes each instance over plain HTTP on the private
    # network; a redirect would pass every probe (3xx counts as up) and fail every scrape.
    result = run_python(REDIRECTS, DEBUG="false", SECRET_KEY="x" * 50, ALLOWED_HOSTS="testserver", METRICS_TOKEN="t")
    assert result.returncode == 0, result.stderr

    assert json.loads(result.stdout.splitlines()[-1]) == {"/health/live": 200, "/dashboard/": 301, "/metrics": 401}


REPLICA_DUMP = """
import json, django
from django.conf import settings
django.setup()
from django.db import router
replica = settings.DATABASES["replica"]
print(json.dumps({
    "engine": replica["ENGINE"],
    "host": replica["HOST"],
    "test": replica["TEST"]["MIRROR"],
    "pool_timeout": replica["OPTIONS"]["pool"]["timeout"],
    "migrate": {alias: router.allow_migrate(alias, "members") for alias in ("default", "replica")},
}))
"""


def test_a_read_replica_is_a_second_pooled_postgresql_alias_that_is_never_migrated():
    result = run_python(
        REPLICA_DUMP,
        DATABASE_URL="postgres://portal@db.internal:5432/portal",
        DATABASE_REPLICA_URL="postgres://reader:secret@replica.internal:5432/portal",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "engine": "django_prometheus.db.backends.postgresql",
        "host": "replica.internal",
        "test": "default",  # a test database has no replica: tests read the primary
        "pool_timeout": 2,  # a replica that does not answer is skipped quickly, not waited on
        "migrate": {"default": True, "replica": False},
    }


@pytest.mark.parametrize(
    ("primary", "replica"),
    [
        ("postgres://portal@db.internal:5432/portal", "sqlite:////tmp/replica.sqlite3"),
        ("", "postgres://reader@replica.internal:5432/portal"),  # the primary is SQLite
    ],
)
def test_a_read_replica_needs_postgresql_on_both_sides(primary, replica):
    message = start_up_error(DATABASE_URL=primary, DATABASE_REPLICA_URL=replica)
    assert message == (
        "django.core.exceptions.ImproperlyConfigured: DATABASE_REPLICA_URL is not valid: "
        "a read replica needs PostgreSQL, in it and in DATABASE_URL."
    )


def test_a_malformed_read_replica_url_is_named():
    message = start_up_error(DATABASE_REPLICA_URL="mysql://portal@db.internal/portal")
    assert message.startswith(
        "django.core.exceptions.ImproperlyConfigured: DATABASE_REPLICA_URL is not valid: expected"
    )


PRODUCTION_CHECK = {"DEBUG": "false", "SECRET_KEY": "k" * 50, "ALLOWED_HOSTS": "portal.example"}
DEPLOY_CHECK = (
    "from django.core.management import call_command; import django; django.setup(); call_command('check', '--deploy')"
)
SERVE = "import portal.wsgi"


@pytest.mark.parametrize("code", [DEPLOY_CHECK, SERVE], ids=["check --deploy", "gunicorn loading the app"])
def test_without_email_url_production_refuses_to_start_naming_it(code: str, tmp_path: Path) -> None:
    result = run_python(code, **PRODUCTION_CHECK, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode != 0
    assert "portal.E001" in result.stderr or "EMAIL_URL is not set" in result.stderr
    assert "EMAIL_URL" in result.stderr


@pytest.mark.parametrize("email_url", ["consolemail://", "smtp+tls://portal:pw@smtp.example:587"])
def test_an_explicit_email_url_lets_production_start(email_url: str, tmp_path: Path) -> None:
    env = {**PRODUCTION_CHECK, "EMAIL_URL": email_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert run_python(SERVE, **env).returncode == 0
    assert run_python(DEPLOY_CHECK, **env).returncode == 0


def test_debug_needs_no_email_url() -> None:
    assert run_python(DEPLOY_CHECK, DEBUG="true").returncode == 0

"""Settings for Member Portal, read from the environment.

Every variable is listed in `.env.example` with its default. With no environment at all the
portal runs on SQLite in `var/` and Django's local-memory cache. A bad value stops start-up with
an `ImproperlyConfigured` error that names the variable.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import django_stubs_ext
import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal import inline

# Lets generic Django classes (ModelAdmin[Member], forms) be subscripted at run time, as the
# type checker wants them written.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A `.env` file beside manage.py is read if present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

T = TypeVar("T")


def _read(name: str, cast: Callable[[str], T], default: T) -> T:
    """Read one variable and convert it, naming the variable if the value is unusable."""
    raw = env.str(name, default=None)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        # The value itself is left out: it may hold a password (DATABASE_URL) or a key.
        raise ImproperlyConfigured(f"{name} is not valid: {exc}") from None


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _rate(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0.0 to 1.0")
    return value


def _csv(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- Core ------------------------------------------------------------------------------------

DEBUG = _read("DEBUG", _bool, True)
_DEV_SECRET_KEY = "insecure-dev-key-only-for-local-use-never-in-production"  # noqa: S105 (refused below unless DEBUG)
SECRET_KEY = _read("SECRET_KEY", str, _DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set to a long random value when DEBUG is off.")
ALLOWED_HOSTS = _read("ALLOWED_HOSTS", _csv, ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the site's host names when DEBUG is off.")

INSTALLED_APPS = [
    # Django's admin on the portal's site: staff only, logged in through accounts (portal/admin.py).
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "ninja",  # serves the API docs' Swagger UI from our own static files, not a CDN
    "csp",  # django-csp: the Content-Security-Policy header (its system checks; the middleware below)
    "django_prometheus",
    "members",
    "subscriptions",
    "monitoring",
    "portal",
]

MIDDLEWARE = [
    # Before any other, so nothing after it makes spans for an unsampled request; the member on
    # Sentry events, by id and tier only (monitoring/sentry.py). Not used without SENTRY_DSN.
    "monitoring.sentry.SentryRequestMiddleware",
    # First and last, so the request metrics time and count everything in between (monitoring/).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "monitoring.middleware.RequestMetricsMiddleware",
    # Recent requests of this process, for /api/health/advanced (monitoring/traffic.py).
    "monitoring.traffic.RecentRequestsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Oversized bodies refused on their Content-Length, before anything parses them (core/bodies.py).
    "core.bodies.BodyLimitMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After whitenoise: pages get the policy and their nonce (`request.csp_nonce`), static files not.
    # django-csp's, with the header built once per process (core/csp.py).
    "core.csp.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's, with the member read from a cached snapshot (members/authentication.py).
    "members.authentication.MemberAuthenticationMiddleware",
    "members.middleware.SessionTimeoutMiddleware",
    "core.ratelimit.RateLimitMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-prometheus's, with only the series that dashboards and alerts read (monitoring/).
    "monitoring.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # Where and how often member pages report their Web Vitals (monitoring/vitals.py).
                "monitoring.vitals.web_vitals",
                # The stylesheet and script base.html inlines (portal/inline.py).
                "portal.inline.inline_assets",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------

DATABASE_POOL_MIN = _read("DATABASE_POOL_MIN", _positive_int, 5)
DATABASE_POOL_MAX = _read("DATABASE_POOL_MAX", _positive_int, 20)
if DATABASE_POOL_MIN > DATABASE_POOL_MAX:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_MIN={DATABASE_POOL_MIN} is larger than DATABASE_POOL_MAX={DATABASE_POOL_MAX}."
    )
# How long a request waits for a pooled connection before failing. Short: while PostgreSQL is
# down, a request that waited longer would only hold its worker thread (and the probes queued
# behind it) to fail anyway; the drills in docs/reliability.md measured this.
DATABASE_POOL_TIMEOUT = 2
# How long the pool keeps retrying a broken connection in the background, with a growing delay
# between tries, before it gives up and lets the next request try at once. Short, so that once
# PostgreSQL is back the pool reconnects within seconds rather than after its backoff.
DATABASE_POOL_RECONNECT_TIMEOUT = 5

_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


def _database(raw: str) -> dict[str, Any]:
    scheme = urlsplit(raw).scheme
    if scheme in _POSTGRES_SCHEMES:
        config: dict[str, Any] = env.db_url_config(raw)
        if not config.get("NAME"):
            raise ValueError("the URL names no database (postgres://user@host:5432/NAME)")
        config["OPTIONS"] = {
            **config.get("OPTIONS", {}),
            "pool": {
                "min_size": DATABASE_POOL_MIN,
                "max_size": DATABASE_POOL_MAX,
                "timeout": DATABASE_POOL_TIMEOUT,
                "reconnect_timeout": DATABASE_POOL_RECONNECT_TIMEOUT,
                "max_lifetime": 30 * 60,
                "max_idle": 5 * 60,
            },
        }
        # Pooled connections go back to the pool after each request (a pool requires
        # CONN_MAX_AGE=0). With health checks on, Django has the pool test each connection as
        # it is handed out, so one broken by a server restart is replaced, not used.
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = True
        return config
    if scheme == "sqlite":
        config = env.db_url_config(raw)
        config["CONN_MAX_AGE"] = 0
        return config
    raise ValueError("expected postgres://user:password@host:5432/name or sqlite:////path/to/file.sqlite3")


if not env.str("DATABASE_URL", default=""):
    VAR_DIR.mkdir(exist_ok=True)  # the embedded SQLite database lives here

# prometheus_client's multiprocess mode (set up by deploy/gunicorn.conf.py) writes each metric to
# a file in this directory from the moment the metric is made, as the apps are imported: it must
# exist before then, whatever starts the process (gunicorn, `gunicorn --check-config`, a
# management command run with the variable set, on a fresh checkout or a fresh /tmp).
_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if _MULTIPROC_DIR:
    try:
        Path(_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR is not valid: {exc.strerror}") from None
DATABASES = {
    "default": _read(
        "DATABASE_URL",
        _database,
        {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"},
    )
}
# django-prometheus's subclasses of Django's own backends: the same database and pool, with each
# query counted and timed for /metrics (django_db_*).
_INSTRUMENTED_BACKENDS = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}
# An optional read replica of the same database (streaming replication): heavy read-only
# queries go to it, everything else stays on the primary (core/db_router.py). Tests use the
# primary in its place (MIRROR), since a test database has no replica.
_REPLICA = _read("DATABASE_REPLICA_URL", _database, None)
if _REPLICA is not None:
    if not (_REPLICA["ENGINE"] == DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"):
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL is not valid: a read replica needs PostgreSQL, in it and in DATABASE_URL."
        )
    # A replica that does not answer within 2 s is skipped (core/db_router.py), not waited on.
    _REPLICA["OPTIONS"]["pool"]["timeout"] = 2
    DATABASES["replica"] = {**_REPLICA, "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["core.db_router.ReplicaRouter"]
for _alias in DATABASES:
    _ENGINE = str(DATABASES[_alias]["ENGINE"])
    DATABASES[_alias]["ENGINE"] = _INSTRUMENTED_BACKENDS.get(_ENGINE, _ENGINE)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and sessions ----------------------------------------------------------------------

CACHE_TTL_SHORT = _read("CACHE_TTL_SHORT", _positive_int, 60)
CACHE_TTL_MEDIUM = _read("CACHE_TTL_MEDIUM", _positive_int, 300)
CACHE_TTL_LONG = _read("CACHE_TTL_LONG", _positive_int, 600)
CACHE_TTL_VERY_LONG = _read("CACHE_TTL_VERY_LONG", _positive_int, 1800)


def _redis_cache(raw: str) -> dict[str, Any]:
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("expected redis://host:6379/0, rediss://host:6380/0 or unix:///path/to/socket")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the URL names no host")
    parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": raw,
        "KEY_PREFIX": "portal",
        "TIMEOUT": CACHE_TTL_MEDIUM,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # Short timeouts: a dead or hung Redis costs a request at most this long.
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            # After a failed or timed-out call, calls fail at once for a few seconds instead of
            # each waiting its timeout against a hung Redis (core/redis_breaker.py).
            "CONNECTION_POOL_CLASS": "core.redis_breaker.BreakerConnectionPool",
            # A Redis outage degrades to cache misses (served from the database) and is
            # logged through the `django_redis` logger instead of failing the request.
            "IGNORE_EXCEPTIONS": True,
        },
    }


CACHES = {
    "default": _read(
        "REDIS_URL",
        _redis_cache,
        {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "portal",
            "TIMEOUT": CACHE_TTL_MEDIUM,
        },
    )
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "django_redis"

# Sessions are read from the cache and written through to the database, so a Redis outage or
# flush never logs anyone out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Member pages are served render-once from the cache while their data is unchanged
# (core/pagecache.py). False renders every page (the page tests pin what a render costs).
PAGE_CACHE = True

# --- Authentication --------------------------------------------------------------------------

AUTH_USER_MODEL = "members.Member"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"

# Accounts (django-allauth): email login, mandatory verification, optional TOTP second factor.
ACCOUNT_ADAPTER = "members.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CHANGE_EMAIL = True
# Sign-up, login and reset answer the same whether or not an account exists.
ACCOUNT_PREVENT_ENUMERATION = True
# Sign-up hashes the password for a taken address too (same answer, same time); a password
# change checks the current password as a login would, against the same failure limits.
ACCOUNT_FORMS = {
    "signup": "members.forms.SignupForm",
    "change_password": "members.forms.ChangePasswordForm",
}
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Member Portal] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
# Counted in the cache, so shared by every process once REDIS_URL is set. Values: attempts per
# period, per client IP ("ip") and per account or email address ("key"); None turns one off.
ACCOUNT_RATE_LIMITS = {
    # Failed logins are limited by the portal's own limiter (members/adapters.py: 10 a minute
    # per IP, 5 in 5 minutes per account), which fails open when the cache is down; allauth's
    # would refuse every login then. allauth's two-factor step uses `login_failed` too: its codes
    # are limited by members/mfa.py instead.
    "login": None,
    "login_failed": None,
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "change_email": "3/m/user",
    "reauthenticate": "10/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# Wrong codes limited per login and per account, TOTP codes used once by the database rather
# than the cache (members/mfa.py).
MFA_FORMS = {"authenticate": "members.mfa.AuthenticateForm", "reauthenticate": "members.mfa.ReauthenticateForm"}
MFA_TOTP_ISSUER = "Member Portal"
# Staff must have passed a second factor in the current session to use /admin/ (portal/admin.py).
# On by default in production; off by default with DEBUG on, so the local demo logs straight in.
ADMIN_REQUIRE_MFA = _read("ADMIN_REQUIRE_MFA", _bool, not DEBUG)
# Days between a member asking to delete their account and its deletion (portal/account_data.py);
# they can log in and keep it meanwhile.
ACCOUNT_DELETION_GRACE_DAYS = _read("ACCOUNT_DELETION_GRACE_DAYS", _positive_int, 14)

# --- API ---------------------------------------------------------------------------------------


def _networks(raw: str) -> list[str]:
    networks = _csv(raw)
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
    return networks


# Addresses (or CIDR ranges) of our own reverse proxies. Only requests arriving from one of them
# have their X-Forwarded-For header read for the client's address (core.proxies.client_ip),
# by every limit, allauth's included (members.adapters.AccountAdapter.get_client_ip).
TRUSTED_PROXIES: list[str] = _read("TRUSTED_PROXIES", _networks, [])


def _ipv6_prefix(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 128:
        raise ValueError("expected a prefix length from 1 to 128")
    return value


# Every per-address limit counts an IPv6 client by its network of this many bits, not its own
# address: one subscriber gets at least a /64 and could take a new address for every request
# (core/ratelimit.py `client_subject`; allauth's sign-up and reset limits by the same setting).
RATE_LIMIT_IPV6_PREFIX = _read("RATE_LIMIT_IPV6_PREFIX", _ipv6_prefix, 64)
ALLAUTH_RATE_LIMIT_IPV6_PREFIX = RATE_LIMIT_IPV6_PREFIX
# Requests per minute, per API token and per client IP (core/ratelimit.py).
API_RATE_LIMIT_PER_TOKEN = _read("API_RATE_LIMIT_PER_TOKEN", _positive_int, 120)
API_RATE_LIMIT_PER_IP = _read("API_RATE_LIMIT_PER_IP", _positive_int, 300)
# Requests refused for want of a valid token (401) allowed per client IP in five minutes; beyond
# it, the address gets 429 on every API request until the count slides out.
API_AUTH_FAILURES_PER_IP = _read("API_AUTH_FAILURES_PER_IP", _positive_int, 20)

# Sessions end after this long without a request (idle) and this long after login (absolute),
# whichever comes first; see members/middleware.py.
SESSION_IDLE_TIMEOUT = 12 * 3600
SESSION_ABSOLUTE_TIMEOUT = 14 * 24 * 3600
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- Request bodies --------------------------------------------------------------------------

# The most bytes a request body may have (core/bodies.py), refused with 413 before it is read:
# members' forms are a few KiB; the admin's change forms and bulk actions, and Stripe's events,
# are larger. The API (64 KiB) and the Web Vitals beacon (4 KiB) enforce their own.
REQUEST_BODY_LIMIT = 64 * 1024
REQUEST_BODY_LIMITS = {"/admin/": 1024 * 1024, "/webhooks/stripe/": 1024 * 1024}
REQUEST_BODY_EXEMPT_PREFIXES = ("/api/v1/", "/vitals/")
# Django's own caps, behind the one above: form data held in memory, and the number of fields.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# --- Email -----------------------------------------------------------------------------------


def _email(raw: str) -> dict[str, Any]:
    scheme = urlsplit(raw).scheme
    if scheme not in {"smtp", "smtps", "smtp+tls", "smtp+ssl", "consolemail", "filemail", "memorymail", "dummymail"}:
        raise ValueError("expected smtp://user:password@host:25, smtp+tls://…:587, smtps://…:465 or consolemail://")
    config: dict[str, Any] = env.email_url_config(raw)
    return config


# Whether EMAIL_URL was given at all: with DEBUG off, its absence stops start-up (portal/checks.py);
# `consolemail://` given explicitly says printing mail is intended.
EMAIL_URL_SET = bool(env.str("EMAIL_URL", default=""))
_EMAIL: dict[str, Any] = _read("EMAIL_URL", _email, {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"})
# Every mail goes through the job queue (core/mail.py): the backend below queues it once the
# transaction commits, and a worker sends it with the backend of EMAIL_URL, retrying on failure.
EMAIL_BACKEND = "core.mail.QueuedEmailBackend"
EMAIL_DELIVERY_BACKEND: str = _EMAIL["EMAIL_BACKEND"]
EMAIL_HOST: str = _EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = int(_EMAIL.get("EMAIL_PORT") or 25)
EMAIL_HOST_USER: str = _EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD: str = _EMAIL.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS: bool = bool(_EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL: bool = bool(_EMAIL.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Member Portal <portal@localhost>")

# --- Background jobs (Celery: portal/celery.py, docs/operations.md "Background jobs") ---------


def _redis_broker(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"}:
        raise ValueError("expected redis://host:6379/1 or rediss://host:6380/1")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("the database number after the host is not a whole number")
    return raw


def _next_redis_database(raw: str) -> str:
    """REDIS_URL with the next database number: the broker's queues apart from the cache, so
    neither a cache flush nor the cache's eviction can drop a queued task."""
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured("CELERY_BROKER_URL must be set when REDIS_URL is a unix:// socket.")
    db = int(parts.path.strip("/") or 0) + 1
    if db > 15:
        raise ImproperlyConfigured(
            f"REDIS_URL uses database {db - 1}, and the broker would take the next one, which Redis lacks by "
            "default: set CELERY_BROKER_URL."
        )
    return parts._replace(path=f"/{db}").geturl()


_REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = _read(
    "CELERY_BROKER_URL", _redis_broker, _next_redis_database(_REDIS_URL) if _REDIS_URL else "memory://localhost/"
)
# Without a broker, tasks run at once in the process that queues them (`make run`, `make test`).
CELERY_TASK_ALWAYS_EAGER = _read("CELERY_TASK_ALWAYS_EAGER", _bool, CELERY_BROKER_URL.startswith("memory://"))
if not CELERY_TASK_ALWAYS_EAGER and CELERY_BROKER_URL.startswith("memory://"):
    raise ImproperlyConfigured(
        "CELERY_TASK_ALWAYS_EAGER is not valid: false needs a broker (set REDIS_URL or CELERY_BROKER_URL)."
    )
# An eager task's error reaches its caller, as the work done in place of it always did.
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# Nothing waits for a task's return value; outcomes are in the logs and metrics.
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged once it has run, not when it is handed out, and handed back when its
# pool process dies: a worker killed mid-task (or on a node that vanished) leaves it to another
# worker, so every task must be safe to run twice (idempotent by key).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# The one queue every task goes to (its depth: portal_task_queue_depth in /metrics).
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Each pool process takes one task at a time: a long task does not sit on others' tasks.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = _read("CELERY_TASK_SOFT_TIME_LIMIT", _positive_int, 300)
CELERY_TASK_TIME_LIMIT = _read("CELERY_TASK_TIME_LIMIT", _positive_int, 360)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT} must be larger than "
        f"CELERY_TASK_SOFT_TIME_LIMIT={CELERY_TASK_SOFT_TIME_LIMIT} (the soft limit lets a task clean up first)."
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Mail (core/mail.py): attempts after the first, and the first delay in seconds, doubled at each
# retry up to MAIL_RETRY_DELAY_MAX.
MAIL_MAX_RETRIES = _read("MAIL_MAX_RETRIES", _positive_int, 5)
MAIL_RETRY_DELAY = _read("MAIL_RETRY_DELAY", _positive_int, 30)
MAIL_RETRY_DELAY_MAX = 600
# Seconds a task handed to a worker may stay unacknowledged before Redis hands it to another:
# longer than the longest task (the hard time limit) and the longest wait of a retry (which a
# worker holds until it is due), or a slow task would run twice.
CELERY_BROKER_VISIBILITY_TIMEOUT = _read("CELERY_BROKER_VISIBILITY_TIMEOUT", _positive_int, 3600)
_LONGEST_HOLD = max(CELERY_TASK_TIME_LIMIT, min(MAIL_RETRY_DELAY_MAX, MAIL_RETRY_DELAY * 2 ** (MAIL_MAX_RETRIES - 1)))
if CELERY_BROKER_VISIBILITY_TIMEOUT <= _LONGEST_HOLD:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_VISIBILITY_TIMEOUT={CELERY_BROKER_VISIBILITY_TIMEOUT} must be longer than the longest task "
        f"or retry wait ({_LONGEST_HOLD} s: CELERY_TASK_TIME_LIMIT, MAIL_RETRY_DELAY x 2^(MAIL_MAX_RETRIES-1)), "
        "or a task would run twice."
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    # A request that queues a task while Redis is down waits seconds, not forever.
    "socket_timeout": 5,
    "socket_connect_timeout": 1,
}
# The web process queues mail and other tasks: if the broker cannot be reached, one more try
# half a second later, then the caller hears of it (core/mail.py then sends the mail itself).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return value


# Where a worker's main process serves its pool's task metrics for Prometheus (portal/celery.py);
# unset: not served.
CELERY_WORKER_METRICS_PORT: int | None = _read("CELERY_WORKER_METRICS_PORT", _port, None)
CELERY_WORKER_METRICS_ADDRESS = env.str("CELERY_WORKER_METRICS_ADDRESS", default="0.0.0.0")  # noqa: S104

# --- Internationalization --------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
if DEBUG:
    # Served from the source folders (finders) in development; the folder only has to exist.
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security (production) -------------------------------------------------------------------

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", _bool, True)
    # Prometheus scrapes, and the orchestrator probes, each instance over the private network, not
    # through the TLS proxy: a redirect to https would fail every scrape and pass every probe.
    SECURE_REDIRECT_EXEMPT = [r"^metrics$", r"^health/(live|ready)$"]
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Eligible for browsers' preload lists (submitting the domain is the operator's choice).
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # `__Host-` cookies are only accepted by browsers when Secure, for the whole site (Path=/) and
    # for this host alone (no Domain): no subdomain or plain-HTTP page can set or shadow them.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No script reads the CSRF cookie (forms carry the token), so it is HttpOnly too.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
# Flash messages in a `__Host-` cookie in production, like the session's (core/messages.py).
MESSAGE_STORAGE = "core.messages.MessageStorage"
# Browser features no page of the portal uses, turned off for it and anything it might embed
# (django-permissions-policy).
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
        "xr-spatial-tracking",
    )
}

# What every page built on base.html carries inline instead of linking, read once at start-up
# (portal/inline.py): the stylesheet, allowed in style-src by the hash of its text, and the Web
# Vitals reporter, allowed by the request's nonce.
INLINE_STYLESHEET = inline.read(BASE_DIR / "static" / "css" / "portal.css", element="style")
INLINE_VITALS_SCRIPT = inline.read(BASE_DIR / "static" / "js" / "vitals.js", element="script")

# Content-Security-Policy (django-csp) on every page, DEBUG or not. Everything comes from our own
# origin. Nothing inline is allowed but the two above, never by 'unsafe-inline': the stylesheet by
# its SHA-256, the one script a page has (static/js/vitals.js, inlined) by the request's nonce,
# which the script hands on to the web-vitals library it loads.
# Images may be data: URIs (allauth's TOTP QR code, the admin's and Swagger UI's icons). Forms
# post to ourselves, or are redirected on to Stripe's hosted Checkout and billing portal
# (form-action also governs the redirect after a submit).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, INLINE_STYLESHEET.csp_source],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF, "https://checkout.stripe.com", "https://billing.stripe.com"],
    }
}

# --- Integrations (read here, used by the subscriptions and monitoring apps) ------------------


def _prefixed(*prefixes: str) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        if not raw.startswith(prefixes):
            raise ValueError(f"expected a value starting with {' or '.join(prefixes)}")
        return raw

    return cast


def _webhook_secrets(raw: str) -> list[str]:
    """One secret, or two separated by a comma while Stripe rotates them."""
    return [_prefixed("whsec_")(secret) for secret in _csv(raw)]


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _sentry_dsn(raw: str) -> str:
    from sentry_sdk.utils import Dsn

    Dsn(raw)  # raises BadDsn, a ValueError, for a malformed DSN
    return raw


STRIPE_SECRET_KEY = _read("STRIPE_SECRET_KEY", _prefixed("sk_", "rk_"), "")
STRIPE_WEBHOOK_SECRETS: list[str] = _read("STRIPE_WEBHOOK_SECRET", _webhook_secrets, [])
# Where the Stripe API is reached: Stripe itself, or a stand-in such as stripe-mock in development.
STRIPE_API_BASE = _read("STRIPE_API_BASE", _http_url, "https://api.stripe.com")
# Seconds a webhook signature stays valid; Stripe's own default, which bounds replays.
STRIPE_WEBHOOK_TOLERANCE = 300
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")

# Web Vitals from members' browsers (monitoring/vitals.py): the share of page views that report
# them, decided in the browser per page view; and beacons accepted per client IP and minute.
WEB_VITALS_SAMPLE_RATE = _read("WEB_VITALS_SAMPLE_RATE", _rate, 0.1)
WEB_VITALS_RATE_LIMIT_PER_IP = _read("WEB_VITALS_RATE_LIMIT_PER_IP", _positive_int, 60)

SENTRY_DSN = _read("SENTRY_DSN", _sentry_dsn, "")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = _read("SENTRY_TRACES_SAMPLE_RATE", _rate, 0.0)
SENTRY_PROFILES_SAMPLE_RATE = _read("SENTRY_PROFILES_SAMPLE_RATE", _rate, 0.0)
if SENTRY_DSN:
    from monitoring.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        profiles_sample_rate=SENTRY_PROFILES_SAMPLE_RATE,
    )

# --- Scheduled jobs (run by `celery -A portal beat`; core/jobs.py) -----------------------------
# Each period is a timedelta: a job is overdue (alert, health check) after twice its period.
# Every job takes a per-period lock in Redis, so two beats started by mistake run it once.

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Comped memberships whose period is over (`expire_subscriptions`).
    "expire_comps": {"task": "subscriptions.expire_comps", "schedule": dt.timedelta(minutes=1)},
    # Stored Stripe events still unprocessed: retries ran out, or the broker was down at delivery.
    "retry_stripe_events": {"task": "subscriptions.retry_stripe_events", "schedule": dt.timedelta(minutes=10)},
    # Local subscriptions against Stripe (`reconcile_stripe`).
    "reconcile_stripe": {"task": "subscriptions.reconcile_stripe", "schedule": dt.timedelta(days=1)},
    # Accounts whose deletion is due (`purge_deleted_members`).
    "purge_deleted_members": {"task": "portal.purge_deleted_members", "schedule": dt.timedelta(days=1)},
    # Expired sessions (`clearsessions`).
    "clear_sessions": {"task": "portal.clear_sessions", "schedule": dt.timedelta(days=1)},
}

# --- Logging ---------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # A Redis outage would otherwise log a traceback for every cache call of every request.
    "filters": {"once_a_minute": {"()": "core.cache.OncePerInterval", "interval": 60}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django_redis": {"level": "WARNING", "filters": ["once_a_minute"]},
        "portal": {"level": "INFO"},
    },
}
logging.captureWarnings(True)

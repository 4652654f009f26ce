"""Django settings for the Reseller Partner Portal.

Configuration comes from the environment so one build runs as the embedded demo
(SQLite under ``var/``) and in production (PostgreSQL via ``DATABASE_URL``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
# var/ holds the embedded database, collected static files and other runtime state.
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", Path.cwd() / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# PORTAL_PRODUCTION=1 is the one switch for a deployment served over HTTPS: it refuses
# to start without an explicit secret key and host names, and turns on the HTTPS
# redirect, HSTS and Secure cookies (see "Security" below and docs/operations.md).
# Without it the portal is the embedded demo, served over plain http on localhost.
PRODUCTION = _env_bool("PORTAL_PRODUCTION", False)
DEBUG = _env_bool("PORTAL_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("PORTAL_DEBUG must be off when PORTAL_PRODUCTION is on.")

SECRET_KEY = os.environ.get("PORTAL_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        # Every web process must share one key (sessions, reset links, API key hashes).
        raise ImproperlyConfigured("PORTAL_SECRET_KEY must be set when PORTAL_PRODUCTION is on.")
    # The embedded default keeps a random key in var/ so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        from django.utils.crypto import get_random_string

        key_file.write_text(get_random_string(64))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

# Previous keys, newest first, still accepted after a rotation: sessions, password-reset
# links and API keys made under them keep working until they are removed from the list
# (docs/operations.md, "Rotating the secret key").
SECRET_KEY_FALLBACKS = [
    k.strip() for k in os.environ.get("PORTAL_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()
]

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("PORTAL_ALLOWED_HOSTS", "" if PRODUCTION else "*").split(",")
]
ALLOWED_HOSTS = [h for h in ALLOWED_HOSTS if h]
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        "PORTAL_ALLOWED_HOSTS must name the public host name(s) when PORTAL_PRODUCTION is on."
    )
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("PORTAL_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    # The admin with the portal's site: its login form words a throttled login like ours.
    "portal.accounts.admin_config.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    "ninja",
    "portal.core",
    "portal.audit",
    "portal.accounts",
    "portal.partners",
    "portal.lines",
    "portal.billing",
    "portal.analytics",
    "portal.alerts",
    "portal.jobs",
    "portal.workflows",
    "portal.webhooks",
    "portal.notifications",
    "portal.staff",
    "portal.web",
    "portal.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Large requests and responses give their freed memory back once they are sent.
    "portal.core.memory.ReleaseMemoryMiddleware",
    "portal.core.middleware.RequestContextMiddleware",
    # Bodies over the size limits are answered 413 before anything reads them.
    "portal.core.ratelimit.RequestBodyLimitMiddleware",
    # Records refused requests (401, 403, CSRF) after the refused transaction has ended.
    "portal.accounts.security.SecurityEventMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Idle and absolute session timeouts (after auth and messages: it logs out and says why).
    "portal.accounts.sessions.SessionLifetimeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # 429 with Retry-After per API key and per user; before idempotency, so a refused
    # request never reserves its key.
    "portal.core.ratelimit.RateLimitMiddleware",
    # API bodies are JSON: anything else is answered 415 before anything reads it.
    "portal.core.middleware.JsonBodyMiddleware",
    "portal.accounts.idempotency.IdempotencyMiddleware",
    "portal.staff.middleware.ChoosePartnerMiddleware",
]

# Request limits (portal.core.ratelimit): PORTAL_RATE_LIMIT_<NAME>="count/seconds" or "off"
# overrides one limit, e.g. PORTAL_RATE_LIMIT_API="1200/60".
RATE_LIMITS_ENABLED = _env_bool("PORTAL_RATE_LIMITS_ENABLED", True)
PORTAL_RATE_LIMITS = {
    name.removeprefix("PORTAL_RATE_LIMIT_").lower(): value
    for name, value in os.environ.items()
    if name.startswith("PORTAL_RATE_LIMIT_")
}
PORTAL_MAX_UPLOAD_SIZE = int(os.environ.get("PORTAL_MAX_UPLOAD_SIZE", str(32 * 1024 * 1024)))

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "django.template.context_processors.csp",
                "portal.web.context_processors.portal",
                "portal.notifications.context_processors.bell",
            ],
            # partner_time, money: every page shows times and money one way.
            "builtins": ["portal.web.templatetags.portal_format"],
        },
    },
]

# --- Database -------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "portal.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH}}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on busy_timeout instead of failing with "database is
    # locked" when one upgrades a read transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;"
        ),
    }
    # Tests use a file, not :memory:, so that threads and processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# The login throttle runs first in every authenticate() call, whichever form calls it
# (the login page, the Django admin's): a paused email or address is refused before
# any password is checked (portal.accounts.backends).
AUTHENTICATION_BACKENDS = [
    "portal.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# A full batch of 10,000 message events is about 1.5 MB of JSON; leave room for extra fields.
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing one before collectstatic
# Browser libraries come from npm (package.json, installed by `make install`) and are
# served like our own static files; node_modules is never committed.
NODE_MODULES = Path(os.environ.get("PORTAL_NODE_MODULES", BASE_DIR.parent.parent / "node_modules"))
STATICFILES_DIRS = [
    (prefix, NODE_MODULES / dist)
    for prefix, dist in (("vendor/chartjs", "chart.js/dist"),)
    if (NODE_MODULES / dist).is_dir()
]
# A template naming a file that collectstatic has not hashed falls back to its plain
# name instead of failing the page (tests and `portal serve` before collectstatic).
WHITENOISE_MANIFEST_STRICT = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if _env_bool("PORTAL_MANIFEST_STATIC", True)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}

# The console backend prints mail to the terminal (the demo); production names its own.
MAILERS = {
    "default": {
        "BACKEND": os.environ.get(
            "PORTAL_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
        )
    }
}
if MAILERS["default"]["BACKEND"] == "django.core.mail.backends.smtp.EmailBackend":
    # SMTP relay: PORTAL_EMAIL_HOST, _PORT, _USER, _PASSWORD; STARTTLS unless told not to.
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("PORTAL_EMAIL_HOST", "localhost"),
        "port": int(os.environ.get("PORTAL_EMAIL_PORT", "587")),
        "username": os.environ.get("PORTAL_EMAIL_USER", ""),
        "password": os.environ.get("PORTAL_EMAIL_PASSWORD", ""),
        "use_tls": _env_bool("PORTAL_EMAIL_USE_TLS", True),
        "timeout": 10,
    }
DEFAULT_FROM_EMAIL = os.environ.get("PORTAL_FROM_EMAIL", "portal@localhost")
# Where the portal is reached, for links in emails sent by the worker (no request to ask).
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://localhost:8000")

# --- Security -------------------------------------------------------------------
# Sessions live in accounts_usersession (Django's database sessions plus the user), so
# deactivating a user ends their sessions on every device. A session ends after
# PORTAL_SESSION_IDLE_MINUTES without a request and PORTAL_SESSION_MAX_HOURS after the
# login, whatever the activity (portal.accounts.sessions.SessionLifetimeMiddleware).
SESSION_ENGINE = "portal.accounts.sessions"
SESSION_IDLE_TIMEOUT = int(os.environ.get("PORTAL_SESSION_IDLE_MINUTES", "30")) * 60
SESSION_ABSOLUTE_TIMEOUT = int(os.environ.get("PORTAL_SESSION_MAX_HOURS", "12")) * 3600
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: a link into the portal (an emailed request notice, a bookmark opened
# from another site) would otherwise arrive without the session and show the login page.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Pages hand the token to HTMX from the template (hx-headers), so no script reads the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "portal.accounts.security.csrf_failure"
SESSION_COOKIE_SECURE = _env_bool("PORTAL_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # __Host- cookies are only accepted over HTTPS, for this exact host and path "/":
    # no other subdomain can set or shadow them.
    SESSION_COOKIE_NAME = "__Host-portal_session"
    CSRF_COOKIE_NAME = "__Host-portal_csrf"
SILENCED_SYSTEM_CHECKS: list[str] = []
if PRODUCTION:
    SECURE_SSL_REDIRECT = _env_bool("PORTAL_SSL_REDIRECT", True)
    # The load balancer's health check may probe over plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("PORTAL_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("PORTAL_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is the domain owner's decision (browsers hard-code it; leaving the list
    # takes months), so it is opt-in and Django's reminder about it is silenced until then.
    SECURE_HSTS_PRELOAD = _env_bool("PORTAL_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS.append("security.W021")
# Behind a proxy that terminates TLS, trust its X-Forwarded-Proto (opt-in: a client
# could send the header itself if the proxy does not overwrite it).
if _env_bool("PORTAL_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere: every script and stylesheet is a static file.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Secret used to hash message-event contacts; separate from SECRET_KEY so it can be
# kept when the session key rotates.
CONTACT_HASH_KEY = os.environ.get("PORTAL_CONTACT_HASH_KEY", SECRET_KEY)

# Days raw message events are kept (by partner-local day) before the worker prunes them;
# conversations and rollups are kept. Events older than this are refused on ingestion.
EVENT_RETENTION_DAYS = int(os.environ.get("PORTAL_EVENT_RETENTION_DAYS", "90"))

# Days refused requests (accounts.SecurityEvent) are kept before the worker prunes them.
SECURITY_EVENT_RETENTION_DAYS = int(os.environ.get("PORTAL_SECURITY_EVENT_RETENTION_DAYS", "365"))

# Seconds a worker may go without a heartbeat before its running tasks are requeued.
WORKER_STALE_AFTER_SECONDS = int(os.environ.get("PORTAL_WORKER_STALE_AFTER", "60"))

# Merge processing (workflows): lines moved per short transaction, and an optional pause
# between batches that leaves room for other writers (and lets tests catch a merge midway).
MERGE_BATCH_SIZE = int(os.environ.get("PORTAL_MERGE_BATCH_SIZE", "2000"))
MERGE_BATCH_PAUSE_SECONDS = float(os.environ.get("PORTAL_MERGE_BATCH_PAUSE", "0"))

# Webhooks (domain §8.3). Endpoint URLs must resolve to public addresses; =1 lifts that
# rule for development and tests (a receiver on 127.0.0.1). Plain http is refused only
# when PORTAL_PRODUCTION is on.
WEBHOOK_ALLOW_PRIVATE = _env_bool("PORTAL_WEBHOOK_ALLOW_PRIVATE", False)
# Seconds to wait after each failed attempt before the next (the last one failing marks
# the delivery failed): about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
WEBHOOK_RETRY_DELAYS = [
    int(s)
    for s in os.environ.get(
        "PORTAL_WEBHOOK_RETRY_DELAYS", "5,300,1800,7200,18000,36000,36000"
    ).split(",")
    if s.strip()
]
if any(delay < 0 for delay in WEBHOOK_RETRY_DELAYS):
    raise ImproperlyConfigured("PORTAL_WEBHOOK_RETRY_DELAYS must be seconds, 0 or more.")
# Seconds an attempt may take to connect and answer.
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("PORTAL_WEBHOOK_TIMEOUT", "10"))
# Deliveries a worker sends at once, and at most to one endpoint, so one slow or dead
# endpoint never holds every slot.
WEBHOOK_CONCURRENCY = int(os.environ.get("PORTAL_WEBHOOK_CONCURRENCY", "16"))
WEBHOOK_ENDPOINT_CONCURRENCY = int(os.environ.get("PORTAL_WEBHOOK_ENDPOINT_CONCURRENCY", "4"))
# Days the delivery log (events, deliveries, attempts) is kept.
WEBHOOK_RETENTION_DAYS = int(os.environ.get("PORTAL_WEBHOOK_RETENTION_DAYS", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PORTAL_LOG_LEVEL", "WARNING")},
    "loggers": {
        "portal": {"level": os.environ.get("PORTAL_LOG_LEVEL", "INFO"), "propagate": True},
    },
}

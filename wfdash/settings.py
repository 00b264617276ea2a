"""Django settings, every deployment choice read from the environment."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def generated_secret_key(path: Path) -> str:
    """A random key made once and kept in `path` (mode 0600), for a machine that set none."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= 50:
        return key
    key = secrets.token_urlsafe(64)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once agree on the first key written.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'wfdash.sqlite3'}"
# Kept beside the SQLite database (or the project) when SECRET_KEY is not set; machines
# sharing one PostgreSQL must share SECRET_KEY (system check runs.W002 says so).
SECRET_KEY_FILE = Path(os.environ.get("WFDASH_SECRET_KEY_FILE") or BASE_DIR / ".secret_key")
if DATABASE_URL.startswith("sqlite:///") and not os.environ.get("WFDASH_SECRET_KEY_FILE"):
    SECRET_KEY_FILE = Path(DATABASE_URL.removeprefix("sqlite:///")).parent / ".wfdash-secret-key"
SECRET_KEY = os.environ.get("SECRET_KEY") or generated_secret_key(SECRET_KEY_FILE)
SECRET_KEY_GENERATED = not os.environ.get("SECRET_KEY")
# Off unless asked for: no tracebacks or URL lists for strangers.
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "axes",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    # Installed so the API docs page uses its bundled Swagger UI, not a CDN.
    "ninja",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it answers a locked-out login.
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): after WFDASH_LOGIN_FAILURES wrong passwords for one
# username from one address, that pair is locked out for WFDASH_LOGIN_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("WFDASH_LOGIN_THROTTLING", True)
AXES_FAILURE_LIMIT = env_int("WFDASH_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("WFDASH_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Content-Security-Policy (Django's own): scripts, styles and everything else from this
# origin only; no inline scripts. WebSockets back to this host.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    # Style attributes (bar widths, positions) cannot run code; <style> elements still can't load.
    "style-src-attr": ["'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

ROOT_URLCONF = "wfdash.urls"
ASGI_APPLICATION = "wfdash.asgi.application"
WSGI_APPLICATION = None

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
            ],
        },
    },
]

# No persistent connections by default: under ASGI each request's sync code runs in its
# own thread, so a kept connection outlives its thread and leaks until garbage collection
# (a schemathesis run exhausted PostgreSQL's 100 connections that way). A worker keeps its
# one connection anyway: its database thread lives as long as the process.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, 0), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE avoids
    # lock upgrades failing mid-transaction under concurrent writers. WAL checkpoints run in
    # a thread of their own (runs/sqlite_wal.py); a commit checkpoints only past 40 MB of WAL.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            " PRAGMA wal_autocheckpoint=10000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# Tests start workers and servers as subprocesses: they need a test database
# they can open too, so SQLite's test database is a file, not :memory:.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One file per test session, so two sessions on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: one PUBLISH per group message however many pages watch, and
            # no per-channel capacity to overflow. It is at most once; pages fill any
            # gap from the database by seq (and poll slowly as a safety net).
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only for `collectstatic` behind a CDN or proxy: whitenoise serves the app folders directly
# (and warns about a configured folder that does not exist).
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Workflows by name. The environment variable WFDASH_WORKFLOWS adds or overrides
# entries as "name=dotted.path.Class,name2=...".
WFDASH_WORKFLOWS: dict[str, str] = {
    "joke": "runs.examples.joke.JokeFlow",
    "wordcount": "runs.examples.wordcount.WordCountFlow",
    "approval": "runs.examples.approval.ApprovalFlow",
    "flaky": "runs.examples.flaky.FlakyFlow",
    "flaky_forever": "runs.examples.flaky.AlwaysFailingFlow",
    "chain": "runs.examples.chain.ChainFlow",
    "map": "runs.examples.mapreduce.MapFlow",
}
# Production: set DEBUG=0, SECRET_KEY, ALLOWED_HOSTS; behind a TLS proxy also
# SECURE_PROXY_SSL_HEADER=1 (trusts X-Forwarded-Proto) and CSRF_TRUSTED_ORIGINS.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    # Secure cookies by default wherever the app knows it is behind TLS; plain HTTP on
    # loopback (the embedded default) would never send them back.
    behind_tls = env_bool("SECURE_PROXY_SSL_HEADER", False) or env_bool("SECURE_SSL_REDIRECT", False)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", behind_tls)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", behind_tls)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, 0)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

WFDASH_LEASE_SECONDS = env_int("WFDASH_LEASE_SECONDS", 30)
WFDASH_WORKER_CONCURRENCY = env_int("WFDASH_WORKER_CONCURRENCY", 50)

# Observability (docs/deploy.md): /metrics is open to loopback clients (unless
# WFDASH_METRICS_LOOPBACK_OPEN=0) and to others with this bearer token; the run page links
# its trace with WFDASH_TRACE_URL, e.g. https://tempo.example/trace/{trace_id}.
WFDASH_METRICS_TOKEN = os.environ.get("WFDASH_METRICS_TOKEN", "")
WFDASH_METRICS_LOOPBACK_OPEN = env_bool("WFDASH_METRICS_LOOPBACK_OPEN", True)
WFDASH_TRACE_URL = os.environ.get("WFDASH_TRACE_URL", "")
if WFDASH_TRACE_URL and (
    "{trace_id}" not in WFDASH_TRACE_URL or not WFDASH_TRACE_URL.startswith(("https://", "http://"))
):
    raise ImproperlyConfigured(
        f"WFDASH_TRACE_URL must be an http(s) URL containing {{trace_id}}, got {WFDASH_TRACE_URL!r}"
    )

# Webhooks (runs/webhooks.py): links in messages are absolute when WFDASH_PUBLIC_URL is set;
# a failed delivery is retried after each delay in turn (seconds, the last one repeating,
# with jitter) until WFDASH_WEBHOOK_GIVE_UP_SECONDS after it was queued. A worker sending a
# delivery holds it for WFDASH_WEBHOOK_LEASE_SECONDS (kept above the request timeout).
WFDASH_PUBLIC_URL = os.environ.get("WFDASH_PUBLIC_URL", "").rstrip("/")
_delays = env_list("WFDASH_WEBHOOK_RETRY_DELAYS", ["5", "30", "120", "600", "1800", "3600", "7200", "14400"])
if not all(d.isascii() and d.replace(".", "", 1).isdigit() for d in _delays):
    raise ImproperlyConfigured(f"WFDASH_WEBHOOK_RETRY_DELAYS must be seconds separated by commas, got {_delays!r}")
WFDASH_WEBHOOK_RETRY_DELAYS = [float(d) for d in _delays]
WFDASH_WEBHOOK_GIVE_UP_SECONDS = env_int("WFDASH_WEBHOOK_GIVE_UP_SECONDS", 24 * 3600)
WFDASH_WEBHOOK_TIMEOUT_SECONDS = env_int("WFDASH_WEBHOOK_TIMEOUT_SECONDS", 10)
WFDASH_WEBHOOK_LEASE_SECONDS = max(env_int("WFDASH_WEBHOOK_LEASE_SECONDS", 60), 2 * WFDASH_WEBHOOK_TIMEOUT_SECONDS + 1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"runs": {"handlers": ["console"], "level": os.environ.get("WFDASH_LOG_LEVEL", "INFO")}},
}

# Static files come straight from the app folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

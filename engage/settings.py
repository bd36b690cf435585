"""Settings for engage, read from the environment.

The embedded default needs no configuration: SQLite under ``var/``, django-q2 on the
Django ORM broker, and a secret key generated once and kept under ``var/``.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ENGAGE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def embedded_secret_key() -> str:
    """Return the secret key kept under var/, creating it on first use."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = embedded_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_htmx",
    "template_partials",
    "engage",
    "people",
    "segments",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "engage.middleware.ChunkedBodies",
    # Static files from the application itself, compressed and with hashed names after
    # collectstatic, so a plain gunicorn serves complete pages.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "engage.middleware.RefuseUnstorableURLs",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "engage.workspaces.CurrentWorkspaceMiddleware",
]

ROOT_URLCONF = "engage.urls"
# The People page's filters: the segments app's, by segment and attribute, on top of the
# people app's search (people.selection).
PEOPLE_FILTER_FORM = "segments.forms.PeopleFilterForm"

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
                "engage.workspaces.workspace_context",
            ],
        },
    },
]

WSGI_APPLICATION = "engage.wsgi.application"
ASGI_APPLICATION = "engage.asgi.application"


def database_settings() -> dict:
    """Return the default database from DATABASE_URL, or the embedded SQLite file."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'engage.sqlite3'}"
    # Connections are kept between requests; one the server dropped meanwhile (an idle
    # session timeout, a restart, a pooler) is found out and replaced before a request
    # uses it, instead of failing that request.
    config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
                                   conn_health_checks=True)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # A web process and a worker write at once: WAL lets readers run beside the
        # writer, IMMEDIATE transactions take the write lock up front (no upgrade
        # deadlocks), and the busy timeout makes a writer wait instead of failing.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=20000;"
                "PRAGMA foreign_keys=ON;"
            ),
        }
    return config


DATABASES = {"default": database_settings()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Messages can carry API keys shown once: keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Email: console in the embedded default, SMTP when EMAIL_HOST is set.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if os.environ.get("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
# Seconds an SMTP connection waits on the server before giving up (a retry follows).
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "engage@localhost")
# Where engage is reached from outside: absolute links in emails (unsubscribe, tracking).
ENGAGE_BASE_URL = os.environ.get("ENGAGE_BASE_URL", "http://localhost:8000").rstrip("/")
# The domain of the Message-ID of campaign emails (<delivery-{id}.{hash}@domain>).
ENGAGE_MESSAGE_ID_DOMAIN = (os.environ.get("ENGAGE_MESSAGE_ID_DOMAIN")
                            or urlsplit(ENGAGE_BASE_URL).hostname or "localhost")

# django-q2: the Django ORM broker by default, Redis when REDIS_URL is set.
Q_CLUSTER = {
    "name": "engage",
    # Two run the campaign sweepers (journeys; emails and webhooks) for just under each
    # minute; the others run everything else.
    "workers": int(os.environ.get("Q_WORKERS", "3")),
    "timeout": 600,
    # A task not acknowledged within `retry` seconds (its worker died) is handed out again.
    "retry": 660,
    "max_attempts": 5,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": 0.5,
}
if os.environ.get("REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "engage API",
    "DESCRIPTION": (
        "Customer.io-compatible APIs. Track API (`/api/v1`): HTTP Basic auth with "
        "`site_id:track_api_key`. App API (`/v1`): `Authorization: Bearer <app_api_key>`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# A cache shared by every process (API throttles count across gunicorn workers):
# Redis when REDIS_URL is set, else a table in the database.
if os.environ.get("REDIS_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["REDIS_URL"]}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "engage_cache"}}

# Request rates per API key ("N/s", "N/min"; empty for none), as in DRF's throttles.
ENGAGE_API_RATES = {
    "app": os.environ.get("ENGAGE_APP_API_RATE", "10/s"),
    "track": os.environ.get("ENGAGE_TRACK_API_RATE", ""),
}

# Where exports of people are written (CSV files, served through signed links).
ENGAGE_EXPORT_DIR = os.environ.get("ENGAGE_EXPORT_DIR", str(VAR_DIR / "exports"))

# Deletions of more people than this from the admin run as a background deletion job.
ENGAGE_SYNC_DELETE_LIMIT = int(os.environ.get("ENGAGE_SYNC_DELETE_LIMIT", "500"))
ENGAGE_DELETE_BATCH_SIZE = int(os.environ.get("ENGAGE_DELETE_BATCH_SIZE", "2000"))

# Email tracking and unsubscribes (campaigns.tracking): the base of the absolute links in
# messages (open pixel, click redirects, unsubscribe page: ENGAGE_BASE_URL above), and
# an address that takes unsubscribe requests by email (a mailto in List-Unsubscribe) when set.
ENGAGE_UNSUBSCRIBE_MAILTO = os.environ.get("ENGAGE_UNSUBSCRIBE_MAILTO", "")
# django-anymail's tracking webhooks (under /t/esp/): the basic-auth "user:password" the
# ESP is configured to send (without it they are open to anyone, and anymail warns).
ANYMAIL = {}
if os.environ.get("ANYMAIL_WEBHOOK_SECRET"):
    ANYMAIL["WEBHOOK_SECRET"] = os.environ["ANYMAIL_WEBHOOK_SECRET"]

# Re-evaluating people against every segment uses prepared statements on PostgreSQL; turn
# them off behind a pooler that cannot keep them (PgBouncer before 1.21 in transaction mode).
ENGAGE_PREPARED_STATEMENTS = env_bool("ENGAGE_PREPARED_STATEMENTS", default=True)

# Outbound webhooks (campaign "send and receive data" steps, campaigns.webhooks): private,
# loopback and link-local addresses are refused unless allowed, for every host or by name.
ENGAGE_WEBHOOK_ALLOW_PRIVATE = env_bool("ENGAGE_WEBHOOK_ALLOW_PRIVATE", default=False)
ENGAGE_WEBHOOK_ALLOWED_HOSTS = [host.lower() for host in env_list("ENGAGE_WEBHOOK_ALLOWED_HOSTS")]
ENGAGE_WEBHOOK_CONNECT_TIMEOUT = float(os.environ.get("ENGAGE_WEBHOOK_CONNECT_TIMEOUT", "5"))
ENGAGE_WEBHOOK_READ_TIMEOUT = float(os.environ.get("ENGAGE_WEBHOOK_READ_TIMEOUT", "15"))
ENGAGE_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("ENGAGE_WEBHOOK_MAX_ATTEMPTS", "8"))
ENGAGE_WEBHOOK_CONCURRENCY = int(os.environ.get("ENGAGE_WEBHOOK_CONCURRENCY", "4"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

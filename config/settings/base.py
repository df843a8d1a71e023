"""Development defaults: every value comes from the environment (see .env.example).

Nothing here needs a running service: SQLite, django-q2's ORM broker, files on local
disk and e-mail to the console. ``DATABASE_URL`` and ``REDIS_URL`` switch to
PostgreSQL and the Redis broker. App-specific settings live beside this file, one
module per app, imported at the end.
"""

from datetime import timedelta
from pathlib import Path

from .env import BASE_DIR, DATA_DIR, DEFAULT_SECRET_KEY, env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default=DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "config.api.csrf_failure"  # the error shape under /api/
SITE_URL = env("SITE_URL", default="http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "config.apps.ScriptoriumAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "config.apps.CoreConfig",
    "accounts",
    "scripts",
    "executions",
    "storage",
    "mailqueue",
    "vault",
    "audit",
    "jobs",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.api.ApiTrailingSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.logging.RequestIdMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Databases -------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # FACTS.md: without IMMEDIATE transactions a django-q2 cluster next to the web
    # process loses task results to "database is locked". WAL lets readers go on.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Persistent connections (seconds; 0: one per request): opening one costs more than a
# light request's own queries (on SQLite, each new connection also reads the schema).
# A connection is checked before a request reuses it (CONN_HEALTH_CHECKS), and the
# sync API's run threads reuse theirs the same way (executions.worker).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if env("TEST_DATABASE_NAME", default=""):
    # Lets several developers run the PostgreSQL suite on one server at once.
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}

LEGACY_DATABASE_URL = env("LEGACY_DATABASE_URL", default="")
DATABASE_ROUTERS = []
if LEGACY_DATABASE_URL:
    DATABASES["legacy"] = env.db_url_config(LEGACY_DATABASE_URL)
    DATABASE_ROUTERS = ["mailqueue.routers.LegacyMailRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# collectstatic writes here; a container image keeps it outside the DATA_DIR volume.
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(DATA_DIR / "static")))
# The portal's sign-in page (people who are not staff land in the portal).
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

# --- Cache (login throttling, SSE hand-offs) ----------------------------------------
REDIS_URL = env("REDIS_URL", default="")
CACHE_KEY_PREFIX = env("CACHE_KEY_PREFIX", default="scriptorium")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": CACHE_KEY_PREFIX,
        }
    }

# --- Task queue (django-q2) -------------------------------------------------------
# retry must exceed timeout, and both the longest run (FACTS.md), or a long run is
# handed to a second worker. Runs keep their own state in our models, so successful
# task results are not stored (save_limit=-1), which also avoids SQLite's prune lock.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=3900)
Q_CLUSTER = {
    "name": env("Q_CLUSTER_NAME", default="scriptorium"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 120,
    "max_attempts": 1,
    "save_limit": -1,
    "ack_failures": True,
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.05),
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- REST API ----------------------------------------------------------------------
# How many reverse proxies in front of the web tier append to X-Forwarded-For. The
# throttles (login, register) key on the client address: REMOTE_ADDR with 0 (the
# header is ignored, so a client cannot choose its address), the address the nearest
# proxy appended with 1, and so on. Never more than the proxies that really exist.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

REST_FRAMEWORK = {
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "accounts.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.BoundedJSONParser",
        "config.parsers.BoundedFormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "login": env("LOGIN_THROTTLE_RATE", default="10/min"),
        "register": env("REGISTER_THROTTLE_RATE", default="20/hour"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Records each sign-in in the audit log (accounts/tokens.py).
    "TOKEN_OBTAIN_SERIALIZER": "accounts.tokens.AuditedTokenObtainPairSerializer",
}

# JSON request bodies larger than this are refused (413) before they are parsed.
API_MAX_JSON_BYTES = env.int("API_MAX_JSON_BYTES", default=5 * 1024 * 1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "Scriptorium API",
    "DESCRIPTION": "Keep a library of Python scripts, run them safely, keep their results.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operations are grouped by app, with the tags' descriptions (config.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.describe_tags",
    ],
}

# --- Accounts ------------------------------------------------------------------------
OPEN_REGISTRATION = env.bool("OPEN_REGISTRATION", default=False)
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)
ADMIN_USERNAME = env("ADMIN_USERNAME", default="admin")
ADMIN_EMAIL = env("ADMIN_EMAIL", default="admin@localhost")

# --- E-mail --------------------------------------------------------------------------
# EMAIL_BACKEND: config/settings/mailqueue.py (every mail goes through the queue)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Scriptorium <scriptorium@localhost>")

# --- Security (production settings turn these on) ------------------------------------
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
X_FRAME_OPTIONS = "DENY"

# --- Logging -------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")  # json | console
# Management commands other than the server and the workers log readable lines from
# this level up (their output is for people).
COMMAND_LOG_LEVEL = env("COMMAND_LOG_LEVEL", default="WARNING")
from config.logging import build_logging, running_command  # noqa: E402

LOGGING = build_logging(
    level=LOG_LEVEL,
    fmt=LOG_FORMAT,
    command=running_command(),
    command_level=COMMAND_LOG_LEVEL,
)

# --- Jobs: per-user limits, cleanup after the report ------------------------------------
# Runs a user (not a superuser) may start per rolling hour / have queued or running at
# once, counted in the database (so across web nodes); 0 = unlimited. Over a limit the
# API answers 429 RATE_LIMITED with Retry-After; a schedule's firing is skipped and
# recorded.
MAX_EXECUTIONS_PER_HOUR = env.int("MAX_EXECUTIONS_PER_HOUR", default=0)
MAX_CONCURRENT_EXECUTIONS = env.int("MAX_CONCURRENT_EXECUTIONS", default=0)
# Delete a run's files once the mail queue marked its report sent (a report that
# failed for good keeps them).
CLEANUP_FILES_AFTER_EMAIL = env.bool("CLEANUP_FILES_AFTER_EMAIL", default=False)

# --- App settings (one module per app) -----------------------------------------------
from .audit import *  # noqa: E402,F401,F403
from .mailqueue import *  # noqa: E402,F401,F403
from .runner import *  # noqa: E402,F401,F403
from .scripts import *  # noqa: E402,F401,F403
from .storage import *  # noqa: E402,F401,F403

# Fernet keys for secrets and SMTP passwords at rest, newest first (vault/crypto.py).
SECRETS_KEYS = env.list("SECRETS_KEYS", default=[])

"""Test settings: the base settings with django-q2 in sync mode and fast hashing.

``DATABASE_URL`` / ``REDIS_URL`` still choose PostgreSQL and Redis, so the same suite
runs on both (see .ci/run). Anything a test writes goes under a throw-away DATA_DIR.
"""

import atexit
import os
import shutil
import tempfile

# One throw-away data folder per test process, set before the base settings read it,
# so that every path derived from DATA_DIR (files, environments, static) lands there.
# Subprocesses the tests start inherit it; it is removed when the process exits.
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="scriptorium-test-")
atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)

from .base import *  # noqa: E402,F401,F403
from .base import CACHES, DATA_DIR, MEDIA_ROOT, Q_CLUSTER, REDIS_URL, REST_FRAMEWORK  # noqa: E402

# A connection per request and per run thread, closed after it (as before persistent
# connections): PostgreSQL drops the test database only when no thread holds one.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: runs started in a thread (sync API) need a second connection.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405

DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

(DATA_DIR / "static").mkdir(exist_ok=True)
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Tasks run inline; the names are unique per process so that Redis keys never collide.
_unique = f"test-{os.getpid()}"
Q_CLUSTER = {**Q_CLUSTER, "sync": True, "name": f"scriptorium-{_unique}"}
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": f"scriptorium-{_unique}"}}
if not REDIS_URL:
    CACHES["default"]["LOCATION"] = _unique

REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"login": "5/min", "register": "5/min"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}

"""Production settings: the base settings, hardened, refusing unsafe values.

Start with ``DJANGO_SETTINGS_MODULE=config.settings.production``. The process stops
with ImproperlyConfigured when SECRET_KEY is the development key (or short), DEBUG
is on, or ALLOWED_HOSTS is empty.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import ALLOWED_HOSTS, DEBUG, LOGGING, SECRET_KEY  # noqa: F401
from .env import DEFAULT_SECRET_KEY, env

problems = []
if DEBUG:
    problems.append("DEBUG must be off in production (set DEBUG=false).")
if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50:
    problems.append("SECRET_KEY must be set to a random value of at least 50 characters.")
if (
    not ALLOWED_HOSTS
    or ALLOWED_HOSTS == ["localhost", "127.0.0.1", "[::1]"]
    and not env("ALLOWED_HOSTS", default="")
):
    problems.append("ALLOWED_HOSTS must name the host(s) this site is served as.")
if problems:
    raise ImproperlyConfigured("Unsafe production settings: " + " ".join(problems))

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

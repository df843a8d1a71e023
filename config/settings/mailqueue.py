"""Settings of the mail queue (mailqueue app)."""

from .env import env

MAILQUEUE_ENCRYPTION_KEY = env("MAILQUEUE_ENCRYPTION_KEY", default="")

"""Settings of the mail queue (mailqueue app). See docs/mailqueue.md."""

from .env import DATA_DIR, env

# Project mail goes through the queue: Django's send_mail/EmailMessage become rows of
# Digital_Emaildetails, sent by the processor (the only code that talks SMTP).
EMAIL_BACKEND = env("EMAIL_BACKEND", default="mailqueue.backends.QueuedEmailBackend")
# Where rows go when they name no parameter set and no active set exists (a fresh trial).
MAILQUEUE_FALLBACK_BACKEND = env(
    "MAILQUEUE_FALLBACK_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
# Fernet key(s), comma-separated (the first encrypts; all decrypt: key rotation).
MAILQUEUE_ENCRYPTION_KEY = env("MAILQUEUE_ENCRYPTION_KEY", default="")
# ParamCode used for rows without dd_EmailParamCode (empty: first active set by ParamCode).
MAILQUEUE_DEFAULT_PARAM_CODE = env("MAILQUEUE_DEFAULT_PARAM_CODE", default="")
MAILQUEUE_SMTP_TIMEOUT = env.float("MAILQUEUE_SMTP_TIMEOUT", default=30.0)
MAILQUEUE_BATCH_SIZE = env.int("MAILQUEUE_BATCH_SIZE", default=200)
MAILQUEUE_MAX_RETRIES = env.int("MAILQUEUE_MAX_RETRIES", default=5)
# Transient failures wait BACKOFF * 2**(retries-1) seconds, at most BACKOFF_MAX.
MAILQUEUE_BACKOFF_SECONDS = env.int("MAILQUEUE_BACKOFF_SECONDS", default=60)
MAILQUEUE_BACKOFF_MAX_SECONDS = env.int("MAILQUEUE_BACKOFF_MAX_SECONDS", default=3600)
# A fresh install starts the service (the schedule is made after `migrate`).
MAILQUEUE_AUTOSTART = env.bool("MAILQUEUE_AUTOSTART", default=True)
# SQLite has no row locks: one processor at a time holds this file lock.
MAILQUEUE_LOCK_FILE = env("MAILQUEUE_LOCK_FILE", default=str(DATA_DIR / "mailqueue.lock"))
# Rows claimed (locked) and sent per transaction. A processor killed mid-way may send
# up to this many rows again (at-least-once); larger is faster.
MAILQUEUE_CLAIM_SIZE = env.int("MAILQUEUE_CLAIM_SIZE", default=50)

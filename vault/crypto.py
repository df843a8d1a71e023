"""Encryption at rest for secret values (and the mail queue's SMTP passwords).

Keys come from ``SECRETS_KEYS`` (comma-separated Fernet keys, newest first). Every
key decrypts; the first encrypts. Rotation: put a new key first, run
``manage.py rotate_secrets`` (re-encrypts every stored value with it), then drop the
old key. Without SECRETS_KEYS a key is derived from SECRET_KEY (development only:
``check --deploy`` warns)."""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

PREFIX = "fernet:"  # marks an encrypted value (a legacy plain value has none)


class DecryptionFailed(Exception):
    """A stored value was encrypted with a key that is no longer configured."""


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(b"scriptorium-secrets:" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _current() -> MultiFernet:
    keys = tuple(k.strip() for k in settings.SECRETS_KEYS if k.strip())
    return _fernet(keys, settings.SECRET_KEY)


def encrypt(value: str) -> str:
    """The stored form of ``value``: ``fernet:<token>`` under the newest key."""
    return PREFIX + _current().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    """The plain value of a stored form (a value without the prefix is returned as it
    is: a legacy plain-text SMTP password). Raises DecryptionFailed when no configured
    key opens it."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _current().decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed("no configured SECRETS_KEYS key opens this value") from exc


def rotate(stored: str) -> str:
    """``stored`` re-encrypted under the newest key (plain values get encrypted)."""
    if not stored.startswith(PREFIX):
        return encrypt(stored)
    try:
        token = _current().rotate(stored[len(PREFIX) :].encode("ascii"))
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed("no configured SECRETS_KEYS key opens this value") from exc
    return PREFIX + token.decode("ascii")

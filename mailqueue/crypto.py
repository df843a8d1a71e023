"""SMTP passwords at rest: encrypted like every other secret (``vault.crypto``: Fernet
with SECRETS_KEYS, ``fernet:`` prefix), whatever the configuration.

Values written elsewhere keep working: a plain value (the legacy service's) is used
as it is, and a bare Fernet token made with a key of the older
MAILQUEUE_ENCRYPTION_KEY setting is still opened with that key. ``manage.py
rotate_secrets`` re-encrypts both kinds under the newest SECRETS_KEYS key.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from vault import crypto

# A stored token of a password of this many characters still fits SMTPPassword (255).
MAX_PASSWORD_LENGTH = 100


def _legacy_fernet() -> MultiFernet | None:
    keys = [k.strip() for k in (settings.MAILQUEUE_ENCRYPTION_KEY or "").split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None


def encrypt_password(plain: str) -> str:
    """The value to store for ``plain`` (empty stays empty)."""
    return crypto.encrypt(plain) if plain else plain


def decrypt_password(stored: str | None) -> str:
    """The password to log in with. Raises vault.crypto.DecryptionFailed when it was
    encrypted with a key this server no longer has."""
    if not stored:
        return ""
    if stored.startswith(crypto.PREFIX):
        return crypto.decrypt(stored)
    legacy = _legacy_fernet()
    if legacy is not None:
        try:
            return legacy.decrypt(stored.encode()).decode()
        except (InvalidToken, ValueError):
            pass
    return stored


def rotate_password(stored: str | None) -> str | None:
    """``stored`` encrypted under the newest SECRETS_KEYS key (None and '' unchanged)."""
    if not stored:
        return stored
    return crypto.encrypt(decrypt_password(stored))

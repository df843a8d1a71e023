"""SMTP passwords at rest: Fernet-encrypted when MAILQUEUE_ENCRYPTION_KEY is set.

Plain values (written by the legacy service or other systems) keep working: a value
that is not a token of one of our keys is used as it is.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# A Fernet token of a password of this many characters still fits SMTPPassword (255).
MAX_PASSWORD_LENGTH = 100


def _fernet() -> MultiFernet | None:
    keys = [k.strip() for k in (settings.MAILQUEUE_ENCRYPTION_KEY or "").split(",") if k.strip()]
    if not keys:
        return None
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt_password(plain: str) -> str:
    """The value to store: a Fernet token with a key set, else ``plain`` unchanged."""
    fernet = _fernet()
    if fernet is None or not plain:
        return plain
    return fernet.encrypt(plain.encode()).decode()


def decrypt_password(stored: str | None) -> str:
    """The password to log in with: decrypted when ``stored`` is one of our tokens,
    else ``stored`` as it is (a plain legacy value)."""
    if not stored:
        return ""
    fernet = _fernet()
    if fernet is None:
        return stored
    try:
        return fernet.decrypt(stored.encode()).decode()
    except (InvalidToken, ValueError):
        return stored

"""System checks of the vault app."""

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security, deploy=True)
def check_secrets_keys(app_configs, **kwargs):
    """In production, secrets are encrypted with their own keys (SECRETS_KEYS), not a
    key derived from SECRET_KEY (which would make them unreadable when it changes)."""
    keys = [k for k in settings.SECRETS_KEYS if k.strip()]
    if not keys:
        return [
            Warning(
                "SECRETS_KEYS is not set: secrets and SMTP passwords are encrypted with a key "
                "derived from SECRET_KEY.",
                hint="Set SECRETS_KEYS to a Fernet key: python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'",
                id="vault.W001",
            )
        ]
    from cryptography.fernet import Fernet

    for key in keys:
        try:
            Fernet(key.strip().encode())
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured("SECRETS_KEYS holds a value that is no Fernet key") from exc
    return []

from django.apps import AppConfig


class VaultConfig(AppConfig):
    """Secrets for runs: named, owned, shareable with groups, encrypted at rest."""

    name = "vault"
    verbose_name = "Secrets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401 - registers the system checks

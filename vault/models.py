"""A named secret a run gets as an environment variable."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"


class Secret(models.Model):
    """Owned by a user, optionally shared with groups; ``value_encrypted`` holds the
    value encrypted at rest (``vault.crypto``) and is never shown after saving."""

    name = models.CharField(max_length=64, help_text="The environment variable name.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secrets"
    )
    groups = models.ManyToManyField(
        Group, blank=True, related_name="secrets", help_text="Members may use it in runs."
    )
    description = models.CharField(max_length=200, blank=True)
    value_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="secret_owner_name_unique"),
            models.CheckConstraint(
                condition=models.Q(name__regex=NAME_PATTERN), name="secret_name_is_env_name"
            ),
            models.CheckConstraint(
                condition=models.Q(value_encrypted__startswith="fernet:"),
                name="secret_value_is_encrypted",
            ),
        ]

    def __str__(self) -> str:
        return self.name

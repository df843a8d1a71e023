"""Users, invitations and API keys."""

import hashlib

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


class User(AbstractUser):
    """A person who signs in. The e-mail is required and unique (case-insensitive)."""

    email = models.EmailField("e-mail address", unique=True)

    REQUIRED_FIELDS = ["email"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]


class InvitationQuerySet(models.QuerySet):
    def pending(self):
        """Invitations that can still be used."""
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )


class Invitation(models.Model):
    """A one-time link that lets one person create an account. Only the sha256 of the
    token is kept: the token itself exists only in the e-mail."""

    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_staff = models.BooleanField(default=False, help_text="The new account is staff.")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitations_sent",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitation",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["email"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="accounts_invitation_expires_after_created",
            )
        ]

    def __str__(self) -> str:
        return f"Invitation for {self.email} ({self.status})"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def status(self) -> str:
        """pending, accepted, revoked or expired."""
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class UserAPIKeyManager(BaseAPIKeyManager):
    """The library's manager, with an integer primary key: the key is generated, only
    its prefix and hash are kept."""

    def assign_key(self, obj: "UserAPIKey") -> str:
        key, prefix, hashed_key = self.key_generator.generate()
        obj.prefix = prefix
        obj.hashed_key = hashed_key
        return key


class UserAPIKey(AbstractAPIKey):
    """A named key a program sends as ``Authorization: Api-Key <key>`` to act as its
    user. Only the key's prefix and sha512 hash are stored (djangorestframework-api-key);
    the key itself is shown once, when it is made. A revoked key stays revoked."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = UserAPIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        abstract = False
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["user", "-created"])]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(name=""), name="accounts_userapikey_name_not_empty"
            ),
        ]

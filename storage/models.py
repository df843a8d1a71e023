"""Files kept in the project's storage (local disk or S3): one row per object."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class StoredFile(models.Model):
    """An object in storage under ``key``. The row and the object live and die
    together (see storage.services); ``execution`` is the run that produced it."""

    key = models.CharField(max_length=1024, unique=True)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    sha256 = models.CharField(max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="files",
    )
    execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="files",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["created_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(size__gte=0), name="storage_file_size_gte_0"),
        ]

    def __str__(self) -> str:
        return self.key


class PendingDeletion(models.Model):
    """An object whose row is gone but whose deletion from storage has not been confirmed.
    Written in the same transaction that deletes the StoredFile row; removed once the
    object is deleted (right after commit, or later by storage_cleanup, which retries)."""

    key = models.CharField(max_length=1024, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.key

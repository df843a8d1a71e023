"""The audit trail: one append-only row per thing somebody did."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditImmutableError(Exception):
    """An audit event was about to be changed or deleted through the ORM."""


class AuditEventQuerySet(models.QuerySet):
    """Events can be added and read; ``update()`` and ``delete()`` refuse. Retention
    goes through :meth:`prune_before`, the one deleting path."""

    def update(self, **kwargs):
        raise AuditImmutableError("Audit events cannot be changed.")

    def delete(self):
        raise AuditImmutableError("Audit events cannot be deleted (see prune_audit).")

    def prune_before(self, cutoff) -> int:
        """Delete the events made before ``cutoff``; returns how many (retention)."""
        deleted, _ = models.QuerySet.delete(self.filter(created_at__lt=cutoff))
        return deleted


class AuditEvent(models.Model):
    """Who (``actor``, and ``actor_repr`` which survives the user's deletion) did what
    (``action``, a dotted code such as ``script.uploaded``) to what (``target_*``),
    when and from where. ``details`` never holds secret values, passwords or keys.
    Rows are written once: saving an existing row or deleting one raises."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    actor_repr = models.CharField(max_length=150, blank=True, editable=False)
    action = models.CharField(max_length=64, editable=False)
    target_type = models.CharField(max_length=100, blank=True, editable=False)
    target_id = models.CharField(max_length=64, blank=True, editable=False)
    target_repr = models.CharField(max_length=255, blank=True, editable=False)
    details = models.JSONField(default=dict, blank=True, editable=False)
    ip = models.GenericIPAddressField(null=True, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit event"
        indexes = [
            models.Index(fields=["action", "-created_at"], name="audit_action_created"),
            models.Index(fields=["actor", "-created_at"], name="audit_actor_created"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(action=""), name="audit_action_not_empty"),
        ]

    def __str__(self) -> str:
        who = self.actor_repr or "system"
        what = f" {self.target_type} {self.target_repr}".rstrip() if self.target_type else ""
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who}: {self.action}{what}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditImmutableError("Audit events cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutableError("Audit events cannot be deleted (see prune_audit).")

"""Reading the audit trail."""

from datetime import datetime

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_event_list(
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> QuerySet[AuditEvent]:
    """Events, newest first, filtered. ``action`` matches exactly, or a family with a
    trailing dot or star (``script.`` / ``script.*``); ``actor`` is a user id or a
    username (also matches events of since-deleted users by name)."""
    events = AuditEvent.objects.all()
    if action:
        family = action.rstrip("*")
        if family.endswith("."):
            events = events.filter(action__startswith=family)
        else:
            events = events.filter(action=action)
    if actor:
        if actor.isdigit():
            events = events.filter(actor_id=int(actor))
        else:
            events = events.filter(actor_repr=actor)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    if target_type:
        events = events.filter(target_type=target_type)
    if target_id:
        events = events.filter(target_id=target_id)
    return events

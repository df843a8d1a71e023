"""django-q2 entry points of the audit app (thin)."""

RETENTION_SCHEDULE = "audit: delete events past AUDIT_RETENTION_DAYS"


def prune_audit_events() -> int:
    """The daily retention task; does nothing while AUDIT_RETENTION_DAYS=0."""
    from audit.services import audit_prune

    return audit_prune()


def register() -> None:
    """Called once from AuditConfig.ready(): the daily schedule exists after migrate."""
    from config.registry import register_schedule

    register_schedule(
        "audit", name=RETENTION_SCHEDULE, func="audit.tasks.prune_audit_events", daily=True
    )

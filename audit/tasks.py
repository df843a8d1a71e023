"""django-q2 entry points of the audit app (thin)."""

from django.db.models.signals import post_migrate

RETENTION_SCHEDULE = "audit: delete events past AUDIT_RETENTION_DAYS"


def prune_audit_events() -> int:
    """The daily retention task; does nothing while AUDIT_RETENTION_DAYS=0."""
    from audit.services import audit_prune

    return audit_prune()


def _ensure_schedule(sender, app_config=None, using="default", **kwargs) -> None:
    if getattr(app_config, "label", None) != "audit":
        return
    from django_q.models import Schedule

    Schedule.objects.using(using).get_or_create(
        name=RETENTION_SCHEDULE,
        defaults={
            "func": "audit.tasks.prune_audit_events",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
    )


def register() -> None:
    """Called once from AuditConfig.ready(): the daily schedule exists after migrate."""
    post_migrate.connect(_ensure_schedule, dispatch_uid="audit_retention_schedule")

"""What the storage app plugs into the project: the admin-index usage panel and the
django-q2 schedule of storage_cleanup (created idempotently after migrate)."""

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from config.registry import register_admin_panel, register_after_migrate

SCHEDULE_NAME = "storage_cleanup"


def usage_panel(request) -> dict | None:
    """Storage usage on the admin index: totals, and how much of it runs produced."""
    if not request.user.is_staff:
        return None
    from storage.selectors import storage_usage

    usage = storage_usage()
    share = f" ({usage['run_bytes'] * 100 // usage['bytes']}%)" if usage["bytes"] else ""
    return {
        "title": "File storage",
        "rows": [
            ("Backend", settings.STORAGE_BACKEND),
            ("Files", f"{usage['files']} ({filesizeformat(usage['bytes'])})"),
            (
                "Produced by runs",
                f"{usage['run_files']} files, {filesizeformat(usage['run_bytes'])}{share}",
            ),
            (
                "Uploaded",
                f"{usage['uploaded_files']} files, {filesizeformat(usage['uploaded_bytes'])}",
            ),
        ],
    }


def ensure_cleanup_schedule(*, using: str = "default") -> None:
    """Create or update the hourly (STORAGE_CLEANUP_MINUTES) storage_cleanup schedule;
    with 0 minutes, remove it. Safe to run any number of times."""
    from django_q.models import Schedule

    minutes = settings.STORAGE_CLEANUP_MINUTES
    if minutes <= 0:
        Schedule.objects.using(using).filter(name=SCHEDULE_NAME).delete()
        return
    Schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "storage.tasks.storage_cleanup_task",
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )


def register() -> None:
    """Called once from StorageConfig.ready()."""
    register_admin_panel("storage")(usage_panel)
    register_after_migrate("storage")(lambda using: ensure_cleanup_schedule(using=using))

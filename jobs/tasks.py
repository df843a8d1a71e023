"""django-q2 entry points of the jobs app (thin: ids in, services called)."""

from datetime import datetime

from jobs import services


def fire_schedule(schedule_id: int, due: str | None = None) -> str | None:
    """What a schedule's django-q2 Schedule calls at each due time (``due``: the due
    time django-q2 passes as ``intended_date_kwarg``). Returns the firing's outcome,
    or None when another cluster fired it or the schedule is disabled or gone."""
    firing = services.schedule_fire(
        schedule_id=int(schedule_id), due=datetime.fromisoformat(due) if due else None
    )
    return firing.outcome if firing else None


def cleanup_reported_files() -> int:
    """Remove the files of runs whose report was sent (CLEANUP_FILES_AFTER_EMAIL)."""
    from django.conf import settings

    if not settings.CLEANUP_FILES_AFTER_EMAIL:
        return 0
    return services.report_cleanups_process()

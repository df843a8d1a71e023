"""Queries of the executions app."""

from django.db.models import QuerySet

from accounts.permissions import user_is_active, user_is_staff
from config.errors import NotFoundError
from executions.models import Execution


def executions_for_user(
    *,
    user,
    status: str | None = None,
    script: str | None = None,
    source: str | None = None,
    schedule: str | int | None = None,
) -> QuerySet:
    """Runs the user may see (their own; staff: all; inactive or anonymous users:
    none), newest first, ready to list; filtered by status, script, source (who
    started them) and schedule (the schedule id that fired them)."""
    qs = Execution.objects.select_related("requested_by").prefetch_related("artifacts__stored_file")
    if not user_is_active(user):
        return qs.none()
    if not user_is_staff(user):
        qs = qs.filter(requested_by=user)
    if status:
        qs = qs.filter(status=status)
    if script:
        qs = qs.filter(script_id=int(script)) if script.isdigit() else qs.filter(script_path=script)
    if source:
        qs = qs.filter(source=source)
    if schedule not in (None, ""):
        schedule = str(schedule)
        qs = qs.filter(schedule_id=int(schedule)) if _is_id(schedule) else qs.none()
    return qs


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 18


def script_run_count(script) -> int:
    """How many runs a script (or a queryset of scripts) has on record (registered
    with scripts.hooks, so that the library can show it without importing runs)."""
    from scripts.models import Script

    if isinstance(script, Script):
        return Execution.objects.filter(script=script).count()
    return Execution.objects.filter(script__in=script).count()


def execution_get_for_user(*, user, pk) -> Execution:
    """One run the user may see, or NotFoundError (404) — also for others' runs."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFoundError("No such run.")
    execution = executions_for_user(user=user).filter(pk=pk).first()
    if execution is None:
        raise NotFoundError("No such run.")
    return execution

"""Reads of the portal. Who may see what always comes from the apps' own rules
(``scripts.permissions.scripts_runnable_by``, ``executions_for_user``,
``execution_get_for_user``); these functions only narrow, order and group what those
return."""

from datetime import date, timedelta
from itertools import groupby

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from executions import selectors as execution_selectors
from executions.models import Artifact, Execution, ExecutionLogChunk
from scripts.models import Script
from scripts.permissions import scripts_runnable_by

LOG_PAGE_CHARS = 200_000


def runnable_scripts(*, user, search: str = "") -> QuerySet[Script]:
    """The enabled scripts with a version that ``user`` may run, matching ``search``
    (name, title, path or description), ordered by folder then name, each annotated
    with the user's last run (``last_run_id``, ``last_run_status``, ``last_run_at``)."""
    qs = (
        scripts_runnable_by(user=user)
        .filter(enabled=True, current_version__isnull=False)
        .select_related("folder", "current_version")
        .defer("current_version__source")
    )
    search = (search or "").strip()
    if search:
        qs = qs.filter(
            Q(name__icontains=search)
            | Q(display_name__icontains=search)
            | Q(logical_path__icontains=search)
            | Q(description__icontains=search)
        )
    last = Execution.objects.filter(script=OuterRef("pk"), requested_by=user).order_by(
        "-queued_at", "-id"
    )
    return qs.annotate(
        last_run_id=Subquery(last.values("id")[:1]),
        last_run_status=Subquery(last.values("status")[:1]),
        last_run_at=Subquery(last.values("queued_at")[:1]),
    ).order_by("folder__path", "logical_path")


def scripts_by_folder(scripts) -> list[tuple[str, list[Script]]]:
    """``[(folder path or "", [scripts...]), ...]`` in the order given."""
    return [
        (key, list(group))
        for key, group in groupby(scripts, key=lambda s: s.folder.path if s.folder_id else "")
    ]


def run_history(
    *,
    user,
    script: str = "",
    status: str = "",
    since: date | None = None,
    until: date | None = None,
    everyone: bool = False,
) -> QuerySet[Execution]:
    """The user's runs, newest first, filtered by script (id or path), status and the
    day they were queued (``since``/``until`` inclusive). Staff may ask for
    ``everyone``'s runs; others always get their own."""
    qs = execution_selectors.executions_for_user(
        user=user, status=status or None, script=script or None
    ).select_related("script")
    if not (everyone and user.is_staff):
        qs = qs.filter(requested_by=user)
    if since:
        qs = qs.filter(queued_at__date__gte=since)
    if until:
        qs = qs.filter(queued_at__date__lte=until)
    return qs


def history_script_choices(*, user) -> list[tuple[str, str]]:
    """(logical path, path) of the scripts the user has runs of, for the history filter."""
    paths = (
        Execution.objects.filter(requested_by=user)
        .order_by("script_path")
        .values_list("script_path", flat=True)
        .distinct()
    )
    return [(p, p) for p in paths]


def run_get(*, user, pk) -> Execution:
    """The run ``pk`` if ``user`` may see it (NotFoundError otherwise), with its script
    and version loaded."""
    execution = execution_selectors.execution_get_for_user(user=user, pk=pk)
    return (
        Execution.objects.select_related("script", "script_version", "requested_by")
        .defer("script_version__source")
        .get(pk=execution.pk)
    )


def run_files_by_category(*, execution: Execution) -> list[tuple[str, list[Artifact]]]:
    """The run's files grouped by category label, images first, names in order."""
    artifacts = sorted(
        execution.artifacts.select_related("stored_file"),
        key=lambda a: (a.category != Artifact.Category.IMAGE, a.category, a.name),
    )
    labels = dict(Artifact.Category.choices)
    return [
        (labels.get(category, category), list(group))
        for category, group in groupby(artifacts, key=lambda a: a.category)
    ]


def run_artifact_get(*, execution: Execution, name: str) -> Artifact | None:
    """The run's file called ``name`` (its path in the workspace), or None."""
    return execution.artifacts.select_related("stored_file").filter(name=name).first()


def run_log(*, execution: Execution) -> tuple[str, int, bool]:
    """(the log so far, the number of its last chunk, whether the start was cut to the
    last LOG_PAGE_CHARS characters). SSE resumes after that chunk."""
    rows = list(
        ExecutionLogChunk.objects.filter(execution=execution)
        .order_by("-seq")
        .values_list("seq", "text")
    )
    last_seq = rows[0][0] if rows else 0
    parts, size = [], 0
    for _, text in rows:
        if size >= LOG_PAGE_CHARS:
            break
        parts.append(text)
        size += len(text)
    text = "".join(reversed(parts))
    cut = size > LOG_PAGE_CHARS or len(parts) < len(rows)
    return (text[-LOG_PAGE_CHARS:] if cut else text), last_seq, cut


def run_page_data(*, execution: Execution) -> dict:
    """What the shared run templates (portal/_run_live.html, _run_outcome.html) show:
    the log so far and where SSE resumes, the files by category, the events URL."""
    log, last_seq, cut = run_log(execution=execution)
    return {
        "execution": execution,
        "log": log,
        "log_last_seq": last_seq,
        "log_cut": cut,
        "file_groups": run_files_by_category(execution=execution),
        "events_url": f"/api/v1/executions/{execution.pk}/events/",
    }


RUN_CHART_GROUPS = {
    "succeeded": [Execution.Status.SUCCEEDED],
    "failed": [
        Execution.Status.FAILED,
        Execution.Status.TIMED_OUT,
        Execution.Status.LOST,
        Execution.Status.CANCELLED,
    ],
    "running": [Execution.Status.QUEUED, Execution.Status.RUNNING],
}


def runs_per_day(*, days: int = 7) -> list[dict]:
    """``[{"day": date, "succeeded": n, "failed": n, "running": n}, ...]`` for the last
    ``days`` days (today last), by the day runs were queued (server time zone). Failed
    counts failed, timed out, lost and cancelled runs; running counts queued ones too.
    One query."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = (
        Execution.objects.filter(queued_at__date__gte=first)
        .annotate(day=TruncDate("queued_at"))
        .values("day")
        .annotate(
            **{
                name: Count("id", filter=Q(status__in=statuses))
                for name, statuses in RUN_CHART_GROUPS.items()
            }
        )
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {})
        result.append({"day": day, **{name: row.get(name, 0) for name in RUN_CHART_GROUPS}})
    return result

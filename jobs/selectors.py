"""Queries of the jobs app: what a user may see, ready to list in a fixed number of
queries."""

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.permissions import user_is_active, user_is_staff
from config.errors import NotFoundError
from jobs.models import (
    Pipeline,
    PipelineRun,
    PipelineRunStep,
    PipelineStep,
    Schedule,
    ScheduleFiring,
)

RECENT_FIRINGS = 10


def _visible(qs: QuerySet, *, user, owner_field: str) -> QuerySet:
    if not user_is_active(user):
        return qs.none()
    if not user_is_staff(user):
        qs = qs.filter(**{owner_field: user})
    return qs


def schedules_for_user(*, user) -> QuerySet[Schedule]:
    """Schedules the user may see (their own; staff: all), with their next firing,
    target and counts of skipped firings."""
    qs = (
        Schedule.objects.select_related("owner", "script", "pipeline", "q_schedule")
        .annotate(
            skipped_count=Count(
                "firings",
                filter=Q(
                    firings__outcome__in=[
                        ScheduleFiring.Outcome.SKIPPED_RUNNING,
                        ScheduleFiring.Outcome.SKIPPED_LIMIT,
                    ]
                ),
            ),
        )
        .order_by("name", "id")
    )
    return _visible(qs, user=user, owner_field="owner")


def schedule_get_for_user(*, user, pk) -> Schedule:
    """One schedule the user may see, or NotFoundError (404) — also for others'."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFoundError("No such schedule.")
    schedule = schedules_for_user(user=user).filter(pk=pk).first()
    if schedule is None:
        raise NotFoundError("No such schedule.")
    return schedule


def schedule_firings(*, schedule: Schedule, limit: int = RECENT_FIRINGS) -> list[ScheduleFiring]:
    """The schedule's latest firings, newest first."""
    return list(schedule.firings.order_by("-due_at", "-id")[:limit])


def pipelines_for_user(*, user) -> QuerySet[Pipeline]:
    """Pipelines the user may see (their own; staff: all), with their steps."""
    qs = Pipeline.objects.select_related("owner").prefetch_related(
        Prefetch("steps", queryset=PipelineStep.objects.order_by("position"))
    )
    return _visible(qs, user=user, owner_field="owner")


def pipeline_get_for_user(*, user, pk) -> Pipeline:
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFoundError("No such pipeline.")
    pipeline = pipelines_for_user(user=user).filter(pk=pk).first()
    if pipeline is None:
        raise NotFoundError("No such pipeline.")
    return pipeline


def pipeline_runs_for_user(*, user, pipeline: int | None = None) -> QuerySet[PipelineRun]:
    """Pipeline runs the user may see (those they started; staff: all), with steps."""
    qs = PipelineRun.objects.select_related("pipeline", "requested_by").prefetch_related(
        Prefetch(
            "steps",
            queryset=PipelineRunStep.objects.select_related("execution").order_by("position"),
        )
    )
    if pipeline is not None:
        qs = qs.filter(pipeline_id=pipeline)
    return _visible(qs, user=user, owner_field="requested_by")


def pipeline_run_get_for_user(*, user, pk) -> PipelineRun:
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFoundError("No such pipeline run.")
    run = pipeline_runs_for_user(user=user).filter(pk=pk).first()
    if run is None:
        raise NotFoundError("No such pipeline run.")
    return run

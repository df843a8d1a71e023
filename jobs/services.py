"""Every write and every rule of the jobs app: schedules and their firings, pipelines
and their runs, and the cleanup of a run's files once its report was sent.

Schedules: each Schedule row has a django-q2 Schedule (``q_schedule``, named
``jobs.schedule.<id>``) that calls ``jobs.tasks.fire_schedule`` with the schedule id
and the due time (django-q2's ``intended_date_kwarg``). ``schedule_fire`` claims that
due time with a conditional UPDATE of ``last_due_at``, so a due time fires once
however many clusters run the scheduler, and records the outcome as a ScheduleFiring.

Pipelines: ``pipeline_run_start`` starts the first step's run; when a step's run
reaches a final status (executions' ``execution_finished`` signal),
``pipeline_run_advance`` merges its result (a JSON object) over the step's input and
starts the next step, or ends the pipeline run.
"""

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.permissions import user_is_active, user_owns_or_is_staff
from config.errors import ApplicationError, ConflictError, PermissionDeniedError
from config.logging import get_logger
from executions import services as execution_services
from executions.models import Execution
from jobs.models import (
    Pipeline,
    PipelineRun,
    PipelineRunStep,
    PipelineStep,
    ReportCleanup,
    Schedule,
    ScheduleFiring,
)
from scripts import selectors as script_selectors

logger = get_logger("scriptorium.jobs")

FIRE_TASK = "jobs.tasks.fire_schedule"
EVERY_MINUTES_MAX = 60 * 24 * 366
PIPELINE_STEPS_MAX = 50
EMAIL_TO_MAX = execution_services.EMAIL_TO_MAX
RATE_LIMITED = "RATE_LIMITED"
ACTIVE = (Execution.Status.QUEUED, Execution.Status.RUNNING)


def q_schedule_name(schedule_id: int) -> str:
    """The name of the django-q2 Schedule behind a schedule."""
    return f"jobs.schedule.{schedule_id}"


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError("VALIDATION_ERROR", message, {field: [message]})


# --- Schedules ------------------------------------------------------------------------


def _clean_timing(*, cron: str | None, every_minutes: int | None) -> tuple[str, int | None]:
    """Exactly one of a valid 5-field cron expression and a number of minutes."""
    from croniter import croniter

    cron = (cron or "").strip()
    if bool(cron) == (every_minutes is not None):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "Give either cron or every_minutes.",
            {"cron": ["Either cron or every_minutes."]},
        )
    if cron:
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise _invalid("cron", "Not a valid cron expression (5 fields: m h dom mon dow).")
        return cron, None
    if isinstance(every_minutes, bool) or not isinstance(every_minutes, int):
        raise _invalid("every_minutes", "every_minutes must be a whole number.")
    if not 1 <= every_minutes <= EVERY_MINUTES_MAX:
        raise _invalid("every_minutes", f"every_minutes must be 1 to {EVERY_MINUTES_MAX}.")
    return "", every_minutes


def _clean_email_to(email_to) -> list[str]:
    if email_to in (None, "", []):
        return []
    if isinstance(email_to, str):
        email_to = [e for e in email_to.replace(";", ",").split(",") if e.strip()]
    if not isinstance(email_to, list) or not all(isinstance(e, str) for e in email_to):
        raise _invalid("email_to", "email_to must be a list of addresses.")
    if len(email_to) > EMAIL_TO_MAX:
        raise _invalid("email_to", f"At most {EMAIL_TO_MAX} addresses.")
    cleaned = []
    for address in email_to:
        try:
            validate_email(address.strip())
        except Exception:
            raise _invalid("email_to", f"Not a valid e-mail address: {address!r}")
        cleaned.append(address.strip())
    return cleaned


def _has_nul(value) -> bool:
    """Whether a JSON value holds a NUL character anywhere (PostgreSQL refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _clean_inputs(*, data, args) -> tuple[dict, list[str] | None]:
    """Fixed inputs: a JSON object (and argv strings), no larger than a run takes. The
    script checks them at each firing."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise _invalid("data", "data must be a JSON object.")
    if args is not None and (
        not isinstance(args, list) or not all(isinstance(a, str) for a in args)
    ):
        raise _invalid("args", "args must be a list of strings.")
    for field, value in (("data", data), ("args", args)):
        if _has_nul(value):
            raise _invalid(field, "A NUL character is not allowed.")
        if len(json.dumps(value)) > settings.RUN_INPUT_MAX_BYTES:
            raise _invalid(field, f"At most {settings.RUN_INPUT_MAX_BYTES} bytes of JSON.")
    return data, args


def _pipeline_for(*, user, ref) -> Pipeline:
    """A pipeline the user may use (its owner or staff): an id, or its name."""
    pipeline = None
    if isinstance(ref, Pipeline):
        pipeline = ref
    elif isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        pipeline = Pipeline.objects.filter(pk=int(ref)).first()
    elif isinstance(ref, str):
        pipeline = Pipeline.objects.filter(owner=user, name=ref).first()
    if pipeline is None or not user_owns_or_is_staff(user, pipeline.owner_id):
        raise ApplicationError(
            "VALIDATION_ERROR", "No such pipeline.", {"pipeline": ["No such pipeline."]}
        )
    return pipeline


def _resolve_target(*, user, script_ref, pipeline_ref):
    if (script_ref in (None, "")) == (pipeline_ref in (None, "")):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "A schedule runs either a script or a pipeline.",
            {"script": ["Give either script or pipeline."]},
        )
    if script_ref not in (None, ""):
        try:
            return script_selectors.script_get_for_run(user=user, ref=script_ref), None
        except ApplicationError as exc:
            raise ApplicationError(
                "VALIDATION_ERROR", exc.message, {"script": [exc.message]}
            ) from exc
    return None, _pipeline_for(user=user, ref=pipeline_ref)


def _first_run_after(*, cron: str, every_minutes: int | None, now: datetime) -> datetime:
    if cron:
        from croniter import croniter

        return croniter(cron, timezone.localtime(now)).get_next(datetime)
    return now + timedelta(minutes=every_minutes)


def schedule_sync(*, schedule: Schedule) -> None:
    """Make the django-q2 Schedule match the row: present (with the timing and a next
    run) while enabled, absent while disabled. A timing change starts counting anew."""
    from django_q.models import Schedule as QSchedule

    name = q_schedule_name(schedule.pk)
    if not schedule.enabled:
        QSchedule.objects.filter(name=name).delete()
        return
    fields = {
        "func": FIRE_TASK,
        "args": repr(schedule.pk),
        "intended_date_kwarg": "due",
        "repeats": -1,
        "schedule_type": QSchedule.CRON if schedule.cron else QSchedule.MINUTES,
        "cron": schedule.cron or None,
        "minutes": schedule.every_minutes,
    }
    q = QSchedule.objects.filter(name=name).first()
    if q is None or any(getattr(q, k) != v for k, v in fields.items()):
        next_run = _first_run_after(
            cron=schedule.cron, every_minutes=schedule.every_minutes, now=timezone.now()
        )
        if q is None:
            q = QSchedule.objects.create(name=name, next_run=next_run, **fields)
        else:
            for key, value in fields.items():
                setattr(q, key, value)
            q.next_run = next_run
            q.save()
    if schedule.q_schedule_id != q.pk:
        Schedule.objects.filter(pk=schedule.pk).update(q_schedule=q)
        schedule.q_schedule = q


def schedule_create(
    *,
    user,
    script_ref: int | str | None = None,
    pipeline_ref: int | str | None = None,
    name: str = "",
    data: dict | None = None,
    args: list[str] | None = None,
    cron: str | None = None,
    every_minutes: int | None = None,
    enabled: bool = True,
    email_to: list[str] | str | None = None,
) -> Schedule:
    """A schedule owned by ``user`` that runs a script they may run (id or logical
    path) or a pipeline of theirs, with fixed inputs, on ``cron`` or every
    ``every_minutes``. Its runs get the owner's permissions. VALIDATION_ERROR (400)
    with field details otherwise; inputs are checked against the script at each firing
    (a failure is recorded on the firing)."""
    if not user_is_active(user):
        raise PermissionDeniedError("Only active users may schedule runs.")
    script, pipeline = _resolve_target(user=user, script_ref=script_ref, pipeline_ref=pipeline_ref)
    cron, every_minutes = _clean_timing(cron=cron, every_minutes=every_minutes)
    data, args = _clean_inputs(data=data, args=args)
    with transaction.atomic():
        schedule = Schedule.objects.create(
            name=(name or "").strip()[:200],
            owner=user,
            script=script,
            pipeline=pipeline,
            data=data,
            args=args,
            cron=cron,
            every_minutes=every_minutes,
            enabled=bool(enabled),
            email_to=_clean_email_to(email_to),
        )
        schedule_sync(schedule=schedule)
    return schedule


UNSET: Any = object()


def schedule_update(
    *,
    user,
    schedule: Schedule,
    name: str = UNSET,
    script_ref: int | str | None = UNSET,
    pipeline_ref: int | str | None = UNSET,
    data: dict | None = UNSET,
    args: list[str] | None = UNSET,
    cron: str | None = UNSET,
    every_minutes: int | None = UNSET,
    enabled: bool = UNSET,
    email_to: list[str] | str | None = UNSET,
) -> Schedule:
    """Change what is given (its owner or staff). Giving ``cron`` clears
    ``every_minutes`` and the other way round; giving ``script`` clears ``pipeline``
    and the other way round. Disabling removes the django-q2 schedule (no firing);
    enabling brings it back."""
    if not user_owns_or_is_staff(user, schedule.owner_id):
        raise PermissionDeniedError("Only the schedule's owner, or staff, may change it.")
    owner = schedule.owner
    if script_ref is not UNSET or pipeline_ref is not UNSET:
        script_ref = None if script_ref is UNSET else script_ref
        pipeline_ref = None if pipeline_ref is UNSET else pipeline_ref
        schedule.script, schedule.pipeline = _resolve_target(
            user=owner, script_ref=script_ref, pipeline_ref=pipeline_ref
        )
    if cron is not UNSET or every_minutes is not UNSET:
        if cron is UNSET:
            cron = None
        if every_minutes is UNSET:
            every_minutes = None
        schedule.cron, schedule.every_minutes = _clean_timing(
            cron=cron, every_minutes=every_minutes
        )
    if data is not UNSET or args is not UNSET:
        schedule.data, schedule.args = _clean_inputs(
            data=schedule.data if data is UNSET else data,
            args=schedule.args if args is UNSET else args,
        )
    if name is not UNSET:
        schedule.name = (name or "").strip()[:200]
    if enabled is not UNSET:
        schedule.enabled = bool(enabled)
    if email_to is not UNSET:
        schedule.email_to = _clean_email_to(email_to)
    with transaction.atomic():
        schedule.save()
        schedule_sync(schedule=schedule)
    return schedule


def schedule_delete(*, user, schedule: Schedule) -> None:
    """Delete the schedule and its django-q2 schedule; its runs are kept (they keep
    the schedule's id)."""
    if not user_owns_or_is_staff(user, schedule.owner_id):
        raise PermissionDeniedError("Only the schedule's owner, or staff, may delete it.")
    schedule.delete()  # jobs.signals removes the django-q2 schedule


def _schedule_busy(schedule: Schedule) -> bool:
    """Whether the schedule's previous run (or pipeline run) has not finished yet."""
    if Execution.objects.filter(schedule_id=schedule.pk, status__in=ACTIVE).exists():
        return True
    return PipelineRun.objects.filter(
        schedule_id=schedule.pk, status=PipelineRun.Status.RUNNING
    ).exists()


def schedule_fire(*, schedule_id: int, due: datetime | None = None) -> ScheduleFiring | None:
    """Fire the schedule for the due time ``due`` (default: now). Returns the recorded
    firing, or None when there is nothing to do: the schedule is gone or disabled, or
    this due time (or a later one) was already claimed (another cluster fired it).

    The outcome is recorded: ``started`` (with the run), ``skipped_running`` (its
    previous run has not finished), ``skipped_limit`` (the owner is over
    MAX_EXECUTIONS_PER_HOUR / MAX_CONCURRENT_EXECUTIONS) or ``failed`` (the reason)."""
    due = due or timezone.now()
    with transaction.atomic():
        claimed = (
            Schedule.objects.filter(pk=schedule_id, enabled=True)
            .filter(Q(last_due_at__isnull=True) | Q(last_due_at__lt=due))
            .update(last_due_at=due)
        )
        if not claimed:
            logger.info("schedule firing not claimed", schedule_id=schedule_id, due=str(due))
            return None
        schedule = Schedule.objects.select_related("owner", "pipeline").get(pk=schedule_id)
        outcome = ScheduleFiring.Outcome.STARTED
        execution = pipeline_run = None
        code = message = ""
        if _schedule_busy(schedule):
            outcome = ScheduleFiring.Outcome.SKIPPED_RUNNING
            message = "The previous run of this schedule is still running."
        else:
            try:
                with transaction.atomic():  # a refused start leaves nothing behind
                    execution, pipeline_run = _schedule_start(schedule)
            except ApplicationError as exc:
                code, message = exc.code, exc.message
                outcome = (
                    ScheduleFiring.Outcome.SKIPPED_LIMIT
                    if exc.code == RATE_LIMITED
                    else ScheduleFiring.Outcome.FAILED
                )
        firing = ScheduleFiring.objects.create(
            schedule=schedule,
            due_at=due,
            outcome=outcome,
            execution=execution,
            pipeline_run=pipeline_run,
            error_code=code,
            message=message[:5000],
        )
        last = {"last_fired_at": firing.fired_at, "last_outcome": outcome}
        if execution or pipeline_run:
            last.update(last_execution=execution, last_pipeline_run=pipeline_run)
        Schedule.objects.filter(pk=schedule.pk).update(**last)
    logger.info("schedule fired", schedule_id=schedule_id, outcome=outcome, error_code=code)
    return firing


def _schedule_start(schedule: Schedule) -> tuple[Execution | None, PipelineRun | None]:
    if schedule.pipeline_id:
        run = pipeline_run_start(
            user=schedule.owner,
            pipeline=schedule.pipeline,
            data=schedule.data,
            source="schedule",
            schedule_id=schedule.pk,
            email_to=schedule.email_to,
        )
        return None, run
    execution = execution_services.execution_start(
        user=schedule.owner,
        script_ref=schedule.script_id,
        inputs=schedule.data,
        args=schedule.args,
        email_to=schedule.email_to,
        source=Execution.Source.SCHEDULE,
        schedule_id=schedule.pk,
    )
    return execution, None


# --- Pipelines ------------------------------------------------------------------------


def pipeline_create(*, user, name: str, steps: list, description: str = "") -> Pipeline:
    """A pipeline owned by ``user``: ``steps`` in order, each ``{"script": id or
    logical path}`` (or just the id or path), each a script the user may run.
    PIPELINE_EXISTS (409) when the user has a pipeline of that name."""
    if not user_is_active(user):
        raise PermissionDeniedError("Only active users may create pipelines.")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise _invalid("name", "A name of 1 to 200 characters is required.")
    if not isinstance(steps, list) or not 1 <= len(steps) <= PIPELINE_STEPS_MAX:
        raise _invalid("steps", f"A pipeline has 1 to {PIPELINE_STEPS_MAX} steps.")
    scripts = []
    for index, step in enumerate(steps):
        ref = step.get("script") if isinstance(step, dict) else step
        if isinstance(ref, bool) or not isinstance(ref, int | str) or ref in ("", None):
            raise ApplicationError(
                "VALIDATION_ERROR",
                "Each step names a script.",
                {f"steps/{index}/script": ["A script id or logical path."]},
            )
        try:
            scripts.append(script_selectors.script_get_for_run(user=user, ref=ref))
        except ApplicationError as exc:
            raise ApplicationError(
                "VALIDATION_ERROR", exc.message, {f"steps/{index}/script": [exc.message]}
            ) from exc
    try:
        with transaction.atomic():
            pipeline = Pipeline.objects.create(
                name=name, owner=user, description=(description or "").strip()
            )
            PipelineStep.objects.bulk_create(
                PipelineStep(
                    pipeline=pipeline,
                    position=position,
                    script=script,
                    script_path=script.logical_path,
                )
                for position, script in enumerate(scripts, start=1)
            )
    except IntegrityError:
        raise ConflictError("PIPELINE_EXISTS", f"You already have a pipeline named {name!r}.")
    return pipeline


def pipeline_delete(*, user, pipeline: Pipeline) -> None:
    """Delete a pipeline (its owner or staff) with its runs' records; the steps' runs
    themselves are kept. Schedules that run it go with it."""
    if not user_owns_or_is_staff(user, pipeline.owner_id):
        raise PermissionDeniedError("Only the pipeline's owner, or staff, may delete it.")
    pipeline.delete()


def pipeline_run_start(
    *,
    user,
    pipeline: Pipeline,
    data: dict | None = None,
    source: str = "api",
    schedule_id: int | None = None,
    email_to: list[str] | None = None,
) -> PipelineRun:
    """Start a run of the pipeline (its owner or staff) with ``data`` as the first
    step's input; the steps run as ``user``. Whatever refuses the first step's run
    (bad inputs, RATE_LIMITED, ...) is raised and nothing is created. ``email_to``:
    the last step's run reports."""
    if not user_owns_or_is_staff(user, pipeline.owner_id):
        raise PermissionDeniedError("Only the pipeline's owner, or staff, may run it.")
    data, _ = _clean_inputs(data=data, args=None)
    steps = list(pipeline.steps.order_by("position"))
    if not steps:
        raise ConflictError("PIPELINE_EMPTY", "The pipeline has no steps.")
    with transaction.atomic():
        run = PipelineRun.objects.create(
            pipeline=pipeline,
            requested_by=user,
            source=source,
            schedule_id=schedule_id,
            inputs=data,
            email_to=_clean_email_to(email_to),
        )
        run_steps = PipelineRunStep.objects.bulk_create(
            PipelineRunStep(
                run=run, position=step.position, script=step.script, script_path=step.script_path
            )
            for step in steps
        )
        _step_start(run=run, step=run_steps[0], inputs=data, last=len(run_steps) == 1)
    logger.info("pipeline run started", pipeline_run_id=run.pk, pipeline=pipeline.name)
    return run


def _accepted_inputs(*, script, inputs: dict) -> dict:
    """The keys of ``inputs`` the script accepts: all of them, unless its input schema
    forbids unknown keys (typed ``main``), then only its declared ones. So a pipeline's
    accumulated data can flow through steps that take only part of it."""
    version = script.current_version
    schema = script_selectors.script_version_schema(version=version) if version else {}
    if schema.get("additionalProperties") is False and not schema.get("patternProperties"):
        known = schema.get("properties") or {}
        return {key: value for key, value in inputs.items() if key in known}
    return inputs


def _step_start(*, run: PipelineRun, step: PipelineRunStep, inputs: dict, last: bool) -> None:
    """Start the step's run (raises what execution_start raises)."""
    if step.script_id is None:
        raise ApplicationError(
            "SCRIPT_DELETED", f"The script of step {step.position} was deleted.", status=409
        )
    script = script_selectors.script_get_for_run(user=run.requested_by, ref=step.script_id)
    execution = execution_services.execution_start(
        user=run.requested_by,
        script_ref=script.pk,
        inputs=_accepted_inputs(script=script, inputs=inputs),
        email_to=run.email_to if last else None,
        source=Execution.Source.PIPELINE,
    )
    PipelineRunStep.objects.filter(pk=step.pk).update(
        status=PipelineRunStep.Status.RUNNING, execution=execution, inputs=inputs
    )


_STEP_OUTCOME = {
    Execution.Status.SUCCEEDED: PipelineRunStep.Status.SUCCEEDED,
    Execution.Status.CANCELLED: PipelineRunStep.Status.CANCELLED,
}


def _finish(*, run: PipelineRun, status: str, code: str = "", message: str = "", result=None):
    """End the run (if it is still running) and skip its steps that did not start."""
    PipelineRun.objects.filter(pk=run.pk, status=PipelineRun.Status.RUNNING).update(
        status=status,
        finished_at=timezone.now(),
        error_code=code,
        error_message=message[:5000],
        result=result,
    )
    run.steps.filter(status=PipelineRunStep.Status.PENDING).update(
        status=PipelineRunStep.Status.SKIPPED
    )


def pipeline_run_advance(*, execution: Execution) -> PipelineRun | None:
    """A step's run reached a final status: record it on the step, then start the next
    step with the step's input and its result merged over it, or end the pipeline run
    (succeeded, with the last step's result; failed at a step that did not succeed,
    its later steps skipped). Idempotent: a step is advanced once. Returns the
    pipeline run, or None when the execution is not a pipeline step (only runs a
    pipeline started, with source "pipeline", are: the others cost no query)."""
    if execution.source != Execution.Source.PIPELINE:
        return None
    step = PipelineRunStep.objects.filter(execution_id=execution.pk).first()
    if step is None or execution.status not in Execution.FINISHED:
        return None
    outcome = _STEP_OUTCOME.get(execution.status, PipelineRunStep.Status.FAILED)
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=step.run_id)
        moved = PipelineRunStep.objects.filter(
            pk=step.pk, status=PipelineRunStep.Status.RUNNING
        ).update(
            status=outcome,
            error_code=execution.error_code,
            error_message=execution.error_message[:5000],
        )
        if not moved or run.status != PipelineRun.Status.RUNNING:
            return run
        if outcome != PipelineRunStep.Status.SUCCEEDED:
            _finish(
                run=run,
                status=(
                    PipelineRun.Status.CANCELLED
                    if outcome == PipelineRunStep.Status.CANCELLED
                    else PipelineRun.Status.FAILED
                ),
                code=execution.error_code or "STEP_FAILED",
                message=f"Step {step.position} ({step.script_path}) {execution.status}.",
            )
            return run
        following = list(run.steps.filter(position__gt=step.position).order_by("position"))
        if not following:
            _finish(run=run, status=PipelineRun.Status.SUCCEEDED, result=execution.result)
            return run
        result = execution.result if isinstance(execution.result, dict) else {}
        inputs = {**(step.inputs or {}), **result}
        try:
            with transaction.atomic():
                _step_start(run=run, step=following[0], inputs=inputs, last=len(following) == 1)
        except ApplicationError as exc:
            PipelineRunStep.objects.filter(pk=following[0].pk).update(
                status=PipelineRunStep.Status.FAILED,
                inputs=inputs,
                error_code=exc.code,
                error_message=exc.message[:5000],
            )
            _finish(
                run=run,
                status=PipelineRun.Status.FAILED,
                code=exc.code,
                message=f"Step {following[0].position} could not start: {exc.message}",
            )
    return run


def pipeline_run_cancel(*, user, run: PipelineRun) -> PipelineRun:
    """Cancel a running pipeline run (who started it, or staff): it becomes
    ``cancelled`` at once, its steps that did not start are skipped and the current
    step's run is cancelled. PIPELINE_RUN_FINISHED (409) when it already ended."""
    if not user_owns_or_is_staff(user, run.requested_by_id):
        raise PermissionDeniedError("Only who started a pipeline run, or staff, may cancel it.")
    with transaction.atomic():
        moved = PipelineRun.objects.filter(pk=run.pk, status=PipelineRun.Status.RUNNING).update(
            status=PipelineRun.Status.CANCELLED,
            finished_at=timezone.now(),
            error_code="CANCELLED",
            error_message="Cancelled.",
        )
        run.steps.filter(status=PipelineRunStep.Status.PENDING).update(
            status=PipelineRunStep.Status.SKIPPED
        )
    run.refresh_from_db()
    if not moved and run.status != PipelineRun.Status.CANCELLED:
        raise ConflictError(
            "PIPELINE_RUN_FINISHED", f"The pipeline run already ended ({run.status})."
        )
    current = run.steps.filter(status=PipelineRunStep.Status.RUNNING, execution__isnull=False)
    for step in current.select_related("execution"):
        try:
            execution_services.execution_cancel(user=user, execution=step.execution)
        except ApplicationError:  # it ended meanwhile: its own signal records it
            pass
    return run


# --- Files after the report (CLEANUP_FILES_AFTER_EMAIL) ------------------------------------


def report_cleanup_register(*, execution: Execution, mail_ids: list[int], sent: int):
    """A run's report was handed to EMAIL_BACKEND. With CLEANUP_FILES_AFTER_EMAIL on,
    remember its mail queue rows: its files go once they are all sent (at once when
    the backend sent it directly, without queue rows). Returns the ReportCleanup, or
    None when there is nothing to clean up."""
    if not settings.CLEANUP_FILES_AFTER_EMAIL or not sent:
        return None
    cleanup, _ = ReportCleanup.objects.update_or_create(
        execution=execution,
        defaults={"mail_ids": list(mail_ids), "status": ReportCleanup.Status.WAITING},
    )
    if not mail_ids:
        _cleanup_apply(cleanup=cleanup, flags={})
    return cleanup


def _cleanup_apply(*, cleanup: ReportCleanup, flags: dict[int, str]) -> None:
    from mailqueue.models import SendFlag
    from storage.services import files_delete_for_execution

    states = [flags.get(pk) for pk in cleanup.mail_ids]
    if all(state == SendFlag.SENT for state in states):
        with transaction.atomic():
            claimed = ReportCleanup.objects.filter(
                pk=cleanup.pk, status=ReportCleanup.Status.WAITING
            ).update(status=ReportCleanup.Status.REMOVED, done_at=timezone.now())
            if claimed:
                removed = files_delete_for_execution(execution_id=cleanup.execution_id)
                ReportCleanup.objects.filter(pk=cleanup.pk).update(files_removed=removed)
                logger.info(
                    "run files removed after report",
                    execution_id=cleanup.execution_id,
                    files=removed,
                )
    elif any(state in (SendFlag.FAILED, None) for state in states):
        # failed for good, or the row is gone: nobody can confirm the report arrived
        ReportCleanup.objects.filter(pk=cleanup.pk, status=ReportCleanup.Status.WAITING).update(
            status=ReportCleanup.Status.KEPT, done_at=timezone.now()
        )


def report_cleanups_process(*, limit: int = 500) -> int:
    """Remove the files of runs whose report the mail queue has marked sent (every row
    ``Y``); a report that failed for good keeps them. Returns how many were decided."""
    from mailqueue.models import EmailDetail

    waiting = list(
        ReportCleanup.objects.filter(status=ReportCleanup.Status.WAITING).order_by("created_at")[
            :limit
        ]
    )
    ids = {pk for cleanup in waiting for pk in cleanup.mail_ids}
    flags = dict(EmailDetail.objects.filter(pk__in=ids).values_list("pk", "send_flag"))
    decided = 0
    for cleanup in waiting:
        _cleanup_apply(cleanup=cleanup, flags=flags)
        cleanup.refresh_from_db(fields=["status"])
        decided += cleanup.status != ReportCleanup.Status.WAITING
    return decided

"""Every write of the executions app: start, cancel, rerun, reap, prepare environments.

A run flows: ``execution_start`` validates and records it (status ``queued``) and
enqueues ``executions.tasks.run_execution`` on commit; a worker calls
``executions.worker.execution_run``, which claims the row with a conditional UPDATE (a duplicate
delivery finds it claimed and does nothing), runs it through the runner (the only
code that starts processes), streams the log into ExecutionLogChunk rows, keeps the
files as Artifacts and records the outcome.
"""

import functools
import json
import operator
import os
import re
from datetime import timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.permissions import user_owns_or_is_staff
from audit.services import audit_record
from config.errors import ApplicationError, PermissionDeniedError
from config.logging import get_logger
from executions.models import Execution
from executions.signals import send_execution_finished
from executions.transitions import execution_transition
from executions.worker import (  # noqa: F401 - the runs' services are here too
    claim_fields,
    execution_run,
    execution_run_and_wait,
)
from scripts import selectors as script_selectors
from vault import services as vault_services

logger = get_logger("scriptorium.executions")


MESSAGE_MAX_CHARS = 300
EMAIL_TO_MAX = 20  # report recipients of one run
INPUT_FILES_MAX = 100  # input files of one run


def _short(message: str) -> str:
    """jsonschema quotes the offending value: keep messages readable for huge inputs."""
    return message if len(message) <= MESSAGE_MAX_CHARS else message[:MESSAGE_MAX_CHARS] + "..."


def _unexpected_keys(error) -> list[str]:
    """The keys an ``additionalProperties: false`` error is about."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in instance if k not in known and not any(_matches(p, k) for p in patterns)]


def _matches(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


def _validation_error(errors) -> ApplicationError:
    """VALIDATION_ERROR with each message under the input it concerns ("a/0/b" for
    nested ones): a missing input under its name, an unknown one under its own key."""
    details: dict[str, list[str]] = {}
    for error in errors[:50]:
        prefix = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            for key in _unexpected_keys(error):
                path = f"{prefix}/{key}" if prefix else key
                details.setdefault(path, []).append("Unknown input for this script.")
            continue
        path = prefix or "non_field_errors"
        if error.validator == "required" and path == "non_field_errors":
            missing = error.message.split("'")[1] if "'" in error.message else path
            path = missing
        details.setdefault(path, []).append(_short(error.message))
    return ApplicationError("VALIDATION_ERROR", "The inputs do not match the script.", details)


@functools.lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> jsonschema.Draft202012Validator:
    """A compiled validator per distinct schema (schemas are small; runs are many)."""
    return jsonschema.Draft202012Validator(
        json.loads(schema_json), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _validate_inputs(*, version, inputs: Any) -> dict:
    _check_input_size(inputs)
    if not isinstance(inputs, dict):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "The inputs must be a JSON object.",
            {"data": ["Expected an object."]},
        )
    schema = script_selectors.script_version_schema(version=version) or {}
    validator = _validator_for(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
    if errors:
        raise _validation_error(errors)
    return inputs


def _check_input_size(inputs: Any) -> None:
    size = len(json.dumps(inputs, default=str))
    if size > settings.RUN_INPUT_MAX_BYTES:
        raise ApplicationError(
            "INPUT_TOO_LARGE",
            f"The inputs are {size} bytes; runs take at most {settings.RUN_INPUT_MAX_BYTES}. "
            "Upload large data as a file and pass its key in input_files.",
            {"data": [f"At most {settings.RUN_INPUT_MAX_BYTES} bytes of JSON."]},
            status=413,
        )


def _clean_email_list(email_to) -> list[str]:
    """The report recipients: a list (or a ``,``/``;``-separated string) of at most
    EMAIL_TO_MAX valid addresses; VALIDATION_ERROR under ``email_to`` otherwise."""
    if email_to in (None, "", []):
        return []
    if isinstance(email_to, str):
        email_to = [e for e in email_to.replace(";", ",").split(",") if e.strip()]
    if not isinstance(email_to, list) or not all(isinstance(e, str) for e in email_to):
        raise ApplicationError(
            "VALIDATION_ERROR", "email_to must be a list of addresses.", {"email_to": ["Bad."]}
        )
    if len(email_to) > EMAIL_TO_MAX:
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"A run reports to at most {EMAIL_TO_MAX} addresses.",
            {"email_to": [f"At most {EMAIL_TO_MAX} addresses."]},
        )
    cleaned = []
    for address in email_to:
        try:
            validate_email(address.strip())
        except Exception:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "email_to holds an invalid address.",
                {"email_to": [f"Not a valid e-mail address: {address!r}"]},
            )
        cleaned.append(address.strip())
    return cleaned


def _clean_timeout(timeout) -> int | None:
    """The run's own timeout: a positive number of seconds (VALIDATION_ERROR under
    ``timeout`` otherwise), clamped to RUN_TIMEOUT_MAX_SECONDS, so that the stored run
    shows the timeout that applies (the script's own timeout may still shorten it)."""
    if timeout in (None, ""):
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "timeout must be a positive number of seconds.",
            {"timeout": ["Expected a positive number."]},
        )
    return max(1, min(int(timeout), int(settings.RUN_TIMEOUT_MAX_SECONDS)))


def _clean_input_files(*, user, keys) -> list[dict]:
    if not keys:
        return []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "input_files must be a list of file keys.",
            {"input_files": ["Expected a list of strings."]},
        )
    if len(keys) > INPUT_FILES_MAX:
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"A run takes at most {INPUT_FILES_MAX} input files.",
            {"input_files": [f"At most {INPUT_FILES_MAX} files."]},
        )
    from storage.selectors import file_get_for_user

    files = []
    for key in keys:
        try:
            stored = file_get_for_user(user=user, key=key)
        except ApplicationError as exc:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "An input file does not exist.",
                {"input_files": [f"{key}: {exc.message}"]},
            )
        files.append({"key": stored.key, "name": stored.original_name})
    return files


def execution_start(
    *,
    user,
    script_ref: int | str,
    inputs: Any = None,
    args: list[str] | None = None,
    input_files: list[str] | None = None,
    email_to: list[str] | str | None = None,
    timeout: int | None = None,
    source: str = "api",
    rerun_of: Execution | None = None,
    version=None,
    enqueue: bool = True,
    schedule_id: int | None = None,
    claim: bool = False,
) -> Execution:
    """Validate a run request and record it as ``queued``; the run is enqueued when
    the transaction commits (``enqueue=False``: the caller runs it). ``claim=True``:
    the caller runs it at once (the sync API), so it is recorded as ``running``,
    claimed by this thread, and never enqueued; a process that dies before the run
    ends leaves a row the reaper marks ``lost``, as it does a worker's. Bad inputs raise
    VALIDATION_ERROR (400) with field paths and leave no row; so does a user over
    MAX_EXECUTIONS_PER_HOUR or MAX_CONCURRENT_EXECUTIONS (RATE_LIMITED, 429, with
    ``retry_after`` seconds in details). ``source``: who starts it (Execution.Source);
    ``schedule_id``: the jobs schedule that fired it."""
    script = script_selectors.script_get_for_run(user=user, ref=script_ref)
    version = version or script.current_version
    vault_services.secrets_check_for_run(
        user=user, names=script_selectors.script_version_secrets(version=version)
    )
    inputs = {} if inputs is None else inputs
    if version.kind == "command" and args is not None:
        if script.parameters.exists():
            raise ApplicationError(
                "VALIDATION_ERROR",
                "This script declares parameters: send them as data.",
                {"args": ["Not accepted for a script with declared parameters."]},
            )
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ApplicationError(
                "VALIDATION_ERROR", "args must be a list of strings.", {"args": ["Bad type."]}
            )
        _check_input_size(args)
        if any("\x00" in a for a in args):
            raise ApplicationError(
                "VALIDATION_ERROR", "An argument holds a NUL byte.", {"args": ["NUL byte."]}
            )
        argv = list(args)
    else:
        if args is not None:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "args are for command scripts without declared parameters; send data.",
                {"args": ["Not accepted for this script."]},
            )
        inputs = _validate_inputs(version=version, inputs=inputs)
        argv = script_selectors.script_version_argv(version=version, inputs=inputs)
    options = {"email_to": _clean_email_list(email_to), "timeout": _clean_timeout(timeout)}
    files = _clean_input_files(user=user, keys=input_files)
    with transaction.atomic():
        _check_limits(user=user)
        execution = Execution.objects.create(
            script=script,
            script_version=version,
            script_path=script.logical_path,
            version_number=version.number,
            inputs=inputs,
            argv=argv,
            input_files=files,
            requested_by=user,
            source=source,
            options=options,
            rerun_of=rerun_of,
            schedule_id=schedule_id,
            **(_claimed_now() if claim else {}),
        )
        if enqueue and not claim:
            transaction.on_commit(lambda: _enqueue(execution.pk))
    logger.info(
        "execution started" if claim else "execution queued",
        execution_id=execution.pk,
        script=script.logical_path,
    )
    return execution


def _claimed_now() -> dict[str, Any]:
    """The fields of a row inserted as claimed: queued and started at the same moment."""
    fields = claim_fields()
    return {"status": Execution.Status.RUNNING, "queued_at": fields["started_at"], **fields}


CONCURRENT_RETRY_AFTER_SECONDS = 30  # a guess: when one of the user's runs may have ended


def _rate_limited(message: str, *, limit: int, retry_after: int) -> ApplicationError:
    return ApplicationError(
        "RATE_LIMITED",
        message,
        {"limit": limit, "retry_after": max(1, int(retry_after))},
        status=429,
    )


def _check_limits(*, user) -> None:
    """MAX_EXECUTIONS_PER_HOUR (runs started in the last rolling hour) and
    MAX_CONCURRENT_EXECUTIONS (queued or running) for everyone but superusers (0:
    unlimited), counted in the database (both in one query) inside the caller's
    transaction, with the user's row locked so that concurrent starts of one user (any
    web node) queue up behind each other. RATE_LIMITED (429) with ``retry_after``
    seconds otherwise."""
    per_hour = settings.MAX_EXECUTIONS_PER_HOUR
    concurrent = settings.MAX_CONCURRENT_EXECUTIONS
    if user is None or getattr(user, "is_superuser", False) or not (per_hour or concurrent):
        return
    # (the user's model, not type(user): a session's user is a lazy object)
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    mine = Execution.objects.filter(requested_by=user)
    now = timezone.now()
    counted = {}  # the limits in force, counted in one query
    if concurrent:
        counted["active"] = Q(status__in=(Execution.Status.QUEUED, Execution.Status.RUNNING))
    if per_hour:
        counted["recent"] = Q(queued_at__gt=now - timedelta(hours=1))
    counts = mine.filter(functools.reduce(operator.or_, counted.values())).aggregate(
        **{name: Count("pk", filter=condition) for name, condition in counted.items()}
    )
    if concurrent and counts["active"] >= concurrent:
        raise _rate_limited(
            f"You have {concurrent} runs queued or running, the most allowed at once.",
            limit=concurrent,
            retry_after=CONCURRENT_RETRY_AFTER_SECONDS,
        )
    if per_hour:
        window = mine.filter(counted["recent"])
        count = counts["recent"]
        if count >= per_hour:
            # the run whose ageing out brings the count under the limit
            frees = window.order_by("queued_at").values_list("queued_at", flat=True)[
                count - per_hour
            ]
            retry_after = (frees + timedelta(hours=1) - now).total_seconds() + 1
            raise _rate_limited(
                f"You started {per_hour} runs in the last hour, the most allowed.",
                limit=per_hour,
                retry_after=retry_after,
            )


_brokers: dict[int, Any] = {}  # process id -> the django-q2 broker runs are enqueued on


def _broker():
    """This process's django-q2 broker, made once: django-q2 makes one per task
    otherwise (with Redis, a new client and connection for every run enqueued). A
    forked child makes its own."""
    from django_q.brokers import get_broker

    pid = os.getpid()
    broker = _brokers.get(pid)
    if broker is None:
        _brokers.clear()
        broker = _brokers[pid] = get_broker()
    return broker


def _enqueue(execution_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "executions.tasks.run_execution",
        execution_id,
        task_name=f"execution-{execution_id}",
        save=False,
        broker=_broker(),
    )


def _can_manage(*, user, execution: Execution) -> bool:
    return user_owns_or_is_staff(user, execution.requested_by_id)


def execution_cancel(*, user, execution: Execution) -> Execution:
    """Cancel a run: a queued run becomes ``cancelled`` at once; a running one is
    asked to stop and its worker kills the whole process group within a second.
    A finished run cannot be cancelled (409 EXECUTION_FINISHED)."""
    if not _can_manage(user=user, execution=execution):
        raise PermissionDeniedError("Only the person who started a run, or staff, may cancel it.")
    now = timezone.now()
    cancelled = execution_transition(
        runs=Execution.objects.filter(pk=execution.pk),
        source=Execution.Status.QUEUED,
        target=Execution.Status.CANCELLED,
        finished_at=now,
        cancel_requested_at=now,
        error_code="CANCELLED",
        error_message="Cancelled before it started.",
    )
    if cancelled:
        send_execution_finished(Execution.objects.get(pk=execution.pk))
    requested = cancelled
    if not cancelled:
        requested = Execution.objects.filter(
            pk=execution.pk, status=Execution.Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now)
    if requested:  # a bulk update sends no signal: recorded here, once per run
        audit_record(
            action="run.cancelled",
            actor=user,
            target=execution,
            target_repr=f"#{execution.pk} {execution.script_path}",
            details={"was": "queued" if cancelled else "running"},
        )
    execution.refresh_from_db()
    if execution.is_finished and execution.status != Execution.Status.CANCELLED:
        raise ApplicationError(
            "EXECUTION_FINISHED", f"The run already ended ({execution.status}).", status=409
        )
    return execution


def execution_rerun(*, user, execution: Execution) -> Execution:
    """Start the same script again with the same inputs, files and options (on the
    version that ran, when it still exists)."""
    if not _can_manage(user=user, execution=execution):
        raise PermissionDeniedError("Only the person who started a run, or staff, may rerun it.")
    if execution.script_id is None:
        raise ApplicationError("SCRIPT_DELETED", "The script of this run was deleted.", status=409)
    command_without_params = (
        execution.script_version
        and execution.script_version.kind == "command"
        and not execution.script.parameters.exists()
    )
    return execution_start(
        user=user,
        script_ref=execution.script_id,
        inputs=execution.inputs,
        args=execution.argv if command_without_params else None,
        input_files=[f["key"] for f in execution.input_files],
        email_to=execution.options.get("email_to"),
        timeout=execution.options.get("timeout"),
        source="rerun",
        rerun_of=execution,
        version=execution.script_version,
    )


def executions_reap_lost(*, stale_after: timedelta | None = None) -> int:
    """Mark ``running`` runs whose worker stopped heartbeating as ``lost``."""
    if stale_after is None:
        stale_after = timedelta(seconds=settings.RUN_HEARTBEAT_STALE_SECONDS)
    cutoff = timezone.now() - stale_after
    stale = list(
        Execution.objects.filter(
            status=Execution.Status.RUNNING, heartbeat_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    if not stale:
        return 0
    lost = execution_transition(
        runs=Execution.objects.filter(pk__in=stale, heartbeat_at__lt=cutoff),
        source=Execution.Status.RUNNING,
        target=Execution.Status.LOST,
        finished_at=timezone.now(),
        error_code="LOST",
        error_message="The worker running this stopped answering.",
    )
    for execution in Execution.objects.filter(pk__in=stale, status=Execution.Status.LOST):
        send_execution_finished(execution)  # (a duplicate is harmless to receivers)
    return lost


def environment_prepare(*, script) -> str:
    """Build (or find) the Python environment the script's current version needs, so
    that its first run does not wait for it. Returns the interpreter path; raises
    DEPENDENCY_INSTALL_FAILED (with the installer's output in details) otherwise."""
    from executions import runner

    if script.current_version is None:
        raise ApplicationError("SCRIPT_HAS_NO_VERSION", "The script has no version yet.")
    requirements = script_selectors.script_version_requirements(version=script.current_version)
    output: list[str] = []
    try:
        python = runner.ensure_environment(requirements, on_log=output.append)
    except runner.EnvironmentBuildFailed as exc:
        raise ApplicationError(
            "DEPENDENCY_INSTALL_FAILED",
            f"The environment for {script.logical_path} could not be built.",
            {"requirements": requirements, "output": ("".join(output) or str(exc))[-4000:]},
        )
    return str(python)


def executions_prune(*, older_than_days: int, dry_run: bool = False) -> int:
    """Delete finished runs that ended more than ``older_than_days`` ago, with their
    logs, artifacts and files (storage deletes the objects after commit). Returns how
    many runs were (or, with ``dry_run``, would be) deleted."""
    if older_than_days <= 0:
        raise ApplicationError(
            "VALIDATION_ERROR", "older_than_days must be positive.", {"older_than_days": ["> 0"]}
        )
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Execution.objects.filter(status__in=Execution.FINISHED, finished_at__lt=cutoff)
    count = old.count()
    if not dry_run and count:
        for _ in range(0, count, 500):
            ids = list(old.values_list("pk", flat=True)[:500])
            with transaction.atomic():
                Execution.objects.filter(pk__in=ids).delete()
    logger.info("executions pruned", count=count, dry_run=dry_run, days=older_than_days)
    return count

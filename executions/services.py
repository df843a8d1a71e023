"""Every write of the executions app: start, run (worker side), cancel, rerun, reap.

A run flows: ``execution_start`` validates and records it (status ``queued``) and
enqueues ``executions.tasks.run_execution`` on commit; a worker calls
``execution_run``, which claims the row with a conditional UPDATE (a duplicate
delivery finds it claimed and does nothing), runs it through the runner (the only
code that starts processes), streams the log into ExecutionLogChunk rows, keeps the
files as Artifacts and records the outcome.
"""

import socket
import threading
import time
from datetime import timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from config.errors import ApplicationError, PermissionDeniedError
from config.logging import get_logger
from executions.logbook import LogWriter
from executions.models import Artifact, Execution
from scripts import selectors as script_selectors

logger = get_logger("scriptorium.executions")

HEARTBEAT_SECONDS = 5
CANCEL_POLL_SECONDS = 0.5


MESSAGE_MAX_CHARS = 300


def _short(message: str) -> str:
    """jsonschema quotes the offending value: keep messages readable for huge inputs."""
    return message if len(message) <= MESSAGE_MAX_CHARS else message[:MESSAGE_MAX_CHARS] + "..."


def _validation_error(errors) -> ApplicationError:
    details: dict[str, list[str]] = {}
    for error in errors[:50]:
        path = "/".join(str(p) for p in error.absolute_path) or "non_field_errors"
        if error.validator == "required" and path == "non_field_errors":
            missing = error.message.split("'")[1] if "'" in error.message else path
            path = missing
        details.setdefault(path, []).append(_short(error.message))
    return ApplicationError("VALIDATION_ERROR", "The inputs do not match the script.", details)


def _validate_inputs(*, version, inputs: Any) -> dict:
    _check_input_size(inputs)
    if not isinstance(inputs, dict):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "The inputs must be a JSON object.",
            {"data": ["Expected an object."]},
        )
    schema = script_selectors.script_version_schema(version=version) or {}
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
    if errors:
        raise _validation_error(errors)
    return inputs


def _check_input_size(inputs: Any) -> None:
    import json

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
    if email_to in (None, "", []):
        return []
    if isinstance(email_to, str):
        email_to = [e for e in email_to.replace(";", ",").split(",") if e.strip()]
    if not isinstance(email_to, list) or not all(isinstance(e, str) for e in email_to):
        raise ApplicationError(
            "VALIDATION_ERROR", "email_to must be a list of addresses.", {"email_to": ["Bad."]}
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
    return cleaned[:20]


def _clean_timeout(timeout) -> int | None:
    if timeout in (None, ""):
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "timeout must be a positive number of seconds.",
            {"timeout": ["Expected a positive number."]},
        )
    return int(timeout)


def _clean_input_files(*, user, keys) -> list[dict]:
    if not keys:
        return []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "input_files must be a list of file keys.",
            {"input_files": ["Expected a list of strings."]},
        )
    from storage.selectors import file_get_for_user

    files = []
    for key in keys[:100]:
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
) -> Execution:
    """Validate a run request and record it as ``queued``; the run is enqueued when
    the transaction commits (``enqueue=False``: the caller runs it). Bad inputs raise
    VALIDATION_ERROR (400) with field paths and leave no row."""
    script = script_selectors.script_get_for_run(user=user, ref=script_ref)
    version = version or script.current_version
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
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(execution.pk))
    logger.info("execution queued", execution_id=execution.pk, script=script.logical_path)
    return execution


def _enqueue(execution_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "executions.tasks.run_execution",
        execution_id,
        task_name=f"execution-{execution_id}",
        save=False,
    )


def _can_manage(*, user, execution: Execution) -> bool:
    return bool(user and (user.is_staff or execution.requested_by_id == user.pk))


def execution_cancel(*, user, execution: Execution) -> Execution:
    """Cancel a run: a queued run becomes ``cancelled`` at once; a running one is
    asked to stop and its worker kills the whole process group within a second.
    A finished run cannot be cancelled (409 EXECUTION_FINISHED)."""
    if not _can_manage(user=user, execution=execution):
        raise PermissionDeniedError("Only the person who started a run, or staff, may cancel it.")
    now = timezone.now()
    cancelled = Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).update(
        status=Execution.Status.CANCELLED,
        finished_at=now,
        cancel_requested_at=now,
        error_code="CANCELLED",
        error_message="Cancelled before it started.",
    )
    if not cancelled:
        Execution.objects.filter(
            pk=execution.pk, status=Execution.Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now)
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


def _claim(execution_id: int) -> bool:
    now = timezone.now()
    worker = f"{socket.gethostname()}:{threading.get_native_id()}"
    return bool(
        Execution.objects.filter(pk=execution_id, status=Execution.Status.QUEUED).update(
            status=Execution.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker[:255]
        )
    )


class _RunWatch:
    """The runner's should_cancel callback (called about 5 times a second): flushes
    the log when due, heartbeats the row and notices a cancel request, touching the
    run's row at most every CANCEL_POLL_SECONDS."""

    def __init__(self, execution_id: int, log: LogWriter):
        self.execution_id = execution_id
        self.log = log
        self.last_poll = 0.0
        self.last_beat = time.monotonic()
        self.cancelled = False

    def __call__(self) -> bool:
        self.log.flush_if_due()
        now = time.monotonic()
        if self.cancelled or now - self.last_poll < CANCEL_POLL_SECONDS:
            return self.cancelled
        self.last_poll = now
        if now - self.last_beat >= HEARTBEAT_SECONDS:
            Execution.objects.filter(pk=self.execution_id).update(heartbeat_at=timezone.now())
            self.last_beat = now
        self.cancelled = Execution.objects.filter(
            pk=self.execution_id, cancel_requested_at__isnull=False
        ).exists()
        return self.cancelled


def _progress_writer(execution_id: int):
    last = {"at": 0.0}

    def on_progress(percent: int, message: str) -> None:
        now = time.monotonic()
        if now - last["at"] < 0.2 and percent < 100:
            return
        last["at"] = now
        Execution.objects.filter(pk=execution_id).update(
            progress_percent=max(0, min(100, int(percent))), progress_message=str(message)[:500]
        )

    return on_progress


def _build_spec(execution: Execution):
    from executions import runner
    from storage.models import StoredFile
    from storage.services import file_open

    version = execution.script_version
    script = execution.script
    requested = execution.options.get("timeout")
    script_timeout = script.timeout_seconds if script else None
    timeout = (
        min(t for t in (requested, script_timeout) if t) if (requested or script_timeout) else None
    )
    limits = runner.limits_for(
        timeout_seconds=timeout,
        memory_mb=script.memory_mb if script else None,
        network=script.network_allowed if script else None,
    )
    stored = {
        f.key: f
        for f in StoredFile.objects.filter(key__in=[f["key"] for f in execution.input_files])
    }
    input_files = [
        runner.InputFile(
            name=f["name"], open=(lambda sf=stored[f["key"]]: file_open(stored_file=sf))
        )
        for f in execution.input_files
        if f["key"] in stored
    ]
    return runner.RunSpec(
        run_id=str(execution.pk),
        source=version.source,
        filename=script.name if script else execution.script_path.rsplit("/", 1)[-1],
        call_style=version.call_style,
        inputs=execution.inputs,
        argv=list(execution.argv),
        requirements=script_selectors.script_version_requirements(version=version),
        input_files=input_files,
        limits=limits,
    )


def _store_artifacts(*, execution: Execution, outcome, log: LogWriter) -> None:
    from storage.services import file_store

    for collected in outcome.files:
        try:
            with open(collected.path, "rb") as fh:
                stored = file_store(
                    fileobj=fh,
                    original_name=collected.relative_path.rsplit("/", 1)[-1],
                    prefix=f"executions/{execution.pk}",
                    owner=execution.requested_by,
                    execution=execution,
                )
            Artifact.objects.create(
                execution=execution,
                stored_file=stored,
                name=collected.relative_path,
                category=collected.category,
                size=stored.size,
            )
        except ApplicationError as exc:
            log.write(f"\n[scriptorium] file {collected.relative_path} not kept: {exc.message}\n")
    for skipped in outcome.skipped_files:
        log.write(f"\n[scriptorium] file not kept: {skipped}\n")


def execution_run(*, execution_id: int) -> Execution | None:
    """Worker side: claim the queued run and carry it to a final status. Returns None
    when another worker (or a cancel) got there first. Never raises for what the
    script does; an internal error marks the run ``failed`` with INTERNAL_ERROR."""
    from executions import runner

    if not _claim(execution_id):
        logger.info("execution already claimed", execution_id=execution_id)
        return None
    execution = Execution.objects.select_related("script", "script_version", "requested_by").get(
        pk=execution_id
    )
    log = LogWriter(execution_id=execution_id)
    fields: dict[str, Any] = {}
    try:
        if execution.script_version is None:
            raise ApplicationError("SCRIPT_DELETED", "The script version was deleted.")
        spec = _build_spec(execution)
        with runner.run_script(
            spec,
            on_log=log.write,
            on_progress=_progress_writer(execution_id),
            should_cancel=_RunWatch(execution_id, log),
        ) as outcome:
            log.truncated = outcome.log_truncated
            _store_artifacts(execution=execution, outcome=outcome, log=log)
        fields = {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "result": outcome.result,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message[:5000],
            "peak_memory_kb": outcome.peak_memory_kb,
            "cpu_time_ms": outcome.cpu_time_ms,
        }
        if outcome.status == "succeeded":
            fields["progress_percent"] = 100
    except ApplicationError as exc:
        fields = {"status": "failed", "error_code": exc.code, "error_message": exc.message}
    except Exception as exc:  # a bug of ours: the run must still end
        logger.exception("execution crashed", execution_id=execution_id)
        fields = {
            "status": "failed",
            "error_code": "INTERNAL_ERROR",
            "error_message": f"Scriptorium failed to run the script ({exc.__class__.__name__}).",
        }
    log.close()
    fields.update(finished_at=timezone.now(), log_size=log.size, log_truncated=log.truncated)
    Execution.objects.filter(pk=execution_id, status=Execution.Status.RUNNING).update(**fields)
    execution.refresh_from_db()
    logger.info(
        "execution finished",
        execution_id=execution_id,
        status=execution.status,
        error_code=execution.error_code,
    )
    _deliver(execution)
    return execution


def _deliver(execution: Execution) -> None:
    if not execution.options.get("email_to"):
        return
    from executions.delivery import report_send

    try:
        report_send(execution=execution)
    except Exception:
        logger.exception("run report could not be queued", execution_id=execution.pk)


def execution_run_and_wait(*, execution: Execution, wait_seconds: float) -> Execution:
    """Run a queued execution in a thread of this process and wait up to
    ``wait_seconds`` for it; the run goes on after that (the caller answers 202)."""

    def target():
        try:
            execution_run(execution_id=execution.pk)
        finally:
            connection.close()

    if connection.in_atomic_block:
        # The row is not committed yet: no other connection could claim it. Run here.
        execution_run(execution_id=execution.pk)
    else:
        thread = threading.Thread(target=target, name=f"run-{execution.pk}", daemon=True)
        thread.start()
        thread.join(wait_seconds)
    execution.refresh_from_db()
    return execution


def executions_reap_lost(*, stale_after: timedelta | None = None) -> int:
    """Mark ``running`` runs whose worker stopped heartbeating as ``lost``."""
    stale_after = stale_after or timedelta(seconds=settings.RUN_HEARTBEAT_STALE_SECONDS)
    cutoff = timezone.now() - stale_after
    return Execution.objects.filter(
        status=Execution.Status.RUNNING, heartbeat_at__lt=cutoff
    ).update(
        status=Execution.Status.LOST,
        finished_at=timezone.now(),
        error_code="LOST",
        error_message="The worker running this stopped answering.",
    )


def execution_delete(*, execution: Execution) -> None:
    """Delete a run with its log and its files (objects included)."""
    from storage.services import files_delete_for_execution

    files_delete_for_execution(execution_id=execution.pk)
    execution.delete()


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

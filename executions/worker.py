"""The worker side of a run: claim the queued row, carry it through the runner (the
only code that starts processes), stream its log, keep its files, record the outcome.

``execution_run`` is what a django-q2 worker calls; ``execution_run_and_wait`` is the
sync API's way to run in a thread of the web process (one of its run threads, kept
between runs with their database connections: see ``_RunThreads``).
"""

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection, connections
from django.utils import timezone

from config.errors import ApplicationError
from config.logging import get_logger
from executions import heartbeat
from executions.logbook import LogWriter
from executions.models import Artifact, Execution
from executions.signals import send_execution_finished
from executions.transitions import execution_transition
from scripts import selectors as script_selectors
from vault import services as vault_services

logger = get_logger("scriptorium.executions")

CANCEL_POLL_SECONDS = 0.5
RUN_THREAD_IDLE_SECONDS = 60  # a sync-run thread with nothing to do for this long ends


def claim_fields() -> dict[str, Any]:
    """What a run's row holds once claimed, besides its ``running`` status: started
    and heartbeating now, by this host and thread."""
    now = timezone.now()
    worker = f"{socket.gethostname()}:{threading.get_native_id()}"
    return {"started_at": now, "heartbeat_at": now, "worker": worker[:255]}


def _claim(execution_id: int) -> dict[str, Any] | None:
    """Claim the queued run (a conditional UPDATE): the fields written, or None when
    it was not queued any more (claimed by another worker, cancelled)."""
    fields = claim_fields()
    moved = execution_transition(
        runs=Execution.objects.filter(pk=execution_id),
        source=Execution.Status.QUEUED,
        target=Execution.Status.RUNNING,
        **fields,
    )
    return {"status": Execution.Status.RUNNING, **fields} if moved else None


def _set(execution: Execution, fields: dict[str, Any]) -> None:
    """Put on ``execution`` what an UPDATE of its row just wrote."""
    for name, value in fields.items():
        setattr(execution, name, value)


class _RunWatch:
    """The runner's should_cancel callback (called about 5 times a second): flushes
    the log when due and notices a cancel request, reading the run's row at most every
    CANCEL_POLL_SECONDS (its heartbeat is executions.heartbeat's)."""

    def __init__(self, execution_id: int, log: LogWriter):
        self.execution_id = execution_id
        self.log = log
        self.last_poll = time.monotonic()  # just claimed: nothing to ask yet
        self.cancelled = False

    def __call__(self) -> bool:
        self.log.flush_if_due()
        now = time.monotonic()
        if self.cancelled or now - self.last_poll < CANCEL_POLL_SECONDS:
            return self.cancelled
        self.last_poll = now
        self.cancelled = Execution.objects.filter(
            pk=self.execution_id, cancel_requested_at__isnull=False
        ).exists()
        return self.cancelled


def _progress_writer(execution: Execution):
    last = {"at": 0.0}

    def on_progress(percent: int, message: str) -> None:
        now = time.monotonic()
        if now - last["at"] < 0.2 and percent < 100:
            return
        last["at"] = now
        progress = {
            "progress_percent": max(0, min(100, int(percent))),
            "progress_message": str(message)[:500],
        }
        Execution.objects.filter(pk=execution.pk).update(**progress)
        _set(execution, progress)

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
    keys = [f["key"] for f in execution.input_files]
    stored = {f.key: f for f in StoredFile.objects.filter(key__in=keys)} if keys else {}

    def opener(key: str):
        def open_stored():
            if key not in stored:  # deleted since the run was queued: the run fails clearly
                raise FileNotFoundError(f"input file {key} no longer exists")
            return file_open(stored_file=stored[key])

        return open_stored

    input_files = [
        runner.InputFile(name=f["name"], open=opener(f["key"])) for f in execution.input_files
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
        trusted=bool(execution.requested_by and execution.requested_by.is_staff),
        imports=script_selectors.script_version_imports(version=version) if script else (),
        secrets=vault_services.secrets_for_run(
            user=execution.requested_by,
            names=script_selectors.script_version_secrets(version=version),
            execution_id=execution.pk,
        ),
    )


def _store_artifacts(*, execution: Execution, outcome, log: LogWriter) -> None:
    """Keep each collected file as an Artifact, read through ``CollectedFile.open()``
    (which never follows a link the script swapped in after collection, and reads
    no more than the collected size). A file that cannot be kept (refused by
    storage, gone or replaced since collection) is skipped with one log line: at
    most one per collected file. The skipped list is not logged again: the runner
    logs it (bounded: at most files.MAX_REASONS lines and a summary line)."""
    from executions.runner.files import shown_name
    from storage.services import file_store

    for collected in outcome.files:
        name = shown_name(collected.relative_path)
        try:
            fh = collected.open()
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            log.write(
                f"\n[scriptorium] file {name} not kept: it changed after the run ({reason})\n"
            )
            continue
        try:
            with fh:
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
            log.write(f"\n[scriptorium] file {name} not kept: {exc.message}\n")


def execution_run(*, execution_id: int) -> Execution | None:
    """Worker side: claim the queued run and carry it to a final status. Returns None
    when another worker (or a cancel) got there first. Never raises for what the
    script does; an internal error marks the run ``failed`` with INTERNAL_ERROR."""
    if not _claim(execution_id):
        logger.info("execution already claimed", execution_id=execution_id)
        return None
    execution = Execution.objects.select_related("script", "script_version", "requested_by").get(
        pk=execution_id
    )
    _share_script(execution)
    return _carry(execution)


def _share_script(execution: Execution) -> None:
    """The version's script is the run's script (one row, not loaded twice)."""
    version = execution.script_version
    if version is not None and execution.script is not None:
        if version.script_id == execution.script_id:
            version.script = execution.script


def _run_created(execution: Execution) -> Execution | None:
    """``execution_run`` for the row the caller has just created (``execution_start``
    loaded its script, version and user): claimed the same way when it is queued (a
    row made ``running`` by ``execution_start(claim=True)`` is the caller's already),
    then carried without reading the row back."""
    if execution.status == Execution.Status.QUEUED:
        claimed = _claim(execution.pk)
        if claimed is None:
            logger.info("execution already claimed", execution_id=execution.pk)
            return None
        _set(execution, claimed)
    _share_script(execution)
    return _carry(execution)


def _carry(execution: Execution) -> Execution:
    """Run the claimed ``execution`` through the runner and record its outcome; returns
    it as recorded. Its row's heartbeat is kept up meanwhile (executions.heartbeat).
    The row is not read back when the final UPDATE moved it: what the worker wrote to
    it (claim, progress, outcome; not the heartbeats) is set on ``execution`` as it is
    written, and nothing else writes to a running row but a cancel request, after
    which it is read back (as it is when the run ended meanwhile: the reaper)."""
    heartbeat.start(execution.pk)
    try:
        return _carry_beating(execution)
    finally:
        heartbeat.stop(execution.pk)


def _carry_beating(execution: Execution) -> Execution:
    from executions import runner

    execution_id = execution.pk
    log = LogWriter(execution_id=execution_id)
    watch = _RunWatch(execution_id, log)
    fields: dict[str, Any] = {}
    warm = False
    try:
        if execution.script_version is None:
            raise ApplicationError("SCRIPT_DELETED", "The script version was deleted.")
        spec = _build_spec(execution)
        with runner.run_script(
            spec,
            on_log=log.write,
            on_progress=_progress_writer(execution),
            should_cancel=watch,
        ) as outcome:
            log.truncated = outcome.log_truncated
            warm = outcome.warm
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
    log.close()  # the last chunk; its size is recorded with the outcome, below
    fields.update(finished_at=timezone.now(), log_size=log.size, log_truncated=log.truncated)
    target = fields.pop("status")
    moved = execution_transition(
        runs=Execution.objects.filter(pk=execution_id),
        source=Execution.Status.RUNNING,
        target=target,
        **fields,
    )
    if not moved:  # ended meanwhile (the reaper): the log's size is still recorded
        Execution.objects.filter(pk=execution_id).update(log_size=log.size)
    if moved and not watch.cancelled:
        _set(execution, {"status": target, **fields})
    else:  # the row holds what others wrote (a cancel request, the reaper's status)
        execution.refresh_from_db()
    send_execution_finished(execution)  # pipelines advance (jobs)
    logger.info(
        "execution finished",
        execution_id=execution_id,
        status=execution.status,
        error_code=execution.error_code,
        warm=warm,  # forked from a warm template (else a cold start, or no start at all)
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


class _RunThreads:
    """The threads that carry sync runs in this process. A run takes an idle thread or
    starts a new one (it never waits for one: a run past its caller's wait goes on in
    its thread while new runs start); a thread idle for RUN_THREAD_IDLE_SECONDS ends.
    Around each run a thread treats its database connections as Django treats a
    request's (``close_old_connections``: CONN_MAX_AGE, CONN_HEALTH_CHECKS, a connection
    left unusable by an error is closed), so that with persistent connections a run
    does not open one. A forked child starts with no threads."""

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job, minus the jobs put for them
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()

    def submit(self, job: Callable[[], None], *, name: str) -> None:
        """Run ``job()`` in an idle run thread, or in a new one."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((job, name))
                return
        threading.Thread(target=self._serve, args=(job, name), name=name, daemon=True).start()

    def _serve(self, job: Callable[[], None], name: str) -> None:
        jobs = self._jobs
        try:
            while True:
                threading.current_thread().name = name
                close_old_connections()
                try:
                    job()
                except Exception:  # a job's bug must not end the thread silently
                    logger.exception("sync run thread: job failed")
                finally:
                    close_old_connections()
                threading.current_thread().name = "run-idle"
                with self._lock:
                    self._idle += 1
                try:
                    job, name = jobs.get(timeout=RUN_THREAD_IDLE_SECONDS)
                    continue
                except queue.Empty:
                    pass
                with self._lock:  # a job put while the wait timed out is this thread's
                    try:
                        job, name = jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return
        finally:
            connections.close_all()


_run_threads = _RunThreads()


def execution_run_and_wait(*, execution: Execution, wait_seconds: float) -> Execution:
    """Run the ``execution`` the caller has just created (with
    ``execution_start(claim=True)``, or queued with ``enqueue=False``; committed) in
    a run thread of this process and wait up to ``wait_seconds`` for it; the run goes
    on after that (the caller answers 202). Returns the run as recorded: finished, or
    as it stands when the wait ends. The thread uses ``execution`` as it is (its
    script, version and user are not fetched again): the caller must not change it
    meanwhile."""
    finished: list[Execution] = []

    if connection.in_atomic_block:
        # The row is not committed yet: no other connection could claim it. Run here.
        ran = _run_created(execution)
        if ran is not None:
            finished.append(ran)
    else:
        done = threading.Event()

        def job() -> None:
            try:
                ran = _run_created(execution)
                if ran is not None:
                    finished.append(ran)
            finally:
                done.set()

        _run_threads.submit(job, name=f"run-{execution.pk}")
        done.wait(wait_seconds)
    if finished:
        return finished[0]  # as recorded by the run itself, with its final UPDATE
    # Still running (or claimed by someone else): the row as it stands now, read into a
    # new instance, since the thread may still be using ``execution``.
    return Execution.objects.get(pk=execution.pk)

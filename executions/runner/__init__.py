"""The runner core: run one script version in the sandbox and report what happened.

The interface other code uses (``executions.services`` / tasks / the sync API):
``Limits`` + ``limits_for`` (limits.py), ``InputFile``, ``RunSpec``, ``CollectedFile``,
``RunOutcome``, ``run_script`` (a context manager yielding the outcome; the workspace
and the collected files exist until it exits) and ``ensure_environment``.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .environments import EnvironmentBuildFailed, ensure_environment
from .files import CollectedFile
from .limits import Limits, limits_for
from .spec import InputFile, RunOutcome, RunSpec

__all__ = [
    "CollectedFile",
    "EnvironmentBuildFailed",
    "InputFile",
    "Limits",
    "RunOutcome",
    "RunSpec",
    "ensure_environment",
    "limits_for",
    "run_script",
    "sandbox_backend_name",
    "warm_up",
]


def warm_up(requirements: list[str], *, imports=(), timeout: float = 30.0) -> bool:
    """Start the environment's warm template and wait until it serves (run.warm_up)."""
    from .run import warm_up as _warm_up

    return _warm_up(requirements, imports=imports, timeout=timeout)


def sandbox_backend_name() -> str:
    """The backend runs use now ("bwrap" or "rlimit"; SANDBOX_BACKEND, auto resolved).
    Raises sandbox.SandboxUnavailable when bwrap is forced and cannot run."""
    from .sandbox import backend_name

    return backend_name()


@contextmanager
def run_script(
    spec: RunSpec,
    *,
    on_log: Callable[[str], None],
    on_progress: Callable[[int, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Iterator[RunOutcome]:
    """Make a fresh workspace, copy the input files in, resolve the environment
    (building it if needed, its output going to on_log), run the harness in the
    sandbox, stream merged stdout/stderr to on_log in order (text, at most
    limits.log_bytes, then one truncation marker line and the rest dropped while the
    run goes on), call on_progress for progress reports, poll should_cancel about 5x
    a second (True -> kill the whole process group -> "cancelled"), enforce every
    limit, collect new files; yield the outcome; remove the workspace on exit.
    Never raises for anything the script does."""
    from .masking import Masker, mask_text
    from .run import prepare_and_run

    workspace = None
    masked_log = Masker(on_log, spec.secrets.values())
    if spec.secrets and on_progress is not None:
        report = on_progress

        def on_progress(percent: int, message: str) -> None:
            report(percent, mask_text(message, spec.secrets.values()))

    try:
        workspace, outcome = prepare_and_run(
            spec, on_log=masked_log, on_progress=on_progress, should_cancel=should_cancel
        )
        masked_log.flush()
        if spec.secrets:
            outcome.error_message = mask_text(outcome.error_message, spec.secrets.values())
        yield outcome
    finally:
        if workspace is not None:
            workspace.remove()

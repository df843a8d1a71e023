"""The runner's records: what to run (``RunSpec``, ``InputFile``) and how it went
(``RunOutcome``)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .files import CollectedFile
from .limits import Limits


@dataclass(frozen=True)
class InputFile:
    name: str  # original name; the runner sanitises it
    open: Callable[[], BinaryIO]  # opens the stored bytes (caller's storage)


@dataclass(frozen=True)
class RunSpec:
    run_id: str  # execution id, used in names and log lines
    source: str  # the ScriptVersion source
    filename: str  # e.g. "report.py"
    call_style: str  # "data" | "kwargs" | "argv"
    inputs: dict  # validated inputs (function scripts)
    argv: list[str]  # command scripts' argv (after the script name)
    requirements: list[str]  # pip requirement strings; [] -> base environment
    input_files: list[InputFile]
    limits: Limits
    trusted: bool = False  # started by staff: may use the rlimit backend (see sandbox)
    # Environment variables the script gets whose values never reach the log or events.
    secrets: dict[str, str] = field(default_factory=dict)
    # The modules the script imports (the inspector's list): a warm template of the
    # environment preloads them. Never needed for correctness.
    imports: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    status: str  # "succeeded" | "failed" | "timed_out" | "cancelled"
    exit_code: int | None
    result: Any  # function scripts' JSON result ({} for None); None otherwise
    error_code: str  # "" on success, else SCRIPT_ERROR, TIMEOUT, MEMORY_LIMIT, ...
    error_message: str  # one clean line for people (traceback goes to the log)
    peak_memory_kb: int | None = None
    cpu_time_ms: int | None = None
    log_bytes: int = 0
    log_truncated: bool = False
    files: list[CollectedFile] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # "name: reason"
    duration_seconds: float = 0.0
    warm: bool = False  # forked from a warm template (else started cold)

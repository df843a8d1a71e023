"""Run limits: the ``Limits`` record, its defaults from settings, and the rlimits
the harness applies to itself before it loads any script code."""

import math
from dataclasses import dataclass

from django.conf import settings

MIN_TIMEOUT_SECONDS = 0.1
MIN_MEMORY_MB = 64  # below this the interpreter itself cannot start


@dataclass(frozen=True)
class Limits:
    """Everything one run may use. Sizes in bytes unless the name says otherwise."""

    timeout_seconds: float
    memory_mb: int
    cpu_seconds: int
    log_bytes: int
    max_files: int
    max_file_bytes: int
    max_total_file_bytes: int
    result_bytes: int
    network: bool
    max_processes: int


def limits_for(*, timeout_seconds=None, memory_mb=None, network=None) -> Limits:
    """Global defaults from settings, overridden by the non-None arguments (the
    script's overrides and the request's timeout), clamped to the maxima
    (RUN_TIMEOUT_MAX_SECONDS, RUN_MEMORY_MAX_MB) and to sane minima."""
    timeout = float(settings.RUN_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds)
    timeout = min(max(timeout, MIN_TIMEOUT_SECONDS), float(settings.RUN_TIMEOUT_MAX_SECONDS))
    memory = int(settings.RUN_MEMORY_MB if memory_mb is None else memory_mb)
    memory = min(max(memory, MIN_MEMORY_MB), int(settings.RUN_MEMORY_MAX_MB))
    cpu = int(settings.RUN_CPU_SECONDS) or math.ceil(timeout)
    return Limits(
        timeout_seconds=timeout,
        memory_mb=memory,
        cpu_seconds=max(1, min(cpu, math.ceil(timeout))),
        log_bytes=int(settings.RUN_LOG_MAX_BYTES),
        max_files=int(settings.RUN_MAX_FILES),
        max_file_bytes=int(settings.RUN_MAX_FILE_BYTES),
        max_total_file_bytes=int(settings.RUN_MAX_TOTAL_FILE_BYTES),
        result_bytes=int(settings.RUN_RESULT_MAX_BYTES),
        network=bool(settings.RUN_NETWORK_DEFAULT if network is None else network),
        max_processes=int(settings.RUN_MAX_PROCESSES),
    )


def rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    """``(RLIMIT name, soft, hard)`` for the harness to set on itself. The CPU soft
    limit sends SIGXCPU, the hard one (a second later) SIGKILL."""
    memory = limits.memory_mb * 1024 * 1024
    return [
        ("RLIMIT_AS", memory, memory),
        ("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1),
        ("RLIMIT_FSIZE", limits.max_file_bytes, limits.max_file_bytes),
        ("RLIMIT_NOFILE", settings.RUN_MAX_OPEN_FILES, settings.RUN_MAX_OPEN_FILES),
        ("RLIMIT_NPROC", limits.max_processes, limits.max_processes),
        ("RLIMIT_CORE", 0, 0),
    ]

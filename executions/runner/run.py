"""``run_script``'s body: workspace, environment, harness in the sandbox, outcome."""

import functools
import hashlib
import marshal
import os
import py_compile
import shutil
import signal
import sys
import time
from pathlib import Path

from django.conf import settings

from . import sandbox
from .environments import EnvironmentBuildFailed, base_prefix, ensure_environment, site_packages
from .execute import SIGNAL_NAMES, ProcessResult, watch
from .files import collect_files
from .harness import LAUNCHER
from .limits import rlimits
from .workspace import (
    Workspace,
    create_workspace,
    ensure_traversable,
    give_to_run_user,
    sanitise_name,
)

HERE = Path(__file__).resolve().parent
SUPPORT_FILES = {"harness.py": "_scriptorium_harness.py", "scriptorium_progress.py": None}
PYC_FORMAT = b"checked-hash pyc v1"  # part of the support dir's name


@functools.cache
def support_dir(data_dir: str) -> Path:
    """A world-readable copy of the harness and the progress helper (the run uid
    cannot be assumed to read the project's directory; bwrap binds only this)."""
    blobs = {name: (HERE / name).read_bytes() for name in SUPPORT_FILES}
    digest = hashlib.sha256(b"".join(blobs[n] for n in sorted(blobs)) + PYC_FORMAT)
    digest = digest.hexdigest()[:16]
    target = Path(data_dir) / "runner" / digest
    if not (target / ".complete").exists():
        ensure_traversable(target.parent)
        tmp = target.with_name(f".{digest}-{os.getpid()}-{time.monotonic_ns()}")
        tmp.mkdir(mode=0o755)
        for name, blob in blobs.items():
            dest = tmp / (SUPPORT_FILES[name] or name)
            dest.write_bytes(blob)
            os.chmod(dest, 0o644)
            _precompile(dest, shown_as=target / dest.name)
        os.chmod(tmp / "__pycache__", 0o755)
        (tmp / ".complete").touch()
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _precompile(source: Path, *, shown_as: Path) -> None:
    """Write the module's .pyc (checked against the source's hash), so that the run's
    interpreter imports the harness without compiling it (about 1 ms a run). It is
    written for this interpreter's version; an environment made from another Python
    version ignores it and compiles in memory (correct, only slower)."""
    tag = sys.implementation.cache_tag  # not cache_from_source: it obeys PYTHONPYCACHEPREFIX
    cfile = str(source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc")
    py_compile.compile(
        str(source),
        cfile=cfile,
        dfile=str(shown_as),  # the path tracebacks show
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    os.chmod(cfile, 0o644)


def prepare_and_run(spec, *, on_log, on_progress, should_cancel):
    """(workspace, RunOutcome). The workspace is the caller's to remove."""
    from . import RunOutcome

    started = time.monotonic()

    def failed(code: str, message: str) -> RunOutcome:
        on_log(f"[scriptorium] {message}\n")
        return RunOutcome(
            status="failed",
            exit_code=None,
            result=None,
            error_code=code,
            error_message=message,
            duration_seconds=time.monotonic() - started,
        )

    try:
        backend = sandbox.backend_name()
    except sandbox.SandboxUnavailable as exc:
        return None, failed("SANDBOX_UNAVAILABLE", f"The sandbox cannot start: {exc}")
    workspace = create_workspace(spec.run_id, with_tmp=backend != "bwrap")
    try:
        script_name = sanitise_name(spec.filename or "script.py")
        _copy_inputs(spec, workspace, script_name)
    except OSError as exc:
        return workspace, failed("INPUT_FILE_ERROR", f"An input file could not be copied: {exc}")
    script = workspace.work / script_name
    script.write_text(spec.source, encoding="utf-8")
    os.chmod(script, 0o644)
    workspace.snapshot()
    try:
        python = ensure_environment(spec.requirements, on_log=on_log)
    except EnvironmentBuildFailed as exc:
        return workspace, failed("DEPENDENCY_INSTALL_FAILED", exc.message)
    env_dir = python.parent.parent
    support = support_dir(str(settings.DATA_DIR))
    result = _run_harness(
        spec,
        workspace,
        backend,
        python,
        env_dir,
        support,
        script,
        on_log=on_log,
        on_progress=on_progress,
        should_cancel=should_cancel,
    )
    outcome = _outcome(spec, result, backend)
    outcome.files, outcome.skipped_files = collect_files(
        workspace.work,
        workspace.baseline,
        max_files=spec.limits.max_files,
        max_file_bytes=spec.limits.max_file_bytes,
        max_total_file_bytes=spec.limits.max_total_file_bytes,
    )
    for line in outcome.skipped_files:
        on_log(f"[scriptorium] File not collected: {line}\n")
    outcome.duration_seconds = time.monotonic() - started
    return workspace, outcome


def _copy_inputs(spec, workspace: Workspace, script_name: str) -> None:
    taken = {script_name.lower()}
    for item in spec.input_files:
        dest = workspace.work / sanitise_name(item.name, taken=taken)
        with item.open() as src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(dest, 0o644)
        give_to_run_user(dest)


def _run_harness(spec, workspace, backend, python, env_dir, support, script, **callbacks):
    limits = spec.limits
    ro_paths = [support, env_dir]
    prefix = _base_prefix(env_dir)
    if prefix is not None and prefix != Path("/usr"):
        ro_paths.append(prefix)
    tmp = "/tmp" if backend == "bwrap" else str(workspace.tmp)  # noqa: S108 - private tmpfs

    def start(result_fd: int, progress_fd: int):
        control = {
            "workdir": str(workspace.work),
            "support_dir": str(support),
            "site_dirs": _site_dirs(env_dir),
            "prefix": str(env_dir),
            "script": str(script),
            "call_style": spec.call_style,
            "inputs": dict(spec.inputs or {}),
            "argv": [str(a) for a in spec.argv or []],
            "result_fd": result_fd,
            "progress_fd": progress_fd,
            "result_bytes": limits.result_bytes,
            "rlimits": rlimits(limits),
        }
        # The control record travels in an anonymous memory file whose fd the harness
        # reads and closes first: nothing on disk, no control dir to bind into bwrap.
        control_fd = os.memfd_create("scriptorium-control", os.MFD_CLOEXEC)
        try:
            data = memoryview(marshal.dumps(control))
            while data:
                data = data[os.write(control_fd, data) :]
            os.lseek(control_fd, 0, os.SEEK_SET)
            env = sandbox.scrubbed_env(
                env_dir=env_dir,
                home=workspace.work,
                tmp=tmp,
                run_id=spec.run_id,
                progress_fd=progress_fd,
            )
            inner = [str(python), "-I", "-S", "-u", "-c", LAUNCHER, str(support), str(control_fd)]
            return sandbox.spawn(
                backend,
                inner,
                work=workspace.work,
                ro_paths=ro_paths,
                network=limits.network,
                tmp_bytes=max(limits.max_total_file_bytes, 1 << 20),
                env=env,
                pass_fds=(result_fd, progress_fd, control_fd),
            )
        finally:
            os.close(control_fd)

    return watch(
        start,
        run_id=spec.run_id,
        backend=backend,
        timeout=limits.timeout_seconds,
        result_limit=limits.result_bytes,
        log_limit=limits.log_bytes,
        **callbacks,
    )


@functools.lru_cache(maxsize=64)
def _site_dirs(env_dir: Path) -> list[str]:
    """The environment's site-packages folders (a ready environment never changes)."""
    return [str(p) for p in site_packages(env_dir)]


@functools.lru_cache(maxsize=64)
def _base_prefix(env_dir: Path) -> Path | None:
    return base_prefix(env_dir)


def _outcome(spec, pr: ProcessResult, backend: str):
    from . import RunOutcome

    limits = spec.limits
    exit_code, sig = pr.returncode, pr.signal
    if backend == "bwrap" and sig is None and exit_code is not None and exit_code > 128:
        sig = exit_code - 128 if (exit_code - 128) in SIGNAL_NAMES else None
    status, result, code, message = "failed", None, "", ""
    if pr.cancelled:
        code, message, status = "CANCELLED", "The run was cancelled.", "cancelled"
    elif pr.timed_out:
        status, code = "timed_out", "TIMEOUT"
        message = f"The run took longer than {limits.timeout_seconds:g} s and was stopped."
    elif pr.record is not None:
        if pr.record.get("ok"):
            status = "succeeded"
            result = None if spec.call_style == "argv" else pr.record.get("result", {})
        else:
            code = str(pr.record.get("code") or "SCRIPT_ERROR")[:64]
            message = str(pr.record.get("message") or "The script failed.")[:1000]
    elif pr.record_error == "RESULT_TOO_LARGE":
        code = "RESULT_TOO_LARGE"
        message = f"The result is over the limit of {limits.result_bytes} bytes."
    else:
        code, message = _signal_error(sig, exit_code, pr, limits)
    if sig is not None:
        exit_code = -sig
    return RunOutcome(
        status=status,
        exit_code=exit_code,
        result=result,
        error_code=code,
        error_message=message,
        peak_memory_kb=_peak(pr),
        cpu_time_ms=_cpu(pr),
        log_bytes=pr.log_bytes,
        log_truncated=pr.log_truncated,
    )


def _signal_error(sig, exit_code, pr: ProcessResult, limits) -> tuple[str, str]:
    cpu_ms = pr.cpu_time_ms or 0
    peak_kb = pr.peak_memory_kb or 0
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_ms >= limits.cpu_seconds * 950):
        return "CPU_LIMIT", f"The script used more than {limits.cpu_seconds} s of CPU time."
    if sig == signal.SIGXFSZ:
        return "FILE_LIMIT", "The script wrote a file bigger than the size limit."
    if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and (
        peak_kb >= limits.memory_mb * 1024 * 0.8
    ):
        return "MEMORY_LIMIT", f"The script used more than {limits.memory_mb} MB of memory."
    if sig is not None:
        return "KILLED", f"The script was killed by {SIGNAL_NAMES.get(sig, sig)}."
    if exit_code:
        return "SCRIPT_ERROR", f"The script exited with code {exit_code} without an outcome."
    reason = pr.record_error or "no outcome was reported"
    return "SCRIPT_ERROR", f"The script ended without a result ({reason})."


def _peak(pr: ProcessResult) -> int | None:
    """The harness's own peak (VmHWM) when it reported one; ru_maxrss otherwise,
    which may include the size of the server process it was forked from."""
    if pr.record is not None and isinstance(pr.record.get("peak_kb"), int):
        return max(pr.record["peak_kb"], 0)
    return pr.peak_memory_kb


def _cpu(pr: ProcessResult) -> int | None:
    """CPU time the harness measured (it and its reaped children), else the rusage
    of the direct child (under bwrap that is bwrap's own, not the script's)."""
    if pr.record is not None and isinstance(pr.record.get("cpu_ms"), int):
        return max(pr.record["cpu_ms"], pr.cpu_time_ms or 0)
    return pr.cpu_time_ms

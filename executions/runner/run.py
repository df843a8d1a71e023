"""``run_script``'s body: workspace, environment, harness in the sandbox, outcome."""

import functools
import logging
import marshal
import os
import shutil
import signal
import time
from pathlib import Path

from django.conf import settings

from . import cgroups, identity, janitor, sandbox, stock, templates
from .diskguard import DiskGuard
from .environments import EnvironmentBuildFailed, base_prefix, ensure_environment, site_packages
from .execute import SIGNAL_NAMES, ProcessResult, watch
from .files import collect_files
from .harness import LAUNCHER
from .limits import rlimits
from .spec import RunOutcome
from .support import support_dir
from .workspace import (
    Workspace,
    create_workspace,
    give_to_run_user,
    sanitise_name,
)

logger = logging.getLogger(__name__)
PROXY_SOCKET = "proxy.sock"
PROXY_PORT = 3128


def prepare_and_run(spec, *, on_log, on_progress, should_cancel):
    """(workspace, RunOutcome). The workspace is the caller's to remove. Every
    resource of the run (its uid, cgroup, proxy) is released before returning."""

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
    refused = sandbox.rlimit_refused(backend, trusted=spec.trusted)
    if refused:
        return None, failed("SANDBOX_UNAVAILABLE", f"The run was refused: {refused}.")
    blocked = sandbox.unreachable_dir(backend)
    if blocked:
        return None, failed(
            "SANDBOX_UNAVAILABLE",
            f"The {backend} sandbox cannot start: {blocked} is not searchable by other users, "
            "so a run's uid cannot reach its environment (use SANDBOX_BACKEND=auto/ns, or "
            "give the folder o+x).",
        )
    ident = identity.acquire(spec.run_id)
    later = []  # releases that wait for the run's last (killed) process to finish exiting
    try:
        workspace, outcome = _prepare_and_run(
            spec, backend, ident, failed, on_log, on_progress, should_cancel, later
        )
    finally:
        if later:  # in the janitor thread: the uid only once its groups are gone
            janitor.submit(functools.partial(_release_late, later, ident))
        else:
            ident.release()  # (an internal error inside has removed the workspace already)
    outcome.duration_seconds = time.monotonic() - started
    return workspace, outcome


def _release_late(releases, ident) -> None:
    """Release what a run ended early left (its groups), then its uid, whatever a
    release raised (the uid is marked clean only when nothing of it runs)."""
    try:
        for release in releases:
            try:
                release()
            except Exception:  # noqa: BLE001 - logged; the rest is released all the same
                logger.exception("releasing the groups of a run failed")
    finally:
        ident.release()


def _prepare_and_run(spec, backend, ident, failed, on_log, on_progress, should_cancel, later):
    owner = (ident.uid, ident.gid) if ident.uid is not None else None
    workspace = create_workspace(spec.run_id, owner=owner, backend=backend)
    try:
        return _run_in(
            workspace, spec, backend, ident, failed, on_log, on_progress, should_cancel, later
        )
    except BaseException:
        workspace.remove()  # never leave a run's files behind, whatever failed
        raise


def _run_in(workspace, spec, backend, ident, failed, on_log, on_progress, should_cancel, later):
    inside = backend != "rlimit"
    try:
        script_name = sanitise_name(spec.filename or "script.py")
        _copy_inputs(spec, workspace, script_name)
    except OSError as exc:
        return workspace, failed("INPUT_FILE_ERROR", f"An input file could not be copied: {exc}")
    script = workspace.work / script_name
    script.write_text(spec.source, encoding="utf-8")
    os.chmod(script, 0o644)
    give_to_run_user(script, workspace.owner)
    workspace.snapshot()
    try:
        python = ensure_environment(spec.requirements, on_log=on_log)
    except EnvironmentBuildFailed as exc:
        return workspace, failed("DEPENDENCY_INSTALL_FAILED", exc.message)
    env_dir = python.parent.parent
    support = support_dir(str(settings.DATA_DIR))
    limits = spec.limits
    template = _template(spec, backend, python, env_dir, support)
    sizes = {"memory_bytes": limits.memory_mb * 1024 * 1024, "max_processes": limits.max_processes}
    prefix = templates.group_prefix(template) if template else ""
    group = (stock.take(prefix, **sizes) if template else None) or cgroups.open_run(
        f"{prefix}{ident.name}", **sizes
    )
    # the group the run's processes are in: a warm run's may be one made for an
    # earlier run (then ``group`` waits in its template for a later one)
    groups = {"used": group, "given_away": False, "dropped": [], "ended_early": False}
    proxy = None
    guard = DiskGuard(
        workspace.work,
        max_total_file_bytes=limits.max_total_file_bytes,
        max_files=limits.max_files,
        baseline_bytes=sum(size for size, _mtime in workspace.baseline.values()),
    )

    def should_stop() -> bool:
        return guard.tripped() or bool(should_cancel and should_cancel())

    try:
        if limits.network and inside:
            proxy = _start_proxy(workspace)
        result, warm = _run_harness(
            spec,
            workspace,
            backend,
            python,
            env_dir,
            support,
            inside_script=f"{sandbox.INSIDE_WORK}/{script_name}" if inside else str(script),
            ident=ident,
            groups=groups,
            proxy=proxy,
            template=template if group is not None else None,
            on_log=on_log,
            on_progress=on_progress,
            should_cancel=should_stop,
        )
        groups["ended_early"] = result.ended_early
        used = groups["used"]
        oom_kills = used.oom_kills() if used is not None else 0
        network_line = f"[scriptorium] {proxy.stats().summary()}\n" if proxy else ""
    finally:
        release = functools.partial(_release_groups, groups, ident, backend, template, sizes)
        if groups["ended_early"]:  # its killed process may still be exiting: not now
            later.append(release)
        else:
            release()
        if template is not None:  # the next run's group, made after this one
            janitor.submit(functools.partial(stock.make, prefix, **sizes))
        if proxy is not None:
            proxy.close()
    outcome = _outcome(spec, result, backend, oom_kills=oom_kills)
    outcome.warm = warm
    if guard.reason:  # stopped by the disk guard, not by a person
        outcome.status, outcome.error_code = "failed", "DISK_LIMIT"
        outcome.error_message = guard.reason
        on_log(f"[scriptorium] {guard.reason}\n")
    outcome.files, outcome.skipped_files = collect_files(
        workspace.work,
        workspace.baseline,
        max_files=limits.max_files,
        max_file_bytes=limits.max_file_bytes,
        max_total_file_bytes=limits.max_total_file_bytes,
    )
    room = max(0, limits.log_bytes - outcome.log_bytes)  # in bytes, like the output
    lines = [f"[scriptorium] File not collected: {line}\n" for line in outcome.skipped_files]
    if oom_kills:
        lines.append(
            f"[scriptorium] {oom_kills} process(es) of the run were killed: memory limit\n"
        )
    for text in [*lines, network_line]:  # counted against the log cap like the output
        size = len(text.encode())
        if not text:
            continue
        if size > room:
            outcome.log_truncated = True
            continue
        room -= size
        outcome.log_bytes += size
        on_log(text)
    return workspace, outcome


def _release_groups(groups, ident, backend, template, sizes) -> None:
    """Empty and remove the run's groups (killing what is left: under ns every process
    of the run joined them before it took the run's uid, so the uid is then known
    clean), remove those its template no longer uses, and give the template new ones
    for its spares when it wants some (after the run: not in its time)."""
    used = groups["used"]
    if used is not None and used.remove() and backend == "ns":
        ident.contained = True
    for name in groups["dropped"]:
        cgroups.remove_if_empty(name)
    if groups.get("wanted") and template is not None:
        templates.give_groups(template, count=groups["wanted"], **sizes)


def _inside(backend, python, env_dir, support) -> dict:
    """Where the run finds its environment and support files (ns, bwrap: fixed paths
    inside the sandbox; rlimit: the host's), and what is bound read-only."""
    if backend != "rlimit":
        env_in, support_in = sandbox.INSIDE_ENV, sandbox.INSIDE_SUPPORT
        ro_paths = [(support, support_in), (env_dir, env_in)]
        prefix = _base_prefix(env_dir)
        if prefix is not None and prefix != Path("/usr"):
            ro_paths.append((prefix, str(prefix)))
    else:
        env_in, support_in, ro_paths = str(env_dir), str(support), []
    return {
        "env_in": env_in,
        "support_in": support_in,
        "ro_paths": ro_paths,
        "python_in": f"{env_in}/{python.relative_to(env_dir)}",
        "site_dirs": [env_in + d[len(str(env_dir)) :] for d in _site_dirs(env_dir)],
    }


def _template(spec, backend, python, env_dir, support):
    """The warm template this run forks from, or None (cold: not ns, warm runs off or
    impossible here, or the environment's template is still starting)."""
    if backend != "ns" or templates.problem():
        return None
    try:
        return templates.template_for(
            env_dir=env_dir,
            python=python,
            layout=template_layout(python, env_dir, support),
            imports=spec.imports,
        )
    except OSError:
        return None


def template_layout(python: Path, env_dir: Path, support: Path) -> dict:
    """What a warm template of the environment is built from (see templates.py)."""
    inside = _inside("ns", python, env_dir, support)
    return {
        "ro_paths": inside["ro_paths"],
        "env": _template_env(inside["env_in"]),
        "executable": inside["python_in"],
        "support": inside["support_in"],
        "support_host": str(support),
        "paths": {
            "workdir": sandbox.INSIDE_WORK,
            "support_dir": inside["support_in"],
            "prefix": inside["env_in"],
            "site_dirs": inside["site_dirs"],
        },
    }


def _template_env(env_in: str) -> dict:
    """The environment a template imports its modules in: a run's, without what is
    the run's own (its id, progress fd, secrets)."""
    env = sandbox.scrubbed_env(
        env_dir=env_in, home=sandbox.INSIDE_HOME, tmp="/tmp", run_id="", progress_fd=0
    )  # noqa: S108 - the template's private tmpfs
    for name in ("SCRIPTORIUM_RUN_ID", "SCRIPTORIUM_PROGRESS_FD"):
        env.pop(name)
    return env


def _start_proxy(workspace: Workspace):
    """The run's network policy proxy, listening on a socket the sandbox sees in
    /run/scriptorium (the only way out of its network namespace)."""
    from .netpolicy import Policy, ProxyServer

    net = workspace.root / "net"
    net.mkdir(mode=0o755)
    server = ProxyServer(str(net / PROXY_SOCKET), Policy.from_settings())
    server.start()
    os.chmod(net / PROXY_SOCKET, 0o666)
    return server


def _copy_inputs(spec, workspace: Workspace, script_name: str) -> None:
    taken = {script_name.lower()}
    for item in spec.input_files:
        dest = workspace.work / sanitise_name(item.name, taken=taken)
        with item.open() as src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(dest, 0o644)
        give_to_run_user(dest, workspace.owner)


def _run_harness(
    spec, workspace, backend, python, env_dir, support, *, inside_script, ident, groups, proxy,
    template=None, **callbacks,
):  # fmt: skip
    limits = spec.limits
    group = groups["used"]  # the run's own, made for it
    inside = backend != "rlimit"
    paths = _inside(backend, python, env_dir, support)
    env_in, support_in, ro_paths = paths["env_in"], paths["support_in"], paths["ro_paths"]
    python_in, site_dirs = paths["python_in"], paths["site_dirs"]
    workdir = sandbox.INSIDE_WORK if inside else str(workspace.work)
    tmp = "/tmp" if inside else str(workspace.tmp)  # noqa: S108 - private tmpfs
    home = sandbox.INSIDE_HOME if inside else str(workspace.home)
    tmp_bytes = max(min(limits.memory_mb * 1024 * 1024, limits.max_total_file_bytes), 1 << 20)
    relay = None
    if proxy is not None:
        relay = {
            "host_dir": str(workspace.root / "net"),
            "socket_name": PROXY_SOCKET,
            "module_dir": str(support),
            "port": PROXY_PORT,
        }

    how = {"warm": False}

    def start(result_fd: int, progress_fd: int):
        if template is not None:
            try:
                proc = _start_warm(result_fd, progress_fd)
                how["warm"] = True
                return proc
            except templates.TemplateGone as exc:  # it ended meanwhile: cold, as always
                logger.info("warm template %s gone (%s): run %s starts cold", template.key,
                            exc, spec.run_id)  # fmt: skip
        return _start_cold(result_fd, progress_fd)

    def _control(result_fd: int, progress_fd: int) -> dict:
        control = {
            "workdir": workdir,
            "support_dir": support_in,
            "site_dirs": site_dirs,
            "prefix": env_in,
            "script": inside_script,
            "call_style": spec.call_style,
            "inputs": dict(spec.inputs or {}),
            "argv": [str(a) for a in spec.argv or []],
            "result_fd": result_fd,
            "progress_fd": progress_fd,
            "result_bytes": limits.result_bytes,
            "rlimits": rlimits(limits),
        }
        if relay is not None and backend == "bwrap":
            control["relay"] = {
                "socket": f"{sandbox.RELAY_DIR}/{PROXY_SOCKET}",
                "port": PROXY_PORT,
            }
        return control

    def _env(progress_fd: int) -> dict:
        env = sandbox.scrubbed_env(
            env_dir=env_in, home=home, tmp=tmp, run_id=spec.run_id, progress_fd=progress_fd
        )
        if relay is not None:
            from .netpolicy import PROXY_ENV

            env.update(PROXY_ENV)
        env.update({name: value for name, value in spec.secrets.items() if name not in env})
        return env

    def _start_warm(result_fd: int, progress_fd: int):
        """Fork the run from the environment's template (same sandbox, same limits)."""
        control = _control(templates.FD_RESULT, templates.FD_PROGRESS)
        user = sandbox.run_user(ident)
        fds: dict[str, int] = {}
        out_r, out_w = os.pipe()
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        fds["exit"] = exit_w  # PID 1 of the run reports the script's end on it
        try:
            fds["control"] = sandbox._memfd(marshal.dumps(control))
            fds.update(output=out_w, result=result_fd, progress=progress_fd)
            fds["work"] = templates.detached_mount(workspace.work)
            if relay is not None:
                fds["net"] = templates.detached_mount(workspace.root / "net")
            for i, path in enumerate(group.procs_files):
                fds[f"cgroup{i}"] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            request = {
                "user": user,
                "tmpfs": [
                    ("/tmp", tmp_bytes, 0o1777, None),
                    ("/dev/shm", tmp_bytes, 0o1777, None),
                    (sandbox.INSIDE_HOME, tmp_bytes, 0o700, user),
                ],
                "identity_files": [
                    (name.rsplit("/", 1)[1], data)
                    for name, data, _mode in sandbox._passwd_files(ident)
                    if name in ("/etc/passwd", "/etc/group")
                ],
                "env": _env(templates.FD_PROGRESS),
                "executable": python_in,
                "support": support_in,
                "relay": {
                    "dir": sandbox.RELAY_DIR,
                    "socket": f"{sandbox.RELAY_DIR}/{PROXY_SOCKET}",
                    "port": PROXY_PORT,
                }
                if relay is not None
                else None,
            }
            request["group"] = {
                "name": group.name,
                "limits": [limits.memory_mb * 1024 * 1024, limits.max_processes],
            }
            try:
                proc = templates.launch(template, request, fds, exit_fd=exit_r)
            except BaseException:
                os.close(exit_r)  # (else the process owns it)
                raise
            if proc.group_name != group.name:  # PID 2 sits in a group made for it earlier
                adopted = cgroups.adopt(proc.group_name)
                if adopted is None:
                    proc.kill()
                    proc.close()
                    raise templates.TemplateGone(f"no run group {proc.group_name}")
                groups.update(used=adopted, given_away=True)
            proc.group = groups["used"]  # for proc.end_now
            groups["dropped"] = proc.dropped_groups
            groups["wanted"] = proc.groups_wanted
        except BaseException:
            os.close(out_r)
            raise
        finally:
            for name, fd in fds.items():
                if name not in ("result", "progress"):  # watch closes those
                    os.close(fd)
            if "output" not in fds:
                os.close(out_w)
        proc.stdout = open(out_r, "rb", buffering=0)  # noqa: SIM115 - watch closes it
        return proc

    def _start_cold(result_fd: int, progress_fd: int):
        control = _control(result_fd, progress_fd)
        # The control record travels in an anonymous memory file whose fd the harness
        # reads and closes first: nothing on disk, no control dir to bind into bwrap.
        control_fd = os.memfd_create("scriptorium-control", os.MFD_CLOEXEC)
        try:
            data = memoryview(marshal.dumps(control))
            while data:
                data = data[os.write(control_fd, data) :]
            os.lseek(control_fd, 0, os.SEEK_SET)
            env = _env(progress_fd)
            inner = [python_in, "-I", "-S", "-B", "-u", "-c", LAUNCHER, support_in, str(control_fd)]
            return sandbox.spawn(
                backend,
                inner,
                box_root=workspace.box,
                work=workspace.work,
                home_bytes=tmp_bytes,
                ro_paths=ro_paths,
                network=limits.network,
                tmp_bytes=tmp_bytes,
                env=env,
                pass_fds=(result_fd, progress_fd, control_fd),
                identity=ident,
                cgroup=group,
                relay=relay,
                inproc={
                    "python": str(python),
                    "executable": python_in,
                    "support": support_in,
                    "control_fd": control_fd,
                }
                if backend == "ns" and settings.RUN_NS_INPROCESS
                else None,
            )
        finally:
            os.close(control_fd)

    def kill_tree(proc):
        if isinstance(proc, templates.WarmProcess):
            proc.kill()
            groups["used"].kill()
        else:
            sandbox.kill(proc, identity=ident, cgroup=group, backend=backend)

    result = watch(
        start,
        kill_tree=kill_tree,
        timeout=limits.timeout_seconds,
        result_limit=limits.result_bytes,
        log_limit=limits.log_bytes,
        **callbacks,
    )
    return result, how["warm"]


@functools.lru_cache(maxsize=64)
def _site_dirs(env_dir: Path) -> list[str]:
    """The environment's site-packages folders (a ready environment never changes)."""
    return [str(p) for p in site_packages(env_dir)]


@functools.lru_cache(maxsize=64)
def _base_prefix(env_dir: Path) -> Path | None:
    return base_prefix(env_dir)


def _outcome(spec, pr: ProcessResult, backend: str, *, oom_kills: int = 0):

    limits = spec.limits
    exit_code, sig = pr.returncode, pr.signal
    if backend in ("bwrap", "ns") and sig is None and exit_code is not None and exit_code > 128:
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
            bad = _unstorable_text(result)
            if bad:
                status, result, code = "failed", None, "RESULT_NOT_JSON"
                message = f"The result holds text that cannot be stored: {bad}."
        else:
            code = _clean(str(pr.record.get("code") or "SCRIPT_ERROR"))[:64]
            message = _clean(str(pr.record.get("message") or "The script failed."))[:1000]
    elif oom_kills and pr.record is None:
        code = "MEMORY_LIMIT"
        message = f"The run used more than {limits.memory_mb} MB of memory (all its processes)."
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


def _clean(text: str) -> str:
    """``text`` without what a database text column refuses (NUL, lone surrogates)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _unstorable_text(value) -> str:
    """Why ``value`` (a parsed result) cannot be stored as JSON in every supported
    database, or '': PostgreSQL's jsonb refuses NUL characters and lone surrogates."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return ""


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
    which may include the size of the server process it was forked from. A run ended
    at its record: the kernel's count (the record may be the script's own)."""
    if pr.ended_early and pr.peak_memory_kb:
        return pr.peak_memory_kb
    if pr.record is not None and isinstance(pr.record.get("peak_kb"), int):
        return max(pr.record["peak_kb"], 0)
    return pr.peak_memory_kb


def _cpu(pr: ProcessResult) -> int | None:
    """CPU time the harness measured (it and its reaped children), else the rusage
    of the direct child (under bwrap that is bwrap's own, not the script's). A run
    ended at its record: the kernel's count (the record may be the script's own)."""
    if pr.ended_early and pr.cpu_time_ms is not None:
        return pr.cpu_time_ms
    if pr.record is not None and isinstance(pr.record.get("cpu_ms"), int):
        return max(pr.record["cpu_ms"], pr.cpu_time_ms or 0)
    return pr.cpu_time_ms


def warm_up(requirements: list[str], *, imports=(), timeout: float = 30.0) -> bool:
    """Make sure the environment's warm template is ready (start it and wait): True
    when runs of it will fork warm, False when warm runs are off or impossible here,
    or it did not get ready in ``timeout`` seconds. For operators and tests; a run
    itself never waits for a template."""
    backend = sandbox.backend_name()
    if backend != "ns" or templates.problem():
        return False
    python = ensure_environment(list(requirements))
    env_dir = python.parent.parent
    support = support_dir(str(settings.DATA_DIR))
    layout = template_layout(python, env_dir, support)
    template = templates.wait_ready(
        env_dir=env_dir, python=python, layout=layout, imports=imports, timeout=timeout
    )
    return template is not None

"""The sandbox: the one place that starts script processes.

Two backends behind one interface (``spawn``, ``kill``, ``describe``):

- ``bwrap`` (bubblewrap): a read-only system, the workspace the only writable place,
  a private /tmp, no network unless allowed, new user/PID/IPC/UTS/cgroup namespaces,
  dies with its parent; run itself as the unprivileged uid (bwrap started as root
  would keep capabilities inside).
- ``rlimit``: own session and process group, scrubbed environment, working directory
  = workspace, the unprivileged uid when the server is root.

Both always get the rlimits (the harness applies them to itself before any script
code runs: address space, CPU, file size, open files, processes, no core files).
"""

import functools
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

BACKENDS = ("bwrap", "rlimit")
# What of /etc a sandboxed program sees: these files (copied, see etc_dir) and these
# directories (bound live), plus resolv.conf (bound live) when the run may use the network.
_ETC_FILES = (
    "ld.so.cache ld.so.conf localtime timezone nsswitch.conf passwd group hosts host.conf "
    "mime.types gai.conf"
).split()
_ETC_DIRS = "ld.so.conf.d ssl ca-certificates pki alternatives".split()
_ETC_ROOT = "/etc"
_LOCALE_VARS = ("LANG", "LC_ALL")
_etc_ready: set[Path] = set()


class SandboxUnavailable(Exception):
    """The configured backend cannot run on this machine."""


def run_user() -> tuple[int, int] | None:
    """(uid, gid) scripts run as, or None when they run as the server's own user."""
    uid = settings.RUN_UID
    if uid is None or os.geteuid() != 0 and uid == os.geteuid():
        return None
    gid = settings.RUN_GID if settings.RUN_GID is not None else uid
    return int(uid), int(gid)


def _switch_user() -> tuple[list[str], dict]:
    """(argv prefix, Popen keyword arguments) that make the started program the run
    uid/gid with no supplementary groups and no_new_privs; ([], {}) when the server
    does not switch users (it is not root).

    The switch is done by util-linux ``setpriv`` exec'd in the child rather than by
    Popen's ``user=``/``group=``: with those, CPython must fork() the whole server
    process (about 10 ms for a Django worker); without them it uses vfork(). Where
    setpriv is missing, Popen's own switch is the (slower) fallback."""
    user = run_user()
    if user is None or os.geteuid() != 0:
        return [], {}
    setpriv = _setpriv_path()
    if setpriv:
        uid, gid = _id_names(*user)
        return [
            setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
        ], {}
    return [], {"user": user[0], "group": user[1], "extra_groups": [], "preexec_fn": _no_new_privs}


@functools.cache
def _id_names(uid: int, gid: int) -> tuple[str, str]:
    """The user and group names setpriv should be given for uid/gid: the name when it
    maps back to exactly that id in the files database, else the number. setpriv looks
    every argument up as a name first; a number misses /etc/passwd and loads the next
    NSS module (systemd) on every run, about 1 ms."""
    import grp
    import pwd

    user, group = str(uid), str(gid)
    try:
        name = pwd.getpwuid(uid).pw_name
        if pwd.getpwnam(name).pw_uid == uid and not name.isdigit():
            user = name
    except KeyError:
        pass
    try:
        name = grp.getgrgid(gid).gr_name
        if grp.getgrnam(name).gr_gid == gid and not name.isdigit():
            group = name
    except KeyError:
        pass
    return user, group


@functools.cache
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def _setpriv_path() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin")


def _no_new_privs() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


@functools.cache
def _bwrap_check(path: str, uid_key: tuple) -> str:
    """'' when bubblewrap starts a sandbox here, else why not (cached per process)."""
    try:
        prefix, user_kwargs = _switch_user()
        proc = subprocess.run(
            [
                *prefix,
                path,
                "--unshare-all",
                "--die-with-parent",
                *_system_binds(),
                "--",
                "/bin/true",
            ],
            capture_output=True,
            timeout=10,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            **user_kwargs,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode:
        return proc.stderr.decode("utf-8", "replace").strip()[:300] or f"exit {proc.returncode}"
    return ""


def bwrap_problem() -> str:
    """'' when bwrap is usable, else the reason (missing, or failing to start)."""
    path = _bwrap_path()
    if not path:
        return "bwrap is not installed (apt-get install bubblewrap)"
    return _bwrap_check(path, (settings.RUN_UID, settings.RUN_GID))


def available_backends() -> list[str]:
    """The backends that work on this machine, best first."""
    return ["bwrap", "rlimit"] if not bwrap_problem() else ["rlimit"]


def backend_name(requested: str | None = None) -> str:
    """The backend to use: SANDBOX_BACKEND (or ``requested``); ``auto`` picks bwrap
    when it works. Raises SandboxUnavailable when bwrap is asked for and cannot run."""
    wanted = (requested or settings.SANDBOX_BACKEND or "auto").lower()
    if wanted == "auto":
        return available_backends()[0]
    if wanted not in BACKENDS:
        raise SandboxUnavailable(f"unknown SANDBOX_BACKEND {wanted!r} (auto, bwrap, rlimit)")
    if wanted == "bwrap" and bwrap_problem():
        raise SandboxUnavailable(bwrap_problem())
    return wanted


def scrubbed_env(*, env_dir: Path, home: Path, tmp: str, run_id: str, progress_fd: int) -> dict:
    """The whole environment a script sees: nothing from the server's (no secrets,
    no DATABASE_URL, no SECRET_KEY), only what a Python program needs."""
    return {
        "PATH": f"{env_dir}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "VIRTUAL_ENV": str(env_dir),
        "SCRIPTORIUM_RUN_ID": str(run_id),
        "SCRIPTORIUM_PROGRESS_FD": str(progress_fd),
    }


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def etc_dir() -> Path:
    """The sandbox's /etc: a copy of ``_ETC_FILES`` (symlinks followed, as a bind would;
    modes kept, at most 0644), with empty mount points for ``_ETC_DIRS`` and resolv.conf. One
    bind instead of one per file: bwrap re-reads the mount table after every bind, so
    each costs about 0.3 ms. A new copy is made as soon as one of the files changes
    (size, mtime, inode: checked on every run, a few microseconds)."""
    stats = []
    for name in _ETC_FILES:
        try:
            st = os.stat(f"{_ETC_ROOT}/{name}")
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            mode = stat.S_IMODE(st.st_mode) & 0o644  # never more readable than the original
            stats.append(f"{name}:{mode:o}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(stats).encode()).hexdigest()[:16]
    target = Path(settings.DATA_DIR) / "runner" / f"etc-{digest}"
    if target in _etc_ready or target.is_dir():  # complete: made aside, then renamed
        _etc_ready.add(target)
        return target
    from .workspace import ensure_traversable, remove_tree

    ensure_traversable(target.parent)
    tmp = target.with_name(f".etc-{digest}-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir(mode=0o755)
    for entry in stats:
        name, mode = entry.split(":")[:2]
        shutil.copyfile(f"{_ETC_ROOT}/{name}", tmp / name)
        os.chmod(tmp / name, int(mode, 8))
    for name in _ETC_DIRS:
        if os.path.isdir(f"{_ETC_ROOT}/{name}"):
            (tmp / name).mkdir(mode=0o755)
    (tmp / "resolv.conf").touch(mode=0o644)
    os.chmod(tmp, 0o755)
    try:
        os.rename(tmp, target)
    except OSError:  # another process made the same copy first
        remove_tree(tmp)
    _etc_ready.add(target)
    return target


def bwrap_command(
    inner: list[str],
    *,
    work: Path,
    ro_paths: list[Path],
    network: bool,
    tmp_bytes: int,
    setenv: dict | None = None,
) -> list[str]:
    """The bubblewrap command line around ``inner``. Paths keep their names inside;
    ``setenv`` is added to the environment ``inner`` gets."""
    args = [_bwrap_path() or "bwrap", "--unshare-all"]
    if network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    args += _system_binds()
    args += ["--ro-bind", str(etc_dir()), "/etc"]
    for name in _ETC_DIRS + (["resolv.conf"] if network else []):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for path in ro_paths:
        if not str(path).startswith("/usr/"):
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(work), str(work), "--remount-ro", "/", "--chdir", str(work)]
    for name, value in (setenv or {}).items():
        args += ["--setenv", name, value]
    return [*args, "--", *inner]


def spawn(
    backend: str,
    inner: list[str],
    *,
    work: Path,
    ro_paths: list[Path],
    network: bool,
    tmp_bytes: int,
    env: dict,
    pass_fds: tuple[int, ...],
) -> subprocess.Popen:
    """Start ``inner`` (the harness command) in the sandbox: stdin from /dev/null,
    stdout and stderr merged into one pipe, its own session and process group, the
    unprivileged uid, ``pass_fds`` kept open. The caller reads ``proc.stdout``."""
    argv = inner
    if backend == "bwrap":
        # setpriv and bwrap need no locale: without LANG/LC_ALL they load none (about
        # 0.5 ms); bwrap puts them back into the harness's environment.
        locale = {name: env[name] for name in _LOCALE_VARS if name in env}
        env = {name: value for name, value in env.items() if name not in locale}
        argv = bwrap_command(
            inner,
            work=work,
            ro_paths=ro_paths,
            network=network,
            tmp_bytes=tmp_bytes,
            setenv=locale,
        )
    prefix, user_kwargs = _switch_user()
    return subprocess.Popen(
        prefix + argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=str(work),
        env=env,
        pass_fds=pass_fds,
        close_fds=True,
        start_new_session=True,
        bufsize=0,
        **user_kwargs,
    )


def kill(proc: subprocess.Popen, run_id: str | None = None, backend: str = "rlimit") -> None:
    """Kill the run's whole process group (under bwrap, killing bwrap tears down
    its PID namespace and everything in it); under rlimit also any process of the
    run uid that still carries this run's marker (one that left the group with
    setsid). Call it before reaping the leader, so its pid cannot have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if run_id is not None and backend != "bwrap":
        sweep(str(run_id))


def sweep(run_id: str) -> int:
    """SIGKILL the processes whose environment still says SCRIPTORIUM_RUN_ID=run_id
    (owned by the run uid). Returns how many were killed."""
    user = run_user()
    if user is None:
        return 0
    marker = f"\0SCRIPTORIUM_RUN_ID={run_id}\0".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != user[0]:
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = b"\0" + fh.read()
            if marker in environ:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed


def describe() -> dict:
    """What protects a run on this machine: backend, uid, namespaces, network,
    rlimits. Used by /health/ and the admin index."""
    from .limits import limits_for, rlimits

    try:
        backend = backend_name()
        problem = ""
    except SandboxUnavailable as exc:
        backend, problem = "", str(exc)
    user = run_user()
    limits = limits_for()
    info = {
        "backend": backend,
        "configured": settings.SANDBOX_BACKEND,
        "available": available_backends(),
        "uid": user[0] if user else os.geteuid(),
        "unprivileged": (user is not None) or os.geteuid() != 0,
        "namespaces": ["user", "pid", "net", "ipc", "uts", "cgroup", "mount"]
        if backend == "bwrap"
        else [],
        "network_default": "on" if limits.network else "off",
        "network_enforced": backend == "bwrap",
        "rlimits": {name: soft for name, soft, _hard in rlimits(limits)},
        "python": sys.version.split()[0],
    }
    if problem or (backend != "bwrap" and bwrap_problem()):
        info["bwrap_problem"] = problem or bwrap_problem()
    return info

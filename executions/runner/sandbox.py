"""The sandbox: the one place that starts script processes.

Three backends behind one interface (``spawn``, ``kill``, ``describe``):

- ``ns`` (built in, box.py; the default wherever the kernel allows namespaces): new
  mount, PID, network, IPC, UTS and cgroup namespaces (and a user namespace when the
  server is not root), a root built from read-only binds, the workspace (/work) the
  only writable disk, private /tmp, /dev/shm and HOME on size-capped tmpfs, only its
  own loopback (an allowed network goes through the policy proxy), the run's own uid,
  no capabilities, no_new_privs; the namespace dies with its PID 1.
- ``bwrap`` (bubblewrap, when installed): the same picture drawn by bwrap, started as
  the run's uid (bwrap started as root would keep capabilities inside).
- ``rlimit``: own session and process group, scrubbed environment, working directory
  = workspace, the run's own uid when the server is root. It isolates nothing but
  resources, so the runner refuses it for untrusted runs unless the operator names it.

Every backend puts the run in a cgroup of its own where the host allows (memory and
process limits for the whole tree, a kill that reaches all of it) and always applies
the rlimits (the harness sets them on itself before any script code runs).
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

BACKENDS = ("ns", "bwrap", "rlimit")
ISOLATING = frozenset({"ns", "bwrap"})
INSIDE_WORK = "/work"  # the workspace as ns and bwrap runs see it
INSIDE_HOME = "/home/sandbox"  # HOME: a private tmpfs, never collected
INSIDE_ENV = "/opt/scriptorium/env"  # the run's Python environment (read-only)
INSIDE_SUPPORT = "/opt/scriptorium/support"  # the harness and helpers (read-only)
_SECCOMP_ARCHES = ("x86_64", "aarch64")
RELAY_DIR = "/run/scriptorium"  # the policy proxy's socket, inside
INNER_ID = 1000  # the run's uid/gid inside a user namespace (server not root)
# What of /etc a sandboxed program sees: these files (copied, see etc_dir) and these
# directories (bound live), plus resolv.conf (bound live) when the run may use the network.
_ETC_FILES = (
    "ld.so.cache ld.so.conf localtime timezone nsswitch.conf passwd group hosts host.conf "
    "mime.types gai.conf"
).split()
_ETC_DIRS = "ld.so.conf.d ssl ca-certificates pki alternatives fonts".split()
_ETC_ROOT = "/etc"
_LOCALE_VARS = ("LANG", "LC_ALL")
_etc_ready: set[Path] = set()


class SandboxUnavailable(Exception):
    """The configured backend cannot run on this machine."""


def run_user(identity=None) -> tuple[int, int] | None:
    """(uid, gid) a run with ``identity`` executes as outside any user namespace, or
    None when scripts run as the server's own (unprivileged) user."""
    if identity is None or identity.uid is None or os.geteuid() != 0:
        return None
    return identity.uid, identity.gid


def _switch_user(identity=None) -> tuple[list[str], dict]:
    """(argv prefix, Popen keyword arguments) that make the started program the run's
    uid/gid with no supplementary groups and no_new_privs; ([], {}) when the server
    does not switch users (it is not root).

    The switch is done by util-linux ``setpriv`` exec'd in the child rather than by
    Popen's ``user=``/``group=``: with those, CPython must fork() the whole server
    process (about 10 ms for a Django worker); without them it uses vfork(). Where
    setpriv is missing, Popen's own switch is the (slower) fallback."""
    user = run_user(identity)
    if user is None:
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


def _join_and_switch(procs_files: list[str], user: tuple[int, int]):
    """A preexec_fn (the fallback without setpriv): join the run's cgroups as root,
    then become the run's uid/gid with no groups and no_new_privs."""

    def switch() -> None:
        for path in procs_files:
            with open(path, "w") as fh:
                fh.write("0")
        os.setgroups([])
        os.setresgid(user[1], user[1], user[1])
        os.setresuid(user[0], user[0], user[0])
        _no_new_privs()

    return switch


def _no_new_privs() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


@functools.cache
def _bwrap_check(path: str) -> str:
    """'' when bubblewrap starts a sandbox here, else why not (cached per process)."""
    from . import identity as run_identity

    ident = run_identity.acquire("bwrap-check")
    try:
        prefix, user_kwargs = _switch_user(ident)
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
    finally:
        ident.release()
    if proc.returncode:
        return proc.stderr.decode("utf-8", "replace").strip()[:300] or f"exit {proc.returncode}"
    return ""


def bwrap_problem() -> str:
    """'' when bwrap is usable, else the reason (missing, or failing to start)."""
    path = _bwrap_path()
    if not path:
        return "bwrap is not installed (apt-get install bubblewrap)"
    return _bwrap_check(path)


_ns_checked: dict[str, str] = {}


def ns_problem() -> str:
    """'' when the built-in namespace sandbox starts here, else why not (the kernel
    refuses user, mount, PID or network namespaces, or /proc cannot be mounted).
    Checked once per process by starting a real box around ``/bin/true``."""
    key = str(settings.DATA_DIR)
    if key not in _ns_checked:
        _ns_checked[key] = _ns_check()
    return _ns_checked[key]


def _ns_check() -> str:
    import tempfile

    from . import identity as run_identity
    from .workspace import remove_tree

    try:
        top = Path(tempfile.mkdtemp(prefix="scriptorium-nscheck-"))
    except OSError as exc:
        return f"no temporary folder: {exc}"
    ident = run_identity.acquire("ns-check")
    try:
        os.chmod(top, 0o711)
        (top / "root").mkdir(mode=0o700)
        (top / "work").mkdir(mode=0o700)
        if ident.uid is not None:
            os.chown(top / "work", ident.uid, ident.gid)
        proc = spawn(
            "ns",
            ["/bin/true"],
            box_root=top / "root",
            work=top / "work",
            home_bytes=1 << 20,
            ro_paths=[],
            network=False,
            tmp_bytes=1 << 20,
            env={"PATH": "/usr/bin:/bin"},
            pass_fds=(),
            identity=ident,
            cgroup=None,
        )
        out, _ = proc.communicate(timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        ident.release()
        remove_tree(top)
    if proc.returncode:
        text = out.decode("utf-8", "replace").strip().splitlines()
        return (text[-1] if text else f"exit {proc.returncode}")[:300]
    return ""


def available_backends() -> list[str]:
    """The backends that work on this machine, best first (rlimit always works, but
    it isolates nothing but resources)."""
    found = [
        name for name, problem in (("ns", ns_problem), ("bwrap", bwrap_problem)) if not problem()
    ]
    return [*found, "rlimit"]


def backend_name(requested: str | None = None) -> str:
    """The backend to use: SANDBOX_BACKEND (or ``requested``); ``auto`` picks the first
    isolating backend that works (ns, then bwrap), else ``rlimit`` (which the runner
    refuses for runs not marked trusted unless the operator named it). Raises
    SandboxUnavailable when a named backend cannot run here."""
    wanted = (requested or settings.SANDBOX_BACKEND or "auto").lower()
    if wanted == "auto":
        return available_backends()[0]
    if wanted not in BACKENDS:
        raise SandboxUnavailable(f"unknown SANDBOX_BACKEND {wanted!r} (auto, ns, bwrap, rlimit)")
    problem = {"ns": ns_problem, "bwrap": bwrap_problem}.get(wanted, lambda: "")()
    if problem:
        raise SandboxUnavailable(f"{wanted}: {problem}")
    return wanted


def isolating(backend: str) -> bool:
    """True for the backends that keep a run away from the server's files, processes
    and network (not only within resource limits)."""
    return backend in ISOLATING


def rlimit_refused(backend: str, *, trusted: bool) -> str:
    """Why a run may not use ``backend``, or '' when it may: rlimit isolates nothing,
    so only trusted (staff) runs use it, unless the operator chose it by name."""
    if backend != "rlimit" or trusted or (settings.SANDBOX_BACKEND or "").lower() == "rlimit":
        return ""
    why = "; ".join(p for p in (ns_problem(), bwrap_problem()) if p)
    return (
        "no isolating sandbox works on this server (" + why + "); runs of users who are not "
        "staff are refused until the operator fixes that or sets SANDBOX_BACKEND=rlimit"
    )


def unreachable_dir(backend: str) -> str:
    """A folder runs need that a run's uid cannot reach under ``backend`` (bwrap and
    rlimit start as that uid; ns binds as root), or ''."""
    if backend == "ns" or os.geteuid() != 0:
        return ""
    for name in ("ENVS_DIR", "WORKSPACES_DIR", "DATA_DIR"):
        path = Path(getattr(settings, name)).resolve()
        for part in [path, *path.parents]:
            try:
                if part.exists() and not os.stat(part).st_mode & stat.S_IXOTH:
                    if part in Path(settings.DATA_DIR).resolve().parents:
                        return str(part)
            except OSError:
                continue
    return ""


def scrubbed_env(*, env_dir: Path, home: str, tmp: str, run_id: str, progress_fd: int) -> dict:
    """The whole environment a script sees: nothing from the server's (no secrets,
    no DATABASE_URL, no SECRET_KEY), only what a Python program needs."""
    return {
        "PATH": f"{env_dir}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "MPLBACKEND": "Agg",
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
    """The bwrap sandbox's /etc: a copy of ``_ETC_FILES`` (symlinks followed, as a bind
    would; modes kept, at most 0644), with empty mount points for ``_ETC_DIRS`` and
    resolv.conf. One bind instead of one per file: bwrap re-reads the mount table after
    every bind, so each costs about 0.3 ms. A new copy is made as soon as one of the
    files changes (size, mtime, inode: checked on every run, a few microseconds)."""
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
    ro_paths: list[tuple[Path, str]],
    network: bool,
    tmp_bytes: int,
    home_bytes: int,
    setenv: dict | None = None,
    relay_dir: str | None = None,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line around ``inner``. The workspace is /work, HOME a
    private tmpfs; the environment keeps its path. The network namespace is always
    new (only its own loopback; an allowed network goes through the policy proxy)."""
    args = [_bwrap_path() or "bwrap", "--unshare-all"]
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if seccomp_fd is not None:  # the same filter as the ns box (box.seccomp_program)
        args += ["--seccomp", str(seccomp_fd)]
    args += _system_binds()
    args += ["--ro-bind", str(etc_dir()), "/etc"]
    for name in _ETC_DIRS:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    args += ["--size", str(tmp_bytes), "--tmpfs", "/dev/shm"]
    args += ["--perms", "0700", "--size", str(home_bytes), "--tmpfs", INSIDE_HOME]
    args += ["--dir", "/var", "--symlink", "/tmp", "/var/tmp"]
    if relay_dir is not None:
        args += ["--ro-bind", str(relay_dir), RELAY_DIR]
    for source, target in ro_paths:
        if not str(source).startswith("/usr/") or str(source) != str(target):
            args += ["--ro-bind", str(source), str(target)]
    args += ["--bind", str(work), INSIDE_WORK, "--remount-ro", "/", "--chdir", INSIDE_WORK]
    for name, value in (setenv or {}).items():
        args += ["--setenv", name, value]
    return [*args, "--", *inner]


def _passwd_files(identity) -> list[tuple[str, bytes, int]]:
    """/etc/passwd and /etc/group as the run sees them: root, the run user, nobody
    (the host's user list stays on the host)."""
    uid, gid = (identity.uid, identity.gid) if run_user(identity) else (INNER_ID, INNER_ID)
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{uid}:{gid}:Scriptorium run:{INSIDE_HOME}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n"
    hosts = "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    return [
        ("/etc/passwd", passwd.encode(), 0o644),
        ("/etc/group", group.encode(), 0o644),
        ("/etc/hosts", hosts.encode(), 0o644),
    ]


def _etc_file_contents() -> list[tuple[str, bytes, int]]:
    out = []
    for name in _ETC_FILES:
        if name in ("passwd", "group", "hosts"):
            continue
        try:
            with open(f"{_ETC_ROOT}/{name}", "rb") as fh:
                out.append((f"/etc/{name}", fh.read(1 << 20), 0o644))
        except OSError:
            continue
    return out


def box_control(
    inner: list[str],
    *,
    box_root: Path,
    work: Path,
    ro_paths: list[tuple[Path, str]],
    tmp_bytes: int,
    home_bytes: int,
    env: dict,
    pass_fds: tuple[int, ...],
    identity,
    cgroup_fds: list[int],
    relay: dict | None = None,
) -> dict:
    """The record the ns box (box.py) builds the sandbox from: what to bind where,
    which files and tmpfs to make, who the script runs as, what to execute."""
    user = run_user(identity)
    dirs, binds, symlinks = root_layout(ro_paths)
    binds.append((str(work), INSIDE_WORK, True, False))
    if relay is not None:
        binds.append((relay["host_dir"], RELAY_DIR, False, False))
    owner = user if user else (INNER_ID, INNER_ID)
    control = {
        "root": str(box_root),
        "dirs": dirs,
        "binds": binds,
        "symlinks": symlinks,
        "files": _passwd_files(identity) + _etc_file_contents(),
        "tmpfs": [
            ("/tmp", tmp_bytes, 0o1777, None),
            ("/dev/shm", tmp_bytes, 0o1777, None),
            (INSIDE_HOME, home_bytes, 0o700, owner),
        ],
        "userns": None
        if user or os.geteuid() == 0
        else (INNER_ID, os.geteuid(), INNER_ID, os.getegid()),
        "user": user,
        "cgroup_fds": list(cgroup_fds),
        "pass_fds": list(pass_fds),
        "cwd": INSIDE_WORK,
        "argv": list(inner),
        "env": dict(env),
        "relay": None,
    }
    if relay is not None:
        control["relay"] = {
            "path": relay["module_dir"],
            "socket": f"{RELAY_DIR}/{relay['socket_name']}",
            "port": relay["port"],
        }
    return control


def root_layout(ro_paths: list[tuple[Path, str]]) -> tuple[list, list, list]:
    """(dirs, binds, symlinks) of the sealed root every ns run (and warm template) sees:
    the system read-only, the /etc folders programs read, the harmless devices, and
    ``ro_paths`` (host path, inside path) read-only."""
    dirs = ["/etc", "/dev", "/run", "/home", "/var", INSIDE_WORK]
    binds: list[tuple[str, str, bool, bool]] = [("/usr", "/usr", False, False)]
    symlinks = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            symlinks.append((str(path), os.readlink(path)))
        elif path.is_dir():
            binds.append((str(path), str(path), False, False))
    for name in _ETC_DIRS:
        binds.append((f"/etc/{name}", f"/etc/{name}", False, True))
    for node in ("null", "zero", "full", "random", "urandom"):
        binds.append((f"/dev/{node}", f"/dev/{node}", True, False))
    symlinks += [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/var/tmp", "/tmp"),
    ]
    for source, target in ro_paths:
        if not str(source).startswith("/usr/") or str(source) != str(target):
            binds.append((str(source), str(target), False, False))
    return dirs, binds, symlinks


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("scriptorium-box", 0)  # inherited by the box, which closes it
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _box_program(python: str | None = None) -> list[str]:
    """The box's command line: run by ``python`` (the run's environment's interpreter,
    which then becomes the harness itself) or by the server's own."""
    from .support import support_dir

    support = support_dir(str(settings.DATA_DIR))
    return [python or sys.executable, "-I", "-S", "-B", "-u", str(support / "_scriptorium_box.py")]


_CGROUP_JOIN = (
    'for f; do shift; [ "$f" = -- ] && break; echo 0 > "$f" || exit 125; done; '
    'unset PWD OLDPWD; exec "$@"'
)


def spawn(
    backend: str,
    inner: list[str],
    *,
    box_root: Path | None = None,
    work: Path,
    home_bytes: int,
    ro_paths: list[tuple[Path, str]],
    network: bool,
    tmp_bytes: int,
    env: dict,
    pass_fds: tuple[int, ...],
    identity,
    cgroup=None,
    relay: dict | None = None,
    inproc: dict | None = None,
) -> subprocess.Popen:
    """Start ``inner`` (the harness command) in the sandbox: stdin from /dev/null,
    stdout and stderr merged into one pipe, its own session and process group, the
    run's own uid, in the run's cgroup (when there is one), ``pass_fds`` kept open.
    The caller reads ``proc.stdout``. Under ns, ``inproc`` (the harness's control fd
    and paths) makes the box become the harness instead of exec'ing ``inner``: one
    interpreter start less. Under ns and bwrap, ``inner`` sees the workspace
    as /work, a private HOME and each ``ro_paths`` (host path, inside path) read-only;
    under rlimit, every host path as it is."""
    procs_files = [str(p) for p in cgroup.procs_files] if cgroup is not None else []
    if backend == "ns":
        cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in procs_files]
        control = box_control(
            inner,
            box_root=box_root,
            work=work,
            ro_paths=ro_paths,
            tmp_bytes=tmp_bytes,
            home_bytes=home_bytes,
            env=env,
            pass_fds=pass_fds,
            identity=identity,
            cgroup_fds=cgroup_fds,
            relay=relay if network else None,
        )
        if inproc is not None:  # {"python": host path, "support", "control_fd", "executable"}
            control["inproc"] = {k: v for k, v in inproc.items() if k != "python"}
        import marshal

        control_fd = _memfd(marshal.dumps(control))
        try:
            return subprocess.Popen(
                [*_box_program(inproc["python"] if inproc else None), str(control_fd)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=(*pass_fds, *cgroup_fds, control_fd),
                close_fds=True,
                start_new_session=True,
                bufsize=0,
            )
        finally:
            for fd in (*cgroup_fds, control_fd):
                os.close(fd)
    argv = inner
    seccomp_fd = None
    if backend == "bwrap" and os.uname().machine in _SECCOMP_ARCHES:
        from .box import seccomp_program

        seccomp_fd = _memfd(seccomp_program(os.uname().machine))
        pass_fds = (*pass_fds, seccomp_fd)
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
            home_bytes=home_bytes,
            setenv=locale,
            relay_dir=relay["host_dir"] if (relay and network) else None,
            seccomp_fd=seccomp_fd,
        )
    try:
        return _popen_switched(argv, identity, procs_files, work, env, pass_fds)
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)


def _popen_switched(argv, identity, procs_files, work, env, pass_fds) -> subprocess.Popen:
    """Popen ``argv`` as the run's user, in its cgroups (rlimit and bwrap)."""
    prefix, user_kwargs = _switch_user(identity)
    if procs_files and user_kwargs:  # no setpriv: join and switch in the child
        user_kwargs = {"preexec_fn": _join_and_switch(procs_files, run_user(identity))}
    elif procs_files:  # join the run's cgroups as root, then become the run user
        prefix = ["/bin/sh", "-c", _CGROUP_JOIN, "sh", *procs_files, "--", *prefix]
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


def kill(proc: subprocess.Popen, *, identity=None, cgroup=None, backend: str = "rlimit") -> None:
    """Kill everything of the run: its process group (under ns and bwrap that ends
    its PID namespace and all in it), every process in its cgroup, and under rlimit
    every process of its uid (one that left the group with setsid). Call it before
    reaping the leader, so its pid cannot have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill()
    if backend == "rlimit" and identity is not None and run_user(identity) is not None:
        from .identity import kill_uid

        kill_uid(identity.uid)


def describe() -> dict:
    """What protects a run on this machine: backend, uid, namespaces, network, cgroups,
    rlimits. Used by /health/, the admin index and ``make run``."""
    from . import cgroups
    from .limits import limits_for, rlimits

    try:
        backend = backend_name()
        problem = ""
    except SandboxUnavailable as exc:
        backend, problem = "", str(exc)
    limits = limits_for()
    root = os.geteuid() == 0
    info = {
        "backend": backend,
        "configured": settings.SANDBOX_BACKEND,
        "available": available_backends(),
        "isolating": isolating(backend),
        "uid": f"one per run from {settings.RUN_UID_RANGE}" if root else os.geteuid(),
        "unprivileged": True,
        "namespaces": ["user", "pid", "net", "ipc", "uts", "cgroup", "mount"]
        if backend == "bwrap"
        else ["mount", "pid", "net", "ipc", "uts", "cgroup"] + ([] if root else ["user"])
        if backend == "ns"
        else [],
        "network_default": "on" if limits.network else "off",
        "network_enforced": isolating(backend),
        "cgroup": {0: "none (limits per process only)", 1: "v1", 2: "v2"}[cgroups.version()],
        "rlimits": {name: soft for name, soft, _hard in rlimits(limits)},
        "python": sys.version.split()[0],
    }
    if backend == "rlimit":
        info["warning"] = (
            "rlimit isolates nothing but resources: scripts can read what the run uid can "
            "read and reach the host's network; runs of users who are not staff are "
            + (
                "allowed (SANDBOX_BACKEND=rlimit)"
                if not rlimit_refused("rlimit", trusted=False)
                else "refused"
            )
        )
    problems = {"ns": ns_problem(), "bwrap": bwrap_problem()}
    if problem:
        info["problem"] = problem
    for name, why in problems.items():
        if why:
            info[f"{name}_problem"] = why
    return info


def run_command(
    argv: list[str], *, ro_paths: list[tuple[Path, str]], timeout: float, trusted: bool = True
) -> tuple[int | None, bytes]:
    """Run a short command (an environment's import check) the way a run is run: the
    backend in use, a uid of its own, no network, a throw-away workspace, a cgroup.
    Returns (exit code or None on timeout, the merged output, at most 1 MB). Paths in
    ``argv`` are the inside ones (``ro_paths`` targets) except under rlimit."""
    from . import cgroups
    from . import identity as run_identity
    from .workspace import create_workspace

    backend = backend_name()
    refused = rlimit_refused(backend, trusted=trusted)
    if refused:
        raise SandboxUnavailable(refused)
    ident = run_identity.acquire("command")
    owner = (ident.uid, ident.gid) if ident.uid is not None else None
    workspace = create_workspace(ident.name, owner=owner, backend=backend)
    group = cgroups.open_run(ident.name, memory_bytes=2 << 30, max_processes=256)
    proc = None
    try:
        proc = spawn(
            backend,
            argv,
            box_root=workspace.box,
            work=workspace.work,
            home_bytes=64 << 20,
            ro_paths=ro_paths,
            network=False,
            tmp_bytes=256 << 20,
            env={
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "HOME": INSIDE_HOME if backend != "rlimit" else str(workspace.home),
            },
            pass_fds=(),
            identity=ident,
            cgroup=group,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(proc, identity=ident, cgroup=group, backend=backend)
            proc.communicate()
            return None, b""
        return proc.returncode, out[: 1 << 20]
    finally:
        if proc is not None:
            kill(proc, identity=ident, cgroup=group, backend=backend)
        if group is not None:
            group.remove()
        ident.release()
        workspace.remove()

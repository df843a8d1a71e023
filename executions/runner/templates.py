"""Warm templates, the server's side: which template serves an environment, starting
and stopping them, and handing one run to a template (``launch``) as a process
``execute.watch`` can follow (``WarmProcess``).

A template (``warm.py``, running as ``_scriptorium_warm.py``) is started on demand, in
the background: the run that asked goes the cold way, later runs of the environment
fork from the template once it says it is ready. Its files live in RUN_WARM_DIR
(root only), named ``<instance>-<key>``: ``.sock`` (its socket), ``.status`` (what it
says of itself, JSON), ``.json`` (what the server started it for), ``.log`` (its own
output, import-time output included). The key covers the environment's identity (its
folder and the inode and time of its ready marker: a rebuilt environment is a new
key), the interpreter, the support files and the preload list; templates of an
environment under an old key are stopped. At most RUN_WARM_MAX_TEMPLATES live per
instance (the least recently used is stopped); an idle one ends by itself after
RUN_WARM_IDLE_SECONDS; one that crashed is simply started again.
"""

import contextlib
import functools
import hashlib
import json
import marshal
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings

from . import cgroups, identity, sandbox
from .environments import READY

SYS_OPEN_TREE = 428
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
STATUS_MAX = 64 * 1024
FD_RESULT, FD_PROGRESS = 3, 4  # where a warm run's PID 2 has its channels (warm.py)
# Modules never preloaded: importing them does something visible (prints, opens a
# browser or a window) that a run importing them must see happen itself.
NEVER_PRELOAD = frozenset(
    "this antigravity __hello__ __phello__ idlelib turtle turtledemo tkinter pydoc_data "
    "readline rlcompleter site sitecustomize usercustomize __main__ _scriptorium_harness "
    "_scriptorium_box _scriptorium_warm netrelay scriptorium_progress".split()
)
_lock = threading.Lock()
_launchers: dict[str, subprocess.Popen] = {}  # key -> the launcher this process started
# key -> (template, when it was last found ready, its record): runs within READY_FOR
# seconds skip reading the template files (its launcher is still looked at); a
# template that turns a run away is forgotten at once
_ready: dict[str, tuple["Template", float, dict]] = {}
READY_FOR = 2.0
_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")  # what a run group's name may be


class TemplateGone(Exception):
    """The template could not take the run (it ended meanwhile): run it cold."""


@dataclass(frozen=True)
class Template:
    key: str
    socket_path: str


def problem() -> str:
    """'' when runs can fork from warm templates here, else why not. Needs the ns
    backend, the server running as root (the template's user namespace maps the run
    uid range), cgroups (a run's processes are killed by its group) and open_tree
    (Linux 5.2)."""
    if not settings.RUN_WARM:
        return "off (RUN_WARM=false)"
    if os.geteuid() != 0:
        return "needs the server to run as root (runs are cold)"
    if not cgroups.version():
        return "needs cgroups (runs are cold)"
    return _kernel_problem()


@functools.cache
def _kernel_problem() -> str:
    fd = _open_tree("/")
    if fd < 0:
        return "the kernel has no open_tree (Linux 5.2 or newer is needed; runs are cold)"
    os.close(fd)
    return ""


def _open_tree(path: str) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_OPEN_TREE, -100, os.fsencode(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)


def detached_mount(path: Path) -> int:
    """An fd of a detached copy of the mount at ``path`` (the template moves it into
    the run's own mount namespace: the folder itself, nothing above it)."""
    fd = _open_tree(str(path))
    if fd < 0:
        import ctypes

        raise OSError(ctypes.get_errno(), f"open_tree {path}")
    return fd


def _dir() -> Path:
    path = Path(settings.RUN_WARM_DIR)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _instance() -> str:
    return hashlib.sha256(str(Path(settings.DATA_DIR).resolve()).encode()).hexdigest()[:8]


def _env_id(env_dir: Path) -> str:
    st = os.stat(env_dir / READY)
    return f"{st.st_ino}:{st.st_mtime_ns}"


def _learned_path(env_dir: Path) -> Path:
    return _dir() / f"{_instance()}-{env_dir.name}.imports"


def _learned(env_dir: Path) -> tuple[list[str], list[str]]:
    """(modules seen in this environment's runs, modules never to preload again)."""
    try:
        data = json.loads(_learned_path(env_dir).read_text())
        return list(data.get("seen", [])), list(data.get("excluded", []))
    except (OSError, ValueError, AttributeError):
        return [], []


def _learn(env_dir: Path, *, seen=(), excluded=()) -> None:
    old_seen, old_excluded = _learned(env_dir)
    data = {
        "seen": list(dict.fromkeys([*old_seen, *seen]))[: settings.RUN_WARM_MAX_PRELOAD],
        "excluded": sorted(set(old_excluded) | set(excluded)),
    }
    if data != {"seen": old_seen, "excluded": sorted(old_excluded)}:
        data["data_dir"] = str(Path(settings.DATA_DIR).resolve())  # see _prune_ended
        tmp = _learned_path(env_dir).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, _learned_path(env_dir))


def preload_list(env_dir: Path, imports) -> list[str]:
    """What a template of the environment imports: RUN_WARM_PRELOAD, then the modules
    its runs import (learned), minus those that proved unfit."""
    seen, excluded = _learned(env_dir)
    wanted = [*settings.RUN_WARM_PRELOAD, *seen, *imports]
    skip = NEVER_PRELOAD | set(excluded)
    names = [n for n in dict.fromkeys(wanted) if n.isidentifier() and n not in skip]
    return names[: settings.RUN_WARM_MAX_PRELOAD]


def template_for(*, env_dir: Path, python: Path, layout: dict, imports=()) -> Template | None:
    """A ready template for the environment, or None: then one is being started (in
    the background) and this run goes cold. ``layout`` is what the template is built
    from (see ``template_control``)."""
    env_dir = Path(env_dir)
    try:
        env_id = _env_id(env_dir)
    except OSError:
        return None
    if imports:
        _learn(env_dir, seen=[i for i in imports if i not in NEVER_PRELOAD])
    preload = preload_list(env_dir, imports)
    key = hashlib.sha256(
        json.dumps([str(env_dir), env_id, str(python), layout["support_host"], preload]).encode()
    ).hexdigest()[:16]
    known = _ready.get(key)
    if known is not None and time.monotonic() - known[1] < READY_FOR and _alive(known[2]):
        return known[0]
    with _lock:
        records = _records()
        own = [r for r in records if r["env_dir"] == str(env_dir)]
        for record in own:  # a rebuilt environment: its old templates go
            if record["env_id"] != env_id:
                _stop(record)
        exact = next((r for r in own if r["key"] == key), None)
        if exact is None:
            _make_room(records)
            _start(key, env_dir, env_id, python, layout, preload)
        elif exact["state"] == "ready":
            for record in own:  # the newest preload list serves; older ones go
                if record["key"] != key and record["env_id"] == env_id:
                    _stop(record)
            template = Template(key, exact["socket"])
            _ready[key] = (template, time.monotonic(), exact)
            return template
        elif exact["state"] == "failed":
            _note_failure(exact, env_dir)
        usable = [r for r in own if r["env_id"] == env_id and r["state"] == "ready"]
        if usable:
            return Template(usable[0]["key"], usable[0]["socket"])
    return None


def _records() -> list[dict]:
    """This instance's templates, from their files; the files of ended ones removed."""
    prefix = f"{_instance()}-"
    out = []
    for meta_path in _dir().glob(f"{prefix}*.json"):
        key = meta_path.stem[len(prefix) :]
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["key"] = key
        status = _read_status(meta_path.with_suffix(".status"))
        state = str(status.get("state") or "starting")
        if not _alive(meta):
            if state not in ("starting", "failed"):  # ended after serving: replaced on demand
                _remove_files(meta_path.with_suffix(""))
                continue
            if state == "starting":  # died while importing: that module is to blame
                status = {**status, "reason": "the template ended while starting",
                          "module": status.get("importing")}  # fmt: skip
            state = "failed"
        out.append({**meta, "state": state, "status": status})
    return out


def _read_status(path: Path) -> dict:
    """The template's own account of itself: read as untrusted data (read again
    when caught half-written)."""
    for attempt in range(3):
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(STATUS_MAX) or b"{}")
            return data if isinstance(data, dict) else {}
        except OSError:
            return {}
        except ValueError:
            time.sleep(0.001 * (attempt + 1))
    return {}


def _alive(meta: dict) -> bool:
    pid, started = meta.get("launcher_pid"), meta.get("launcher_start")
    popen = _launchers.get(meta.get("key", ""))
    if popen is not None and popen.poll() is not None:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[0] not in (b"Z", b"X") and int(fields[19]) == started
    except (OSError, ValueError, IndexError, TypeError):
        return False


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _note_failure(record: dict, env_dir: Path) -> None:
    """A template that failed: a module that made it unfit is never preloaded again
    (the next run starts one without it); other failures wait a minute."""
    status = record["status"]
    bad = status.get("module") or status.get("noisy")
    names = [bad] if isinstance(bad, str) else [n for n in (bad or []) if isinstance(n, str)]
    if names:
        _learn(env_dir, excluded=names)
        _remove_files(_dir() / f"{_instance()}-{record['key']}")
    elif time.time() - float(record.get("started", 0)) > 60:
        _remove_files(_dir() / f"{_instance()}-{record['key']}")


def _make_room(records: list[dict]) -> None:
    live = [r for r in records if r["state"] in ("ready", "starting")]
    excess = len(live) + 1 - max(1, settings.RUN_WARM_MAX_TEMPLATES)
    live.sort(key=lambda r: float(r["status"].get("last_used") or r.get("started") or 0))
    for record in live[: max(0, excess)]:
        _stop(record)


def _remove_files(stem: Path) -> None:
    for suffix in (".json", ".status", ".sock", ".log"):
        with contextlib.suppress(OSError):
            os.unlink(f"{stem}{suffix}")


def template_control(layout: dict, *, listen_fd, status_fd, uid, cgroup_fds, preload) -> dict:
    """The launcher's record: the sealed root (as the ns box builds it, without a
    workspace or run identity), the template's uid and the uid ranges it maps."""
    dirs, binds, symlinks = sandbox.root_layout(layout["ro_paths"])
    dirs += ["/tmp", "/dev/shm", sandbox.INSIDE_HOME, "/run/identity", sandbox.RELAY_DIR]
    symlinks += [("/etc/passwd", "/run/identity/passwd"), ("/etc/group", "/run/identity/group")]
    files = [f for f in sandbox._passwd_files(None) if f[0] == "/etc/hosts"]
    files += sandbox._etc_file_contents()
    low, high = identity.uid_range()
    ranges = [(first, last - first + 1) for first, last in ((low, uid - 1), (uid + 1, high))]
    return {
        "root": layout["root"],
        "dirs": dirs,
        "binds": binds,
        "symlinks": symlinks,
        "files": files,
        "tmpfs": [("/tmp", 64 << 20, 0o1777, None), (sandbox.INSIDE_HOME, 16 << 20, 0o700, None)],
        "template_uid": uid,
        "ranges": [r for r in ranges if r[1] > 0],
        "listen_fd": listen_fd,
        "status_fd": status_fd,
        "cgroup_fds": cgroup_fds,
        "env": layout["env"],
        "executable": layout["executable"],
        "support": layout["support"],
        "paths": layout["paths"],
        "preload": preload,
        "idle_seconds": settings.RUN_WARM_IDLE_SECONDS,
        "watch_paths": [],  # set by _start
        "stem": "",
    }


def _prune_ended(older_than: float = 600.0) -> None:
    """Remove the files of ended templates of any instance (a test session or an
    instance that is gone), and the learned imports of instances whose DATA_DIR is
    gone, once they are ``older_than`` seconds old."""
    cutoff = time.time() - older_than
    for meta_path in _dir().glob("*.json"):
        try:
            if meta_path.stat().st_mtime > cutoff:
                continue
            meta = json.loads(meta_path.read_text())
            meta["key"] = ""
        except (OSError, ValueError):
            continue
        if not _alive(meta):
            _remove_files(meta_path.with_suffix(""))
    for learned in _dir().glob("*.imports"):  # of an instance whose data dir is gone
        try:
            if learned.stat().st_mtime > cutoff:
                continue
            data_dir = json.loads(learned.read_text()).get("data_dir")
            if data_dir and not os.path.isdir(data_dir):
                learned.unlink()
        except (OSError, ValueError, AttributeError):
            continue
    _prune_groups()


def _prune_groups() -> int:
    """Remove the empty run groups of templates that are not alive, of any instance
    (their own group, groups made for their spares): a group of a live template may
    be empty while it waits for a spare. Returns how many."""
    live = set()
    for meta_path in _dir().glob("*.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["key"] = ""
        if _alive(meta):
            live.add(meta_path.stem.rpartition("-")[2])
    return cgroups.remove_empty(
        lambda name: not name.startswith("warm-") or name.split("-")[1] in live
    )


def _start(key, env_dir, env_id, python, layout, preload) -> None:
    """Start the template's launcher in the background (detached from this process)."""
    _prune_ended()
    stem = _dir() / f"{_instance()}-{key}"
    _remove_files(stem)
    root = Path(settings.DATA_DIR) / "runner" / "warm-roots" / key
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    status_fd = log_fd = control_fd = None
    ident = identity.acquire(f"warm-{key}")
    group = cgroups.open_run(
        f"warm-{key}-{ident.name}",
        memory_bytes=settings.RUN_WARM_MEMORY_MB << 20,
        max_processes=4096,
    )
    cgroup_fds = (
        [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in group.procs_files] if group else []
    )
    try:
        listener.bind(f"{stem}.sock")
        os.chmod(f"{stem}.sock", 0o600)
        listener.listen(128)
        status_fd = os.open(f"{stem}.status", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        log_fd = os.open(f"{stem}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        control = template_control(
            {**layout, "root": str(root)},
            listen_fd=listener.fileno(),
            status_fd=status_fd,
            uid=ident.uid,
            cgroup_fds=cgroup_fds,
            preload=preload,
        )
        control["watch_paths"] = [str(python), str(settings.DATA_DIR)]
        control["stem"] = str(stem)
        control_fd = sandbox._memfd(marshal.dumps(control))
        popen = subprocess.Popen(
            [str(python), "-I", "-S", "-B", "-u", f"{layout['support_host']}/_scriptorium_warm.py",
             str(control_fd)],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            cwd="/",
            env={},  # the template starts with nothing of the server's
            pass_fds=(listener.fileno(), status_fd, control_fd, ident._lock_fd, *cgroup_fds),
            close_fds=True,
            start_new_session=True,
        )  # fmt: skip
    except OSError:
        _remove_files(stem)
        if group is not None:
            group.remove()
        ident.release()
        return
    finally:
        listener.close()
        for fd in (status_fd, log_fd, control_fd, *cgroup_fds):
            if fd is not None:
                os.close(fd)
    os.close(ident._lock_fd)  # the launcher holds the template uid now
    _launchers[key] = popen
    meta = {
        "env_dir": str(env_dir),
        "env_id": env_id,
        "python": str(python),
        "preload": preload,
        "launcher_pid": popen.pid,
        "launcher_start": _start_time(popen.pid),
        "started": time.time(),
        "template_uid": ident.uid,
        "cgroup": [str(d) for d in group.dirs] if group else [],
        "socket": f"{stem}.sock",
    }
    Path(f"{stem}.json").write_text(json.dumps(meta))


def _stop(record: dict, *, now: bool = False) -> None:
    """Ask a template to finish its runs in flight and end (``now``: kill it)."""
    _ready.pop(record["key"], None)
    if not now:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2)
                conn.connect(record["socket"])
                conn.sendall(b"Q" + (0).to_bytes(4, "big"))
        except OSError:
            now = True
    if now and _alive(record):
        with contextlib.suppress(OSError):
            os.killpg(int(record["launcher_pid"]), signal.SIGKILL)
    _remove_files(_dir() / f"{_instance()}-{record['key']}")  # no new run finds it
    popen = _launchers.pop(record["key"], None)
    if popen is not None and now:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)
    for path in record.get("cgroup") or []:
        if now:
            with contextlib.suppress(OSError):
                os.rmdir(path)


def stop_all(*, now: bool = False) -> int:
    """Stop every template of this instance (``now``: kill them at once). Returns
    how many."""
    with _lock:
        records = [r for r in _records() if r["state"] in ("ready", "starting")]
        for record in records:
            _stop(record, now=now)
        if now and records:
            _prune_groups()
    return len(records)


def stop_started_here() -> int:
    """Kill the templates this process started, whatever instance (test sessions and
    benchmarks end with this; a server's templates outlive its workers)."""
    count = 0
    for key, popen in list(_launchers.items()):
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(5)
            count += 1
        _launchers.pop(key, None)
    if count:
        _prune_groups()
    return count


def wait_ready(*, env_dir: Path, python: Path, layout: dict, imports=(), timeout=30.0):
    """The environment's template once ready (started if needed), or None after
    ``timeout`` seconds (tests and benchmarks use this; runs never wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        template = template_for(env_dir=env_dir, python=python, layout=layout, imports=imports)
        if template is not None and template.key in _wanted_key(env_dir, python, layout, imports):
            return template
        time.sleep(0.02)
    return None


def _wanted_key(env_dir, python, layout, imports) -> set[str]:
    env_id = _env_id(Path(env_dir))
    preload = preload_list(Path(env_dir), imports)
    payload = json.dumps([str(env_dir), env_id, str(python), layout["support_host"], preload])
    return {hashlib.sha256(payload.encode()).hexdigest()[:16]}


def status() -> list[dict]:
    """This instance's templates for /health/ and the admin: environment, state, pid,
    age, runs served, memory, preloaded modules (untrusted figures, as reported)."""
    out = []
    now = time.time()
    with _lock:
        records = _records()
    for record in records:
        st = record["status"]
        started = float(record.get("started") or now)
        out.append(
            {
                "key": record["key"],
                "environment": Path(record["env_dir"]).name,
                "state": str(record["state"])[:40],
                "pid": record.get("launcher_pid"),
                "age_seconds": round(now - started, 1),
                "runs": _int(st.get("runs")),
                "running": _int(st.get("running")),
                "memory_kb": _int(st.get("rss_kb")),
                "idle_seconds": round(now - float(st["last_used"]), 1)
                if isinstance(st.get("last_used"), (int, float))
                else None,
                "preloaded": [str(n)[:80] for n in (st.get("preloaded") or [])][:100]
                if isinstance(st.get("preloaded"), list)
                else [],
                "reason": str(st.get("reason") or "")[:300],
            }
        )
    return out


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- one run ------------------------------------------------------------------------


def launch(
    template: Template, request: dict, fds: dict[str, int], *, exit_fd: int
) -> "WarmProcess":
    """Hand one run to ``template``: ``request`` (see warm.py) and the run's fds by
    name, among them ``exit``, the write end of the pipe whose read end is ``exit_fd``
    (the returned process owns it from then on). Returns the run's process, or raises
    TemplateGone (run it cold)."""
    # The request (the run's environment holds its secrets) travels in a memory file
    # the template passes on unread: nothing of it is ever in the template's memory,
    # which every later run's sandbox is forked from. The template reads only the
    # header: the fds' names and the run's group.
    sealed = _memfd(marshal.dumps(request))
    names = [*fds, "request"]
    payload = marshal.dumps({"group": request["group"], "fd_names": names})
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(5)
        conn.connect(template.socket_path)
        head = b"R" + len(payload).to_bytes(4, "big")
        blob = b"".join(fd.to_bytes(4, sys.byteorder) for fd in [*fds.values(), sealed])
        conn.sendmsg([head + payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, blob)])
        pid, wanted, groups, pidfd = _read_started(conn, group_prefix(template))
    except (OSError, ValueError) as exc:
        conn.close()
        _ready.pop(template.key, None)
        raise TemplateGone(str(exc)) from exc
    finally:
        os.close(sealed)
    proc = WarmProcess(conn, pid=pid, pidfd=pidfd, exit_fd=exit_fd)
    proc.groups_wanted, proc.group_name, proc.dropped_groups = wanted, groups[0], groups[1:]
    return proc


def give_groups(template: Template, *, count: int, memory_bytes: int, max_processes: int) -> None:
    """Make ``count`` run groups with these limits for ``template``'s spares to come
    (their PID 2 moves in while idle: a later run with the same limits starts without
    the wait of a move). Best effort: a template that is gone takes none."""
    made = []
    for _ in range(max(0, min(count, 4))):
        group = cgroups.open_run(
            f"{group_prefix(template)}{os.urandom(6).hex()}",
            memory_bytes=memory_bytes,
            max_processes=max_processes,
        )
        if group is not None:
            made.append(group)
    if not made:
        return
    entries = [
        {"name": g.name, "limits": [memory_bytes, max_processes], "fds": len(g.procs_files)}
        for g in made
    ]
    payload = marshal.dumps({"groups": entries})
    fds = []
    try:  # (a group may be gone already: pruned as no longer used, its template ended)
        for path in (path for g in made for path in g.procs_files):
            fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(template.socket_path)
            conn.sendmsg(
                [b"G" + len(payload).to_bytes(4, "big") + payload],
                [
                    (
                        socket.SOL_SOCKET,
                        socket.SCM_RIGHTS,
                        b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds),
                    )
                ],
            )
    except OSError:
        for group in made:
            group.remove()
    finally:
        for fd in fds:
            os.close(fd)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("scriptorium-request", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def group_prefix(template: Template) -> str:
    """How the run groups (cgroups) made for ``template``'s runs are named: a run's
    PID 2 may sit in one made for an earlier run (see warm.py), and the template
    names the one it used; a name without this prefix is never believed."""
    return f"warm-{template.key}-"


def _read_started(conn, prefix: str) -> tuple[int, int, list[str], int | None]:
    """The template's ``S <pid> <groups wanted> <run's group> [<group no longer used>
    ...]`` answer and the pidfd that comes with it."""
    data, ancillary, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(4))
    pidfd = None
    for level, kind, blob in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(blob) >= 4:
            fds = [
                int.from_bytes(blob[i : i + 4], os.sys.byteorder)
                for i in range(0, len(blob) - 3, 4)
            ]
            pidfd, extra = fds[0], fds[1:]
            for fd in extra:
                os.close(fd)
    parts = data.decode("ascii", "replace").split()
    valid = (
        data.startswith(b"S ")
        and data.endswith(b"\n")
        and len(parts) >= 4
        and parts[1].isdigit()
        and parts[2].isdigit()
        and all(p.startswith(prefix) and _NAME.fullmatch(p) for p in parts[3:])
    )
    if not valid:
        if pidfd is not None:
            with contextlib.suppress(OSError):  # the run may have started: it must end
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        raise ValueError("the template did not start the run")
    return int(parts[1]), int(parts[2]), parts[3:], pidfd


class WarmProcess:
    """A run's process started by a template, as ``execute.watch`` follows it: the
    run's PID 1 reports the script's end (``E status utime stime maxrss``) on the exit
    pipe as soon as it has reaped it; the pipe closes without a report when the run's
    sandbox died (killed, or its template gone). The template connection stays open
    while the run lives: closing it ends the run."""

    def __init__(self, conn: socket.socket, *, pid: int, pidfd: int | None, exit_fd: int):
        self.conn, self.pid, self.pidfd, self.exit_r = conn, pid, pidfd, exit_fd
        self.group_name, self.dropped_groups = "", []  # as the template said (launch)
        self.groups_wanted = 0
        self.code_at_record = None  # the record's exit code once end_now killed PID 2
        self.group = None  # the run's groups (a cgroups.RunCgroup), set by the caller
        self.stdout = None  # set by the caller: the read end of the output pipe
        self.returncode = None
        self._buffer = b""
        self._ended = None  # (wait status, rusage) once known

    def exit_fd(self):
        return os.dup(self.exit_r)

    def _take(self, timeout: float | None) -> None:
        if self._ended is not None:
            return
        if not select.select([self.exit_r], [], [], timeout)[0]:
            return
        try:
            data = os.read(self.exit_r, 256)
        except OSError:
            data = b""
        self._buffer += data
        if b"\n" in self._buffer:
            self._ended = _parse_end(self._buffer.split(b"\n", 1)[0])
        elif not data or len(self._buffer) > 200:  # the sandbox died or misbehaved
            self._ended = (None, None)

    def exited(self) -> bool:
        self._take(0)
        return self._ended is not None

    def reap(self):
        deadline = time.monotonic() + 10
        while self._ended is None and time.monotonic() < deadline:
            self._take(max(0.01, deadline - time.monotonic()))
        status, usage = self._ended or (None, None)
        if status is None:  # the sandbox died unreported (killed, or its template gone)
            status = signal.SIGKILL
        # (PID 1 reports a death by signal N as exit 128 + N, as a shell does)
        killed = status in (signal.SIGKILL, (128 + signal.SIGKILL) << 8)
        if killed and self.code_at_record is not None:  # by end_now, after its record
            status = self.code_at_record << 8
        self.returncode = os.waitstatus_to_exitcode(status)
        self.close()
        return (status, usage)

    def end_now(self, code: int):
        """(wait status, usage) of the run taken as ended with exit ``code`` now
        (execute._end_by_record) when its script process is the only task left in
        the run's groups: it is killed, nothing of the run can run again, and its
        exit goes on unwatched (the groups are emptied and removed later). Its CPU
        time and peak memory as the kernel counted them so far (not what the record
        claims). None: wait for the exit report (also when the one task left is not
        the script's process, PID 2 of the run: it has ended, and only its exit
        report has its CPU time). When the script's process was killed here but the
        run cannot end now (a fork raced the kill, or the process was gone before its
        figures were read), the exit report's SIGKILL is this kill, not the script's
        end: the run's exit status is still the record's ``code``."""
        killed = self.group.kill_sole_task(_script_peak) if self.group is not None else None
        if killed is None:
            return None
        pid, seen, alone = killed
        if seen[0]:  # the script's process, killed by us: it ends with the record's code
            self.code_at_record = code
        usage = _usage_of(pid, seen) if alone else None
        if usage is None:
            return None
        self.returncode = code
        self.close()
        return (code << 8, usage)

    def kill(self) -> None:
        """SIGKILL the run's first process (its namespace dies with it)."""
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None
        if self.exit_r is not None:
            os.close(self.exit_r)
            self.exit_r = None
        self.conn.close()


def _script_peak(pid: int):
    """(True when ``pid`` is the run's script process, PID 2 in the run's namespace;
    its peak memory in kB, None when unknown), read while it lives (its memory
    figures go with its memory once it is killed)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            status = dict(line.split(b":", 1) for line in fh if b":" in line)
        peak = int(status[b"VmHWM"].split()[0]) if b"VmHWM" in status else None
        return status[b"NSpid"].split()[-1] == b"2", peak
    except (OSError, ValueError, IndexError, KeyError):
        return False, None


def _usage_of(pid: int, seen):
    """What the run's script process (``pid`` on the host), killed and not yet reaped,
    used as wait4 would report it: CPU time with the children it reaped, and its peak
    memory (``seen``: what _script_peak read before the kill). None when ``pid`` is
    gone or is another process of the run."""
    is_script, peak = seen
    if not is_script:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return SimpleNamespace(
        ru_utime=(utime + cutime) / tick, ru_stime=(stime + cstime) / tick, ru_maxrss=peak
    )


def _parse_end(line: bytes):
    parts = line.split()
    if len(parts) != 5 or parts[0] != b"E":
        return (None, None)
    try:
        status, utime, stime, maxrss = (int(p) for p in parts[1:])
    except ValueError:
        return (None, None)
    if not (0 <= status < 65536) or min(utime, stime, maxrss) < 0:
        return (None, None)
    return (status, SimpleNamespace(ru_utime=utime / 1e6, ru_stime=stime / 1e6, ru_maxrss=maxrss))

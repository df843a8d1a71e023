"""A warm template: a sealed process that has already imported the harness and an
environment's heavy modules, and forks a fresh sandboxed process for each run.

Copied into the support dir as ``_scriptorium_warm.py`` and started (by
``templates.py``, as root) as ``python -I -S -B -u _scriptorium_warm.py CONTROL_FD``
with the environment's interpreter and an empty environment. It builds the same
sealed world as the ns box (``_scriptorium_box``) once, then:

- **launcher** (this process, host root): new mount, PID, net, IPC and UTS namespaces;
- **keeper** (PID 1 of the template, still root): builds the read-only root (system,
  environment, support files, generic /etc, proc with hidepid=2), pivots into it,
  forks the template into a *user namespace* whose uid 0 is an unprivileged host uid
  of its own and which maps the run uid range onto itself;
- **template** (root only inside its user namespace: no power over any host file
  it does not own, no network, no host process in sight): imports the harness and the
  preload list (the packages' import-time code runs here, sealed), refuses to serve
  when that left threads, shared writable memory or new mounts behind, then accepts
  run requests on the unix socket the launcher bound on the host.

Per run (request: a ``marshal`` record from the server, which is trusted, and the
run's fds: output pipe, result, progress and exit pipes, the harness control memfd,
the workspace as a detached mount (``open_tree``) and the cgroup.procs files), a
*spare* made ahead of time (SPARES are kept ready) takes it:

- **R**: new mount/PID/net/IPC/UTS/cgroup namespaces; waits for PID 1;
- **PID 1** of the run (made ahead: its own /proc, hostname, loopback): on the
  request mounts the workspace at /work, fresh tmpfs /tmp, /dev/shm, HOME and the
  run's passwd/group, starts the relay to the policy proxy when the run may use the
  network, hands PID 2 its part, reaps, reports PID 2's end and ends the namespace;
- **PID 2** (made ahead: no capability bounding set, no_new_privs, the seccomp
  filter, the first copy-on-write done): on its part joins the run's cgroups, takes
  the run uid, only its own fds, a fresh environment and ``__main__``: the harness
  runs the script.

The template replies ``S <pid>`` with a pidfd of R; the run's PID 1 writes
``E <wait status> <user µs> <system µs> <maxrss kB>`` on the run's exit pipe when
PID 2 has ended. The server closing its connection ends the run.
"""

import fcntl
import gc
import marshal
import posix as os
import sys

sys.path.insert(0, sys.argv[0].rpartition("/")[0])  # -I leaves the script's folder out
import _scriptorium_box as box  # noqa: E402
import _scriptorium_harness as harness  # noqa: E402

ctypes = box.ctypes
_libc = box._libc
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # the same on x86_64 and aarch64
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100
SIGKILL, SIGTERM = 9, 15
F_DUPFD_CLOEXEC = 1030
RUN_FLAGS = (
    box.CLONE_NEWNS
    | box.CLONE_NEWPID
    | box.CLONE_NEWNET
    | box.CLONE_NEWIPC
    | box.CLONE_NEWUTS
    | box.CLONE_NEWCGROUP
)
IDENTITY_DIR = "/run/identity"  # the run's passwd and group (/etc links to them)
FD_RESULT, FD_PROGRESS, FD_CONTROL = 3, 4, 5  # where PID 2 finds its channels
MAX_REQUEST = 4 << 20
SPARES = 2  # sandboxes kept ready; one used by a run is replaced when a run ends


def _move_mount(fd, target):
    box._check(
        _libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
        f"move_mount {target}",
    )


# --- the launcher and the keeper (host root) ------------------------------------------


def main(control_fd):
    with open(int(control_fd), "rb") as fh:
        control = marshal.load(fh)
    for fd in control["cgroup_fds"]:  # the template's own memory limit
        os.write(fd, b"0")
        os.close(fd)
    try:
        # not the mount namespace: the launcher keeps the host's view (it watches the
        # data it serves); the keeper makes its own before it pivots
        box._check(
            _libc.unshare(
                box.CLONE_NEWPID | box.CLONE_NEWNET | box.CLONE_NEWIPC | box.CLONE_NEWUTS
            ),
            "unshare",
        )
        keeper = os.fork()
    except BaseException as exc:  # noqa: BLE001
        _fail(control, f"the template's namespaces: {exc}")
    if keeper == 0:
        try:
            _libc.prctl(box.PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
            _keeper(control)
        except BaseException as exc:  # noqa: BLE001
            _fail(control, f"the template's root: {exc}")
        os._exit(125)
    os.close(control["listen_fd"])
    _watch(keeper, control)


def _watch(keeper, control):
    """The launcher's duty: end with the keeper; end it (and the whole template)
    when the data it serves is gone (the environment or the data dir removed)."""
    import time

    while True:
        try:
            pid, status = os.waitpid(keeper, os.WNOHANG)
        except ChildProcessError:
            os._exit(125)
        if pid == keeper:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        if not all(_exists(path) for path in control["watch_paths"]):
            try:
                os.kill(keeper, SIGKILL)  # PID 1 of the template: everything in it dies
            except OSError:
                pass
            stem = control["stem"]
            for suffix in (".json", ".sock", ".status", ".log"):
                try:
                    os.unlink(stem + suffix)
                except OSError:
                    pass
        time.sleep(1)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _fail(control, why):
    """Say why on the status file and stderr (the template log), then end."""
    _status(control["status_fd"], {"state": "failed", "reason": why[:500]})
    os.write(2, f"[scriptorium] warm template failed: {why}\n".encode())
    os._exit(125)


_status_size = [0]  # the longest status written: a shorter one is padded to it


def _status(fd, record):
    """Replace the status file's content with ``record`` as JSON (the server reads it
    for /health/ and the admin, and to know the template is ready). One write, never
    a truncation: a reader never finds the file empty (JSON allows the padding)."""
    parts = []
    harness._json(record, parts)
    data = "".join(parts).encode()
    _status_size[0] = max(_status_size[0], len(data))
    try:
        os.pwrite(fd, data.ljust(_status_size[0]), 0)
    except OSError:
        pass


def _keeper(control):
    box._check(_libc.unshare(box.CLONE_NEWNS), "unshare mount")
    box._build_root(control)
    box._check(_libc.sethostname(b"sandbox", 7), "sethostname")
    box._loopback_up()
    go_r, go_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    template = os.fork()
    if template == 0:
        os.close(go_r)
        os.close(mapped_w)
        _libc.prctl(box.PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        box._check(_libc.unshare(box.CLONE_NEWUSER), "unshare user")
        os.write(go_w, b"x")
        if os.read(mapped_r, 1) != b"x":
            os._exit(125)
        os.close(go_w)
        os.close(mapped_r)
        _template(control)
        os._exit(0)
    os.close(go_w)
    os.close(mapped_r)
    if os.read(go_r, 1) != b"x":
        os._exit(125)
    top = control["template_uid"]
    lines = f"0 {top} 1\n" + "".join(
        f"{first} {first} {count}\n" for first, count in control["ranges"]
    )
    for name in ("uid_map", "gid_map"):
        box._write(f"/proc/{template}/{name}", lines)
    os.write(mapped_w, b"x")
    os.close(mapped_w)
    os.close(go_r)
    os.close(control["listen_fd"])
    box._exit_with(template, reap_all=True)


# --- the template (root of its own user namespace only) ---------------------------------


def _template(control):
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    box._check(_libc.unshare(box.CLONE_NEWNS), "unshare mount")  # mounts of its own
    _libc.clearenv()
    os.environ.clear()
    for name, value in control["env"].items():
        _libc.setenv(name.encode(), value.encode(), 1)
        os.environ[name.encode()] = value.encode()
    os.chdir("/")
    sys.executable = sys._base_executable = control["executable"]  # as a run sees it
    sys.orig_argv[:] = [control["executable"], "-I", "-S", "-B", "-u"]
    sys.path[0] = control["support"]
    import _sitebuiltins  # noqa: F401 - what the harness imports for every run
    import atexit  # noqa: F401
    import resource  # noqa: F401
    import traceback  # noqa: F401 - for every run that fails

    import netrelay  # noqa: F401 - for runs that may use the network

    harness._prepare_paths(control["paths"])
    status_fd = control["status_fd"]
    mounts_before = _read("/proc/self/mountinfo")
    loaded, failed = _preload(control["preload"], status_fd)
    problem = _unfit(mounts_before)
    if problem:
        _fail(control, problem)
    gc.collect()
    gc.freeze()  # what every run inherits stays shared (no copy on the first collection)
    serve = Server(control, loaded, failed)
    serve.loop()
    os._exit(0)


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def _threads():
    return len(sys._current_frames())


def _preload(names, status_fd):
    """Import each module; one that fails is skipped, one that leaves a Python thread
    running makes the template unfit (a fork would copy a half-held lock)."""
    loaded, failed = [], {}
    for name in names:
        _status(status_fd, {"state": "starting", "importing": name})
        written = os.fstat(1).st_size + os.fstat(2).st_size
        try:
            __import__(name)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: a module is not a run
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        if _threads() > 1:
            _fail_module(status_fd, name, "starts a thread")
        if os.fstat(1).st_size + os.fstat(2).st_size != written:  # a run must see that itself
            _fail_module(status_fd, name, "prints when imported")
        loaded.append(name)
    return loaded, failed


def _fail_module(status_fd, name, why):
    """Say which module made the template unfit (the server starts the next one
    without it), then end."""
    _status(status_fd, {"state": "failed", "reason": f"importing {name} {why}", "module": name})
    os._exit(125)


def _unfit(mounts_before):
    """Why the template must not serve after its imports, or ''."""
    if _threads() > 1:
        return "a thread is running after the imports"
    for line in _read("/proc/self/maps").splitlines():
        perms = line.split()[1] if len(line.split()) > 1 else b""
        if perms[1:2] == b"w" and perms[3:4] == b"s":
            return "an import left shared writable memory (it would be shared by every run)"
    if _read("/proc/self/mountinfo") != mounts_before:
        return "an import changed the template's mounts"
    return ""


class Server:
    """The template's loop: accept run requests, fork, report each end."""

    def __init__(self, control, loaded, failed):
        import selectors
        import socket
        import time

        self.socket, self.time = socket, time
        self.control = control
        self.listener = socket.socket(fileno=control["listen_fd"])
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.runs = {}  # pidfd -> (pid, connection)
        self.served = 0
        self.started = time.time()
        self.last_used = time.time()
        self.loaded, self.failed = loaded, failed
        self.stopping = False
        self.free_groups = []  # (name, limits, cgroup.procs fds): groups for new spares
        self.spares = [Spare(socket) for _ in range(SPARES)]
        self.report("ready")

    def report(self, state):
        _status(
            self.control["status_fd"],
            {
                "state": state,
                "pid": os.getpid(),
                "started": self.started,
                "last_used": self.last_used,
                "runs": self.served,
                "running": len(self.runs),
                "rss_kb": _rss_kb(),
                "preloaded": self.loaded,
                "spares": len(self.spares),
                "spares_in_groups": sum(1 for spare in self.spares if spare.group is not None),
                "failed": self.failed,
            },
        )

    def loop(self):
        idle = self.control["idle_seconds"]
        while True:
            if self.stopping and not self.runs:
                return
            wait = None if self.runs else max(0.0, self.last_used + idle - self.time.time())
            events = self.selector.select(wait)
            if not events and not self.runs and self.time.time() >= self.last_used + idle:
                self.report("stopped (idle)")
                return
            for key, _mask in events:
                if key.data == "accept":
                    self.accept()
                elif key.data[0] == "run":
                    self.reap(key.fd)
                else:  # the server's side of a run closed (or spoke): it is gone
                    self.abandon(key.data[1])

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            conn.settimeout(5)
            kind, payload, fds = _receive(self.socket, conn)
        except (OSError, ValueError, EOFError):
            conn.close()
            return
        if kind == b"Q":  # drain: finish the runs in flight, then end
            self.stopping = True
            for spare in self.spares:
                spare.discard()
                _reap_quietly(spare.pid)
            self.spares = []
            self.selector.unregister(self.listener)
            self.listener.close()
            conn.close()
            return
        if kind == b"G" and not self.stopping:
            self.take_groups(payload, fds)
            conn.close()
            return
        if kind != b"R" or self.stopping:
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        self.start_run(conn, payload, fds)

    def start_run(self, conn, payload, fds):
        """Give the request to a spare sandbox (a new one if none is left or it
        died), report the run's pid; when that was the last spare, make the next one
        now (a burst of runs), else when a run ends (not while this one starts)."""
        import selectors

        try:  # the header only: the request itself is in a memory file never read here
            request = marshal.loads(payload)
            names, group = request["fd_names"], request["group"]
            limits = tuple(group["limits"])
        except (ValueError, TypeError, KeyError, EOFError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        drop = []
        for _attempt in range(2):
            spare = self.take_spare(limits)
            if spare.group is not None and spare.group[1] == limits:
                # the spare's PID 2 is in a group with the run's limits already: the
                # request's new group waits for a future spare
                run_fds = [
                    fd for n, fd in zip(names, fds, strict=True) if not n.startswith("cgroup")
                ]
                run_request = {
                    **request,
                    "fd_names": [n for n in names if not n.startswith("cgroup")],
                }
                ok = spare.hand_over(self.socket, marshal.dumps(run_request), run_fds)
                used = spare.group[0]
            else:  # PID 2 moves into the request's group (its spare group, if any, is left)
                ok = spare.hand_over(self.socket, payload, fds)
                used = group["name"]
                if ok and spare.group is not None:
                    drop.append(spare.group[0])
            if ok:
                break
            spare.discard()
            _reap_quietly(spare.pid)
            if spare.group is not None:  # empty now: the server removes it
                drop.append(spare.group[0])
        else:
            spare = None
        if spare is not None and used != group["name"]:
            cgroup_fds = [fd for n, fd in zip(names, fds, strict=True) if n.startswith("cgroup")]
            self.free_groups.append((group["name"], limits, cgroup_fds))
            fds = [fd for fd in fds if fd not in cgroup_fds]
            while len(self.free_groups) > SPARES + 1:  # more than spares will take
                name, _limits, extra = self.free_groups.pop(0)
                drop.append(name)
                for fd in extra:
                    os.close(fd)
        for fd in fds:
            os.close(fd)
        if spare is None:
            conn.close()
            return
        pid = spare.pid
        pidfd = os.pidfd_open(pid)
        self.runs[pidfd] = (pid, conn)
        self.selector.register(pidfd, selectors.EVENT_READ, ("run", pid))
        self.selector.register(conn, selectors.EVENT_READ, ("conn", pidfd))
        self.served += 1
        try:
            conn.sendmsg(
                [f"S {pid} {self.groups_wanted()} {' '.join([used, *drop])}\n".encode()],
                [
                    (
                        self.socket.SOL_SOCKET,
                        self.socket.SCM_RIGHTS,
                        pidfd.to_bytes(4, sys.byteorder),
                    )
                ],
            )
        except OSError:
            self.abandon(pidfd)
        self.report("ready" if not self.stopping else "stopping")
        if not self.stopping and not self.spares:
            self.spares.append(self.new_spare())

    def groups_wanted(self) -> int:
        """How many groups the server should give (``G``) for spares to come."""
        grouped = sum(1 for spare in self.spares if spare.group is not None)
        return max(0, SPARES - grouped - len(self.free_groups))

    def take_groups(self, payload, fds):
        """Groups from the server (``G``: their names, limits and cgroup.procs fds) for
        spares to come; idle spares without one are made again in one."""
        try:
            given = marshal.loads(payload)["groups"]
            for entry in given:
                count = int(entry["fds"])
                self.free_groups.append((entry["name"], tuple(entry["limits"]), fds[:count]))
                fds = fds[count:]
        except (ValueError, TypeError, KeyError, EOFError):
            pass
        for fd in fds:
            os.close(fd)
        for index, spare in enumerate(self.spares):
            if spare.group is None and self.free_groups:
                spare.discard()
                _reap_quietly(spare.pid)
                self.spares[index] = self.new_spare()
        self.report("ready")

    def take_spare(self, limits):
        """The oldest spare whose group has ``limits``, else the oldest, else a new one."""
        for spare in self.spares:
            if spare.group is not None and spare.group[1] == limits:
                self.spares.remove(spare)
                return spare
        return self.spares.pop(0) if self.spares else self.new_spare()

    def new_spare(self):
        """A spare sandbox, its PID 2 in a group the server gave for it when one waits."""
        group = self.free_groups.pop(0) if self.free_groups else None
        try:
            return Spare(self.socket, group)
        finally:
            for fd in group[2] if group else ():
                os.close(fd)

    def abandon(self, pidfd):
        """The server stopped watching this run: kill it (it is reaped as usual)."""
        entry = self.runs.get(pidfd)
        if entry is None:
            return
        try:
            self.selector.unregister(entry[1])
        except (KeyError, ValueError):
            pass
        try:
            os.kill(entry[0], SIGKILL)
        except OSError:
            pass

    def reap(self, pidfd):
        pid, conn = self.runs.pop(pidfd)
        self.selector.unregister(pidfd)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        os.close(pidfd)
        _reap_quietly(pid)  # the server heard how the script ended from the run's PID 1
        conn.close()
        self.last_used = self.time.time()
        while not self.stopping and len(self.spares) < SPARES:
            self.spares.append(self.new_spare())
        self.report("ready" if not self.stopping else "stopping")


def _reap_quietly(pid):
    try:
        os.waitpid(pid, 0)
    except OSError:
        pass


def _rss_kb():
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return None


def _receive(socket, conn):
    """(kind, payload, fds) of one request: ``kind`` (1 byte), a 4-byte length, the
    payload; the fds ride on the first part."""
    data, ancillary, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
    fds = _ancillary_fds(socket, ancillary)
    if len(data) < 5:
        raise EOFError("short request")
    size = int.from_bytes(data[1:5], "big")
    if size > MAX_REQUEST:
        raise ValueError("request too large")
    payload = bytearray(data[5:])
    while len(payload) < size:
        more = conn.recv(size - len(payload))
        if not more:
            raise EOFError("request cut short")
        payload += more
    return data[:1], bytes(payload), fds


# --- one run (forked from the template) ---------------------------------------------


class Spare:
    """A run's sandbox made ahead of its request: R (new namespaces, waits for PID 1)
    and PID 1 (its /proc, hostname and loopback ready), which waits on a socket for
    the request. One is always ready while the template serves."""

    def __init__(self, socket, group=None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _spare_r(theirs.detach(), group[2] if group else [])  # never returns
        theirs.close()
        self.pid, self.channel = pid, ours
        self.group = group[:2] if group else None  # (name, limits) PID 2 is in

    def hand_over(self, socket, payload, fds) -> bool:
        """Give the request and its fds to the spare's PID 1."""
        try:
            self.channel.sendmsg(
                [len(payload).to_bytes(4, "big") + payload],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes(fds))],
            )
            return True
        except OSError:
            return False
        finally:
            self.channel.close()

    def discard(self):
        try:
            os.kill(self.pid, SIGKILL)
        except OSError:
            pass
        self.channel.close()


def _fd_bytes(fds):
    return b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)


def _spare_r(channel, group_fds):
    """R: the run's namespaces; then it only waits for PID 1 and ends with it."""
    try:
        box._close_other_fds([channel, *group_fds])
        _libc.prctl(box.PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        if os.getppid() == 1:
            os._exit(125)
        os.setsid()
        box._check(_libc.unshare(RUN_FLAGS), "unshare")
        init = os.fork()
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"[scriptorium] A warm sandbox could not be made: {exc}\n".encode())
        os._exit(125)
    if init == 0:
        try:
            _libc.prctl(box.PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
            _init(channel, group_fds)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"[scriptorium] The sandbox could not start: {exc}\n".encode())
        os._exit(125)
    for fd in [channel, *group_fds]:
        os.close(fd)
    box._exit_with(init, reap_all=False)


def _init(channel, group_fds):
    """PID 1 of the run, made ahead: its /proc, hostname and loopback, and PID 2,
    which takes the request. PID 1 gets the run's exit pipe and cgroups from PID 2,
    moves PID 2 into the cgroups, tells PID 2 to go on, then reaps and reports PID 2's
    end at once (the namespace is torn down after the server heard)."""
    import socket

    box._mount("proc", "/proc", "proc", box.MS_NOSUID | box.MS_NODEV | box.MS_NOEXEC, "hidepid=2")
    box._check(_libc.sethostname(b"sandbox", 7), "sethostname")
    box._loopback_up()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        try:
            ours.close()
            _script_process(channel, theirs.detach(), group_fds)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"[scriptorium] The sandbox could not start the script: {exc}\n".encode())
        os._exit(125)
    theirs.close()
    for fd in [channel, *group_fds]:
        os.close(fd)
    part, fds = _wait_request(ours.detach())  # PID 2 has the request
    exit_fd, output = fds[0], fds[1]
    if part.get("move"):  # PID 2 is not in a group with the run's limits yet
        os.dup2(output, 2)  # what goes wrong here is the run's to read
        for fd in fds[3:]:  # (slow: while PID 2 mounts)
            os.write(fd, str(child).encode())
        os.write(fds[2], b"x")  # PID 2 may go on
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for fd in [null, *fds[1:]]:
        os.close(fd)
    _report_end(child, exit_fd)


def _send(fd, record, fds):
    """``record`` and ``fds`` on the socket ``fd`` (closed), as ``_wait_request``
    reads them."""
    import socket

    data = marshal.dumps(record)
    with socket.socket(fileno=fd) as sock:
        sock.sendmsg(
            [len(data).to_bytes(4, "big") + data],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes(fds))],
        )


def _report_end(child, exit_fd):
    """Reap every process (the PID 1 duty) until PID 2 ends; write its end to the
    server (``E <wait status> <user µs> <system µs> <maxrss kB>``, the status as the
    cold sandbox's leader would have it: 128 + signal when killed) and end the
    namespace."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(125)
        except InterruptedError:
            continue
        if pid != child:
            continue
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        utime, stime = int(usage.ru_utime * 1e6), int(usage.ru_stime * 1e6)
        try:
            os.write(
                exit_fd, f"E {(code & 0xFF) << 8} {utime} {stime} {usage.ru_maxrss}\n".encode()
            )
        except OSError:
            pass
        os._exit(code & 0xFF)


def _wait_request(channel):
    """The request (trusted: the template forwards the server's) and its fds."""
    import socket

    conn = socket.socket(fileno=channel)
    data, ancillary, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
    fds = _ancillary_fds(socket, ancillary)
    if len(data) < 4:
        os._exit(0)  # the template let this spare go
    size = int.from_bytes(data[:4], "big")
    if size > MAX_REQUEST:
        os._exit(125)
    payload = bytearray(data[4:])
    while len(payload) < size:
        more = conn.recv(size - len(payload))
        if not more:
            os._exit(125)
        payload += more
    conn.close()
    return marshal.loads(bytes(payload)), fds


def _ancillary_fds(socket, ancillary):
    fds = []
    for level, kind, blob in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(blob[i : i + 4], sys.byteorder) for i in range(0, len(blob) - 3, 4)
            ]
    return fds


def _renumber(by_name):
    moved = {}
    for name, fd in by_name.items():
        moved[name] = fcntl.fcntl(fd, F_DUPFD_CLOEXEC, 10)
        os.close(fd)
    return moved


def _mount_run(request, keep):
    _move_mount(keep.pop("work"), "/work")
    box._mount(None, "/work", None, box.MS_REMOUNT | box.MS_BIND | box.MS_NOSUID | box.MS_NODEV)
    if "net" in keep:
        _move_mount(keep.pop("net"), box_relay_dir(request))
        box._mount(
            None,
            box_relay_dir(request),
            None,
            box.MS_REMOUNT | box.MS_BIND | box.MS_RDONLY | box.MS_NOSUID | box.MS_NODEV,
        )
    for target, size, mode, owner in request["tmpfs"]:
        options = f"size={size},mode={mode:o}"
        if owner is not None:
            options += f",uid={owner[0]},gid={owner[1]}"
        box._mount("tmpfs", target, "tmpfs", box.MS_NOSUID | box.MS_NODEV, options)
    box._mount("tmpfs", IDENTITY_DIR, "tmpfs", box.MS_NOSUID | box.MS_NODEV, "size=64k,mode=755")
    for name, data in request["identity_files"]:
        fd = os.open(f"{IDENTITY_DIR}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    box._mount(
        None, IDENTITY_DIR, None, box.MS_REMOUNT | box.MS_RDONLY | box.MS_NOSUID | box.MS_NODEV
    )


def box_relay_dir(request):
    return request["relay"]["dir"]


def _script_process(channel, init, group_fds):
    """PID 2, made ahead: loses what it can before any request (the capability
    bounding set, no_new_privs, the seccomp filter, the first copy-on-write). On the
    request (from ``channel``) it gives PID 1 (``init``) the run's exit pipe and
    cgroups, mounts the run's files while PID 1 moves it into the cgroups, takes its
    fds at fixed numbers, waits for PID 1's word, takes the run's uid and runs the
    harness."""
    _libc.prctl(box.PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    box._close_other_fds([channel, init, *group_fds])
    for fd in group_fds:  # a group for the next run (moving in is slow: done now)
        os.write(fd, b"0")
        os.close(fd)
    box._drop_bounding_set()
    box._seal()
    gc.enable()  # what the template froze stays frozen: never scanned, never copied
    _rehearse()
    _reseed()  # this process serves one run only: its own random state, made now
    header, fds = _wait_request(channel)
    keep = _renumber(dict(zip(header["fd_names"], fds, strict=True)))  # all above 9
    with open(keep.pop("request"), "rb") as fh:  # the server's memory file
        request = marshal.load(fh)
    os.dup2(keep["output"], 1)  # what goes wrong from here on is the run's to read
    os.dup2(keep["output"], 2)
    # PID 1 moves this process into the run's cgroups, when it is not in a group with
    # the run's limits already (a move waits for an RCU grace period: up to
    # milliseconds), while this one mounts
    cgroups = [keep.pop(n) for n in list(keep) if n.startswith("cgroup")]
    handed = [keep.pop("exit")]
    if cgroups:
        ready = _renumber(dict(zip(("r", "w"), os.pipe(), strict=True)))  # clear of fds 3-5
        handed += [ready["w"], *cgroups]
    _send(init, {"move": bool(cgroups)}, [handed[0], keep["output"], *handed[1:]])
    for fd in handed:
        os.close(fd)
    _mount_run(request, keep)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(keep["result"], FD_RESULT)
    os.dup2(keep["progress"], FD_PROGRESS)
    os.dup2(keep["control"], FD_CONTROL)
    if cgroups and os.read(ready["r"], 1) != b"x":  # PID 1 failed (and said why)
        os._exit(125)
    if request.get("relay") is not None:
        _start_relay(request["relay"])
    box._become(request["user"])
    box._close_other_fds([FD_RESULT, FD_PROGRESS, FD_CONTROL])
    os.chdir("/work")
    box._run_harness_here(
        {
            "env": request["env"],
            "inproc": {
                "executable": request["executable"],
                "support": request["support"],
                "control_fd": FD_CONTROL,
            },
        }
    )


def _start_relay(relay):
    """The relay to the policy proxy (the run's only way out), in a process of its
    own in the run's cgroups (its buffers count against the run's memory), not the
    run's uid (the script cannot signal or trace it), reparented to PID 1 (the script
    has no child it did not make). Returns once it listens."""
    up_r, up_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            if os.fork() == 0:
                os.setsid()
                box._close_other_fds([2, up_w])
                import netrelay

                netrelay.serve(relay["socket"], relay["port"])
                os.write(up_w, b"x")
                os.close(up_w)
                import time

                while True:  # the relay's thread serves; it ends with the namespace
                    time.sleep(3600)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"[scriptorium] The network relay could not start: {exc}\n".encode())
        os._exit(0)
    os.close(up_w)
    os.waitpid(middle, 0)
    started = os.read(up_r, 1) == b"x"
    os.close(up_r)
    if not started:
        raise OSError("the network relay did not start")


def _rehearse():
    """Touch, while waiting, what every run touches first (the compiler, a module of
    the script's kind, the record's encoding): the forked copy-on-write pages are
    copied now rather than in the run's time. Leaves nothing behind."""
    source = b"import sys\n\n\ndef main(data: dict) -> dict:\n    return {'ok': [1, 2.5, None]}\n"
    module = type(sys)("_scriptorium_rehearsal")
    exec(compile(source, "rehearsal.py", "exec"), module.__dict__)  # noqa: S102 - our own code
    parts = []
    harness._json({"ok": True, "value": module.main({}), "peak_kb": 1, "cpu_ms": 1}, parts)
    _libc.setenv(b"SCRIPTORIUM_REHEARSAL", b"1", 1)  # the environment a run gets anew
    os.environ[b"SCRIPTORIUM_REHEARSAL"] = b"1"
    _libc.unsetenv(b"SCRIPTORIUM_REHEARSAL")
    del os.environ[b"SCRIPTORIUM_REHEARSAL"], module, parts


def _reseed():
    """Random state a preloaded module made at import is the same in every fork:
    give each run's process its own (``random`` reseeds itself at fork), ahead of
    the request (numpy's reseed takes 0.7 ms of copy-on-write in a forked child)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except BaseException:  # noqa: BLE001, S110 - a run without it still runs
            pass


if __name__ == "__main__":
    main(sys.argv[1])

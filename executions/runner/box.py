"""The ``ns`` sandbox: a small bubblewrap written in Python, started as
``python -I -S -B _scriptorium_box.py CONTROL_FD`` (copied into the support dir).

It needs nothing but the kernel: new mount, PID, network, IPC and UTS namespaces
(plus a user namespace when the server is not root), a root file system built on a
tmpfs from read-only binds of the system and the run's environment, the workspace the
only writable disk, private /tmp, /dev/shm and HOME (tmpfs, counted against the run's
memory cgroup), a /proc of its own PID namespace, and only its own loopback. The
script runs as PID 2 under the run's own uid with no capabilities and no_new_privs;
PID 1 is this program, which reaps orphans and, when the script's process ends, exits
with its status, taking every process left in the namespace with it.

The control record (a ``marshal`` dict, trusted: written by the runner) arrives in a
memory file whose fd is the first argument; see ``sandbox.box_control`` for its keys.
Standard library only, imported nothing heavy: it runs once per run.
"""

import _socket  # everything is imported before the root changes: the interpreter
import ctypes  # running this may live outside what the sandbox shows
import fcntl
import marshal
import posix as os  # the C module behind os: no os.py imports
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 38, 24
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_CLOSE_RANGE = 436
SIGKILL = 9

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]  # fmt: skip


# seccomp: what a run may never do, even as its own user (the kernel's wider surface:
# new user namespaces (and with them nf_tables, mounts...), keyrings that outlive the
# run, io_uring, bpf, perf, userfaultfd). Everything else is allowed.
_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENIED = {
    "x86_64": {"keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
               "perf_event_open": 298, "userfaultfd": 323, "setns": 308},
    "aarch64": {"keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
                "perf_event_open": 241, "userfaultfd": 282, "setns": 268},
}  # fmt: skip
_IO_URING = (425, 426, 427)  # the same number on both
# fallocate reserves gigabytes in microseconds, faster than the disk guard looks: refused
# with EOPNOTSUPP, so libc's posix_fallocate writes the blocks instead (at disk speed).
_FALLOCATE = {"x86_64": 285, "aarch64": 47}
EOPNOTSUPP = 95
_NO_NEWUSER = {"x86_64": {"unshare": 272, "clone": 56}, "aarch64": {"unshare": 97, "clone": 220}}
_CLONE3 = 435
EPERM, ENOSYS = 1, 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def seccomp_program(arch: str) -> bytes:
    """The run's seccomp filter as classic BPF (``struct sock_filter[]``), also given
    to bubblewrap (``--seccomp FD``)."""
    import struct

    def op(code, jt, jf, k):
        return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)

    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    prog = [op(ld, 0, 0, 4), op(jeq, 1, 0, _ARCH[arch]), op(ret, 0, 0, kill), op(ld, 0, 0, 0)]
    if arch == "x86_64":  # the x32 ABI would be a second set of numbers
        prog += [op(jge, 0, 1, 0x40000000), op(ret, 0, 0, 0x50000 | ENOSYS)]
    for nr in [*_DENIED[arch].values(), *_IO_URING]:
        prog += [op(jeq, 0, 1, nr), op(ret, 0, 0, 0x50000 | EPERM)]
    prog += [op(jeq, 0, 1, _CLONE3), op(ret, 0, 0, 0x50000 | ENOSYS)]  # libc falls back
    prog += [op(jeq, 0, 1, _FALLOCATE[arch]), op(ret, 0, 0, 0x50000 | EOPNOTSUPP)]
    for nr in _NO_NEWUSER[arch].values():  # allowed, unless args[0] has CLONE_NEWUSER
        prog += [
            op(jeq, 0, 4, nr),
            op(ld, 0, 0, 16),
            op(jset, 0, 1, CLONE_NEWUSER),
            op(ret, 0, 0, 0x50000 | EPERM),
            op(ret, 0, 0, allow),
        ]
    prog.append(op(ret, 0, 0, allow))
    return b"".join(prog)


def _apply_seccomp():
    program = seccomp_program(os.uname().machine)
    buffer = ctypes.create_string_buffer(program, len(program))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(program) // 8, ctypes.addressof(buffer))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


class BoxError(Exception):
    """A step of building the sandbox failed (reported on stderr, exit 125)."""


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise BoxError(f"{what}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags, data=None):
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _makedirs(path, mode=0o755):
    parts = [p for p in path.split("/") if p]
    current = ""
    for part in parts:
        current += "/" + part
        try:
            os.mkdir(current, mode)
        except FileExistsError:
            pass


def _bind(root, source, target, *, writable=False, optional=False):
    """Bind ``source`` at ``root + target``, read-only unless ``writable``."""
    try:
        st = os.stat(source)
    except OSError:
        if optional:
            return
        raise BoxError(f"bind source {source} is missing")
    dest = root + target
    if (st.st_mode & 0o170000) == 0o040000:
        _makedirs(dest)
    else:
        _makedirs(dest.rsplit("/", 1)[0])
        if not _exists(dest):
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT, 0o644))
    _mount(source, dest, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | _locked_flags(dest)
    if (st.st_mode & 0o170000) != 0o020000:  # character devices keep dev access
        flags |= MS_NODEV
    if not writable:
        flags |= MS_RDONLY
    _mount(None, dest, None, flags)


def _locked_flags(path):
    """The mount flags a remount must keep (in a user namespace the kernel refuses
    to clear nosuid/nodev/noexec/atime flags of the original mount)."""
    have = os.statvfs(path).f_flag
    flags = have & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for st_flag, ms_flag in ((1024, 1024), (2048, 2048), (4096, 1 << 21)):
        if have & st_flag:
            flags |= ms_flag
    return flags


def _exists(path):
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


def _loopback_up():
    sock = _socket.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        ifreq = b"lo".ljust(16, b"\0") + b"\0" * 24
        flags = int.from_bytes(fcntl.ioctl(sock.fileno(), 0x8913, ifreq)[16:18], "little")
        ifreq = b"lo".ljust(16, b"\0") + (flags | 1).to_bytes(2, "little") + b"\0" * 22
        fcntl.ioctl(sock.fileno(), 0x8914, ifreq)  # SIOCSIFFLAGS: IFF_UP
    finally:
        sock.close()


def _build_root(control):
    """Make the new root under control['root'] and switch to it."""
    root = control["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0755")
    for target in control["dirs"]:
        _makedirs(root + target)
    for target, size, mode, owner in control["tmpfs"]:
        _makedirs(root + target)
        options = f"size={size},mode={mode:o}"
        if owner is not None:
            options += f",uid={owner[0]},gid={owner[1]}"
        _mount("tmpfs", root + target, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for source, target, writable, optional in control["binds"]:
        _bind(root, source, target, writable=writable, optional=optional)
    for target, link in control["symlinks"]:
        os.symlink(link, root + target)
    for target, data, mode in control["files"]:
        fd = os.open(root + target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    _makedirs(root + "/proc")
    # hidepid=2: the script sees only its own uid's processes (not PID 1, which is root)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    old = root + "/.old"
    os.mkdir(old, 0o700)
    arch = os.uname().machine
    if arch not in SYS_PIVOT_ROOT:
        raise BoxError(f"pivot_root: unknown architecture {arch}")
    _check(_libc.syscall(SYS_PIVOT_ROOT[arch], root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _enter_namespaces(control):
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    flags |= CLONE_NEWCGROUP
    userns = control["userns"]
    if userns:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if userns:
        inner_uid, outer_uid, inner_gid, outer_gid = userns
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1\n")
        _write("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1\n")


def _become_run_user(control):
    """PID 2, just before exec: join the run's cgroups, lose every privilege."""
    for fd in control["cgroup_fds"]:
        os.write(fd, b"0")
        os.close(fd)
    _drop_bounding_set()
    _become(control["user"])
    _seal()


def _drop_bounding_set():
    """Empty the capability bounding set: nothing can ever be regained by exec."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break


def _become(user):
    """Take the run's uid and gid, no groups (this drops every capability), when
    ``user`` is (uid, gid); in a user namespace exec clears the capabilities."""
    if user is not None:
        uid, gid = user
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)


def _seal():
    """no_new_privs and the run's seccomp filter (inherited by all it starts; both
    allow the uid change that may still follow)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if os.uname().machine in _ARCH:
        _apply_seccomp()


def _close_other_fds(keep):
    keep = sorted(set(keep) | {0, 1, 2})
    low = 0
    for fd in keep:
        if fd > low:
            _libc.syscall(SYS_CLOSE_RANGE, low, fd - 1, 0)
        low = fd + 1
    _libc.syscall(SYS_CLOSE_RANGE, low, 0xFFFFFFFF, 0)


def _init(control):
    """PID 1 of the run's namespace."""
    relay = control.get("relay")
    if relay is not None:
        sys.path.insert(0, relay["path"])
        import netrelay  # before the root changes (see the imports above)
    _build_root(control)
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")
    _loopback_up()
    if relay is not None:
        netrelay.serve(relay["socket"], relay["port"])
    child = os.fork()
    if child == 0:
        try:
            _become_run_user(control)
            _close_other_fds(control["pass_fds"])
            os.chdir(control["cwd"])
            if control.get("inproc"):
                _run_harness_here(control)  # never returns
            os.execve(control["argv"][0], control["argv"], control["env"])
        except BaseException as exc:  # noqa: BLE001 - whatever fails, say so and stop
            os.write(2, f"[scriptorium] The sandbox could not start the script: {exc}\n".encode())
        os._exit(125)
    _close_passed(control)
    _exit_with(child, reap_all=True)


def _run_harness_here(control):
    """Become the harness without starting another interpreter (this one is the run's
    environment's Python, started with the harness's flags): the environment, the
    interpreter's own idea of who it is, a fresh ``__main__``, then the harness."""
    inproc, env = control["inproc"], control["env"]
    _libc.clearenv()
    os.environ.clear()
    for name, value in env.items():
        _libc.setenv(name.encode(), value.encode(), 1)
        os.environ[name.encode()] = value.encode()
    sys.executable = sys._base_executable = inproc["executable"]
    sys.orig_argv[:] = [inproc["executable"], "-I", "-S", "-B", "-u"]
    sys.path[0] = inproc["support"]  # was the box's own folder (a host path)
    main = type(sys)("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    fd = inproc["control_fd"]
    control.clear()
    globals().pop("control", None)
    import _scriptorium_harness as harness

    harness.main(fd)
    os._exit(0)  # the harness exits by itself; this is a guard


def _close_passed(control):
    """This process's copies of the fds meant for the script (its pipes' ends must
    close when the script's do)."""
    for fd in control["pass_fds"] + control["cgroup_fds"]:
        try:
            os.close(fd)
        except OSError:
            pass


def _exit_with(child, *, reap_all):
    """Wait for ``child`` (reaping any other process meanwhile when ``reap_all``: the
    PID 1 duty) and exit with its status (128 + signal when it was killed)."""
    while True:
        try:
            pid, status = os.waitpid(-1 if reap_all else child, 0)
        except ChildProcessError:
            os._exit(125)
        except InterruptedError:
            continue
        if pid == child:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))


def main(control_fd):
    with open(int(control_fd), "rb") as fh:
        control = marshal.load(fh)
    _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    try:
        _enter_namespaces(control)
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"[scriptorium] The sandbox could not start: {exc}\n".encode())
        os._exit(125)
    if pid == 0:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
            _init(control)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"[scriptorium] The sandbox could not start: {exc}\n".encode())
        os._exit(125)
    _close_passed(control)
    _exit_with(pid, reap_all=False)


if __name__ == "__main__":
    main(sys.argv[1])

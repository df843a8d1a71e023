"""Who a run is: a name never reused (across attempts, workers and instances on one
host) and, when the server is root, a uid of its own from ``RUN_UID_RANGE``.

A uid is held with an exclusive ``flock`` on ``RUN_UID_LOCK_DIR/<uid>`` for as long as
the run lives; every Scriptorium instance on the host uses the same directory, so two
instances never hand out the same uid at once, and a crashed worker's locks vanish
with it. Before a uid is handed out, any process still owned by it is killed, unless
the uid was never handed out (its lock file is new) or the lock file says its last
holder released it clean (nothing of it was left: its run's cgroup was emptied and
removed, or no process of the uid was found). A holder that crashed never wrote
that, so its leftovers are looked for and killed.
"""

import fcntl
import os
import secrets
import signal
import time
from dataclasses import dataclass

from django.conf import settings

ATTEMPTS = 64
# uids whose leftovers outlived their SIGKILL (stuck in the kernel): passed over, by
# this process, for a while, rather than waited for again by every run
STUCK_SECONDS = 60.0
_stuck: dict[int, float] = {}
CLEAN, BUSY = b"clean\n", b"busy\n\0"  # what a lock file says of its uid (same length)


@dataclass
class RunIdentity:
    """``name``: unique, safe in paths and cgroup names. ``uid``/``gid``: what the
    script runs as outside any user namespace (None when the server is not root and
    runs scripts as itself, behind a user namespace)."""

    name: str
    uid: int | None
    gid: int | None
    _lock_fd: int | None = None
    # set by the runner when every process the uid can have had is known dead: the
    # run's cgroup, which all of them joined before taking the uid, was emptied and
    # removed. Then release() need not look for them.
    contained: bool = False

    def release(self) -> None:
        """Kill anything still running as the uid (unless ``contained``), then free
        it, marked clean when nothing of it is left."""
        clean = True
        if self.uid is not None and not self.contained:
            clean = kill_uid(self.uid) == 0 or not processes_of(self.uid)
        if self._lock_fd is not None:
            if clean:
                _mark(self._lock_fd, CLEAN)
            os.close(self._lock_fd)
            self._lock_fd = None


def uid_range() -> tuple[int, int]:
    """(first, last) of RUN_UID_RANGE ("first-last")."""
    first, _, last = str(settings.RUN_UID_RANGE).partition("-")
    low, high = int(first), int(last or first)
    if not (0 < low <= high < 2**32 - 1):
        raise ValueError(f"RUN_UID_RANGE {settings.RUN_UID_RANGE!r} is not first-last")
    return low, high


def acquire(run_id: str) -> RunIdentity:
    """A fresh identity for one attempt of run ``run_id``."""
    from .workspace import safe_id

    name = f"{safe_id(run_id)[:24]}-{secrets.token_hex(6)}"
    if os.geteuid() != 0:
        return RunIdentity(name=name, uid=None, gid=None)
    low, high = uid_range()
    lock_dir = str(settings.RUN_UID_LOCK_DIR)
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for _ in range(ATTEMPTS):
        uid = low + secrets.randbelow(high - low + 1)
        if _stuck and _stuck.get(uid, 0) > time.monotonic():
            continue
        path = f"{lock_dir}/{uid}"
        try:  # a uid never handed out before has no leftovers to look for
            fd, fresh = (
                os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600),
                True,
            )
        except FileExistsError:
            fd, fresh = os.open(path, os.O_RDWR | os.O_CLOEXEC), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not fresh and os.pread(fd, len(CLEAN), 0) != CLEAN:
            # a leftover of a crashed worker must not share the run's uid: killed, and
            # the uid is passed over while one is still there (it stays marked busy)
            if kill_uid(uid) and processes_of(uid):
                _stuck[uid] = time.monotonic() + STUCK_SECONDS
                os.close(fd)
                continue
        _mark(fd, BUSY)
        return RunIdentity(name=name, uid=uid, gid=uid, _lock_fd=fd)
    raise RuntimeError("no free run uid in RUN_UID_RANGE")


def _mark(fd: int, state: bytes) -> None:
    os.pwrite(fd, state, 0)


def processes_of(uid: int) -> list[int]:
    """The live pids (zombies left out: they are dead, only not yet reaped by their
    parent) running as ``uid``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            if state not in (b"Z", b"X"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def kill_uid(uid: int, *, settle_seconds: float = 1.0) -> int:
    """SIGKILL every process running as ``uid`` (rounds until none is left, to catch
    forks) and wait up to ``settle_seconds`` for the signalled ones to be gone (a
    SIGKILLed process with a large address space takes a while to exit). Returns how
    many were signalled."""
    signalled: set[int] = set()
    deadline = time.monotonic() + settle_seconds
    pause = 0.001
    while True:
        pids = processes_of(uid)
        if not pids or time.monotonic() >= deadline:
            return len(signalled)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                signalled.add(pid)
            except OSError:
                pass
        time.sleep(pause)
        pause = min(pause * 2, 0.05)

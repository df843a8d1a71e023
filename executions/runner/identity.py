"""Who a run is: a name never reused (across attempts, workers and instances on one
host) and, when the server is root, a uid of its own from ``RUN_UID_RANGE``.

A uid is held with an exclusive ``flock`` on ``RUN_UID_LOCK_DIR/<uid>`` for as long as
the run lives; every Scriptorium instance on the host uses the same directory, so two
instances never hand out the same uid at once, and a crashed worker's locks vanish
with it. Before a uid is handed out, any process still owned by it is killed.
"""

import fcntl
import os
import secrets
import signal
from dataclasses import dataclass

from django.conf import settings

ATTEMPTS = 64


@dataclass
class RunIdentity:
    """``name``: unique, safe in paths and cgroup names. ``uid``/``gid``: what the
    script runs as outside any user namespace (None when the server is not root and
    runs scripts as itself, behind a user namespace)."""

    name: str
    uid: int | None
    gid: int | None
    _lock_fd: int | None = None

    def release(self) -> None:
        """Kill anything still running as the uid, then free it."""
        if self.uid is not None:
            kill_uid(self.uid)
        if self._lock_fd is not None:
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
        fd = os.open(f"{lock_dir}/{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        kill_uid(uid)  # a leftover of a crashed worker must not share the run's uid
        return RunIdentity(name=name, uid=uid, gid=uid, _lock_fd=fd)
    raise RuntimeError("no free run uid in RUN_UID_RANGE")


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


def kill_uid(uid: int) -> int:
    """SIGKILL every process running as ``uid`` (a few rounds, to catch forks).
    Returns how many were signalled."""
    killed = 0
    for _ in range(5):
        pids = processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed

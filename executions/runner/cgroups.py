"""Per-run control groups: memory and process limits for a run's whole process tree,
how many of its processes the kernel killed for memory, and a kill that reaches every
process of the run.

cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``: ``memory.max``, ``pids.max``,
``cgroup.kill``) and v1 (``/sys/fs/cgroup/{memory,pids}/``) are both handled. A group
is made under ``scriptorium/`` of the hierarchy for each run and removed at its end.
Where the server may not create groups (not root and no delegated subtree) ``open_run``
returns None and runs are limited per process only (``describe`` says so).
"""

import functools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "scriptorium"


@dataclass
class RunCgroup:
    """One run's groups. ``procs_files`` are the cgroup.procs files a process writes
    ``0`` to in order to join (the sandbox does it before the script starts)."""

    version: int
    dirs: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.dirs[0].name if self.dirs else ""

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def _memory_dir(self) -> Path:
        return self.dirs[0]

    def pids(self) -> list[int]:
        """The processes in the run's groups now."""
        found: set[int] = set()
        for path in self.procs_files:
            try:
                found.update(int(x) for x in path.read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process in the groups (repeated until none is left or a
        second has passed: a fork racing the kill is caught on the next round)."""
        if self.version == 2:
            try:
                (self.dirs[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        pause = 0.0002  # a killed process is usually gone in well under a millisecond
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def kill_sole_task(self, before_kill=None):
        """SIGKILL the group's process when it is the group's only task (one process,
        one thread) and return ``(pid, before_kill(pid), alone)``, ``alone`` True when
        afterwards no other task is there: then no code of the run can run again (a
        process with SIGKILL pending never returns to user space, and a fork it had
        begun fails), though its exit (the teardown of its memory) may not be over, or
        may be over already. ``before_kill`` reads what the kill takes away (its memory
        figures); it is not called without a sole task. None: no task, more than one,
        nothing killed; ``alone`` False: a fork raced the check, nothing is promised."""
        pids_dir = self.dirs[-1]  # v2: the one group; v1: the pids hierarchy's
        procs, tasks = pids_dir / "cgroup.procs", pids_dir / "pids.current"
        try:
            found = procs.read_text().split()
            # pids.current counts every task, threads and forks under way included
            if len(found) != 1 or tasks.read_text().strip() != "1":
                return None
            pid = int(found[0])
            seen = before_kill(pid) if before_kill is not None else None
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return None
        try:  # no fork got past the check (the killed process may have left already)
            alone = int(tasks.read_text()) <= 1 and set(procs.read_text().split()) <= {found[0]}
        except (OSError, ValueError):
            alone = False
        return pid, seen, alone

    def oom_kills(self) -> int:
        """How many processes of the run the kernel killed for memory."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self._memory_dir() / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value or 0)
        return 0

    def remove(self) -> bool:
        """Kill what is left and remove the groups. True when they are gone (so no
        process of the run is left: a group with a process in it cannot be removed)."""
        self.kill()
        removed = True
        for path in self.dirs:
            deadline, pause = time.monotonic() + 0.5, 0.0002
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        removed = False
                        break
                    time.sleep(pause)
                    pause = min(pause * 2, 0.01)
        return removed


@functools.cache
def version() -> int:
    """2 or 1 when this process can make run groups with memory and pids limits,
    else 0."""
    v2 = ROOT / "cgroup.controllers"
    try:
        if v2.exists():
            controllers = v2.read_text().split()
            if {"memory", "pids"} <= set(controllers) and os.access(ROOT, os.W_OK):
                return 2
            return 0
        if all(os.access(ROOT / c, os.W_OK) for c in ("memory", "pids")):
            return 1
    except OSError:
        return 0
    return 0


def _prepare_parent_v2() -> Path:
    parent = ROOT / PARENT
    parent.mkdir(exist_ok=True)
    for path in (ROOT / "cgroup.subtree_control", parent / "cgroup.subtree_control"):
        enabled = path.read_text().split()
        missing = [c for c in ("memory", "pids") if c not in enabled]
        if missing:
            path.write_text(" ".join(f"+{c}" for c in missing))
    return parent


def open_run(name: str, *, memory_bytes: int, max_processes: int) -> RunCgroup | None:
    """Make the run's groups with their limits, or None where the host does not let
    this process (see ``version``) or making them fails."""
    v = version()
    if not v:
        return None
    group = RunCgroup(version=v)
    try:
        if v == 2:
            path = _prepare_parent_v2() / name
            path.mkdir()
            group.dirs.append(path)
            (path / "memory.max").write_text(str(memory_bytes))
            _try_write(path / "memory.swap.max", "0")
            (path / "pids.max").write_text(str(max_processes))
        else:
            memory = ROOT / "memory" / PARENT / name
            pids = ROOT / "pids" / PARENT / name
            for path in (memory, pids):
                path.mkdir(parents=True)
                group.dirs.append(path)
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            _try_write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            # v1 charges socket buffers only with a TCP limit set: without it a run can
            # hold the host's whole TCP memory pool in unread buffers (v2 always charges).
            _try_write(memory / "memory.kmem.tcp.limit_in_bytes", str(memory_bytes))
            _try_write(memory / "memory.swappiness", "0")
            (pids / "pids.max").write_text(str(max_processes))
    except OSError:
        group.remove()
        return None
    return group


def _dirs_named(name: str) -> list[Path]:
    if version() == 2:
        return [ROOT / PARENT / name]
    return [ROOT / c / PARENT / name for c in ("memory", "pids")]


def adopt(name: str) -> RunCgroup | None:
    """The existing run group ``name`` (made by ``open_run``, maybe in another
    process: a warm run's group is made for the run before it, see warm.py), or None."""
    if not version() or not name or "/" in name or name.startswith("."):
        return None
    dirs = _dirs_named(name)
    if not all(d.is_dir() for d in dirs):
        return None
    return RunCgroup(version=version(), dirs=dirs)


def remove_if_empty(name: str) -> None:
    """Remove the run group ``name`` unless a process is in it (never kills)."""
    group = adopt(name)
    for path in group.dirs if group else []:
        try:
            path.rmdir()
        except OSError:
            pass


def remove_empty(keep) -> int:
    """Remove every run group whose name ``keep(name)`` refuses and that holds no
    process (never kills). Returns how many."""
    removed = 0
    if not version():
        return 0
    for base in {d.parent for d in _dirs_named("x")}:
        try:
            entries = [e for e in base.iterdir() if e.is_dir() and not keep(e.name)]
        except OSError:
            continue
        for entry in entries:
            try:
                entry.rmdir()
                removed += 1
            except OSError:
                continue
    return removed


def _try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass


def prune(older_than_seconds: float = 3600) -> int:
    """Remove empty run groups left by a crashed worker. Returns how many."""
    removed = 0
    bases = [ROOT / PARENT] if version() == 2 else [ROOT / c / PARENT for c in ("memory", "pids")]
    cutoff = time.time() - older_than_seconds
    for base in bases:
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            try:
                if entry.is_dir() and entry.stat().st_mtime < cutoff:
                    entry.rmdir()
                    removed += 1
            except OSError:
                continue
    return removed

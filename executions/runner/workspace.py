"""Per-run directories: ``WORKSPACES_DIR/<run>-<random>/`` holds ``work/`` (the
script's working directory, the only place it may write) and, under the rlimit
backend, ``tmp/`` (its TMPDIR; bwrap gives a private /tmp instead)."""

import os
import queue
import re
import secrets
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_NAME = 120


def sanitise_name(name: str, *, taken: set[str] | None = None) -> str:
    """A safe single file name for ``name``: no directories, no leading dots, only
    letters, digits, ``._ -``; never empty; unique among ``taken`` (a counter is added)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip(" .")
    base = base.lstrip("-") or "file"
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: MAX_NAME - len(ext) - 1] + "." + ext) if dot and len(ext) < 16 else base
        base = base[:MAX_NAME]
    candidate, n = base, 1
    while taken is not None and candidate.lower() in taken:
        stem, dot, ext = base.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot and stem else f"{base}-{n}"
        n += 1
    if taken is not None:
        taken.add(candidate.lower())
    return candidate


def safe_id(run_id: str) -> str:
    """``run_id`` reduced to characters safe in a directory name (at most 40)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(run_id))[:40] or "run"


def ensure_traversable(path: Path) -> None:
    """Make ``path`` (created if missing) and its ancestors inside DATA_DIR searchable
    by other users (o+x, not o+r), so the unprivileged run uid can reach its files."""
    path.mkdir(parents=True, exist_ok=True)
    data_dir = Path(settings.DATA_DIR).resolve()
    current = path.resolve()
    while True:
        mode = current.stat().st_mode
        if not mode & stat.S_IXOTH and (current == data_dir or data_dir in current.parents):
            os.chmod(current, stat.S_IMODE(mode) | stat.S_IXOTH | stat.S_IXGRP)
        if current == data_dir or current.parent == current or data_dir not in current.parents:
            break
        current = current.parent


@dataclass
class Workspace:
    root: Path
    work: Path
    tmp: Path | None
    baseline: dict[str, tuple[int, int]] = field(default_factory=dict)

    def snapshot(self) -> None:
        """Remember what is in ``work`` now: only what is new or changed afterwards
        is collected."""
        self.baseline = _listing(self.work)

    def remove(self) -> None:
        """Take the run directory away now (a rename) and delete it in the background
        (one long-lived remover thread per process): deleting directories that were
        bind-mounted into a sandbox that is still being torn down costs milliseconds
        each, off the run's critical path. What a crash leaves is pruned later."""
        trash = self.root.with_name(f".trash-{self.root.name}")
        try:
            os.rename(self.root, trash)
        except OSError:
            remove_tree(self.root)
            return
        _remover().put(trash)


_removal: tuple[int, threading.Thread, queue.SimpleQueue] | None = None
_removal_lock = threading.Lock()


def _remover() -> queue.SimpleQueue:
    """The queue of the remover thread, started (again) when this process has none
    alive: after a fork only the forking thread exists in the child."""
    global _removal
    with _removal_lock:
        if _removal is None or _removal[0] != os.getpid() or not _removal[1].is_alive():
            work: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(
                target=_remove_forever, args=(work,), name="workspace-remover", daemon=True
            )
            thread.start()
            _removal = (os.getpid(), thread, work)
        return _removal[2]


def _remove_forever(work: queue.SimpleQueue) -> None:
    while True:
        path = work.get()
        try:
            remove_tree(path)
        except Exception:  # noqa: BLE001, S110 - never let one bad tree stop the remover
            pass


def _listing(top: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(path, top)] = (st.st_size, st.st_mtime_ns)
    return found


def create_workspace(run_id: str, *, with_tmp: bool = True) -> Workspace:
    """A fresh run directory, owned so that the run uid can write ``work`` and
    ``tmp`` (made only ``with_tmp``)."""
    top = Path(settings.WORKSPACES_DIR)
    if not top.is_dir() or stat.S_IMODE(top.stat().st_mode) & 0o044:
        ensure_traversable(top)
        os.chmod(top, 0o711)  # runs share a uid under rlimit: they must not list others
    root = top / f"{safe_id(run_id)}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o711)
    work, tmp = root / "work", (root / "tmp" if with_tmp else None)
    owned = [work] if tmp is None else [work, tmp]
    for path in owned:
        path.mkdir(mode=0o700)
    os.chmod(root, 0o711)
    uid, gid = settings.RUN_UID, settings.RUN_GID
    if uid is not None and os.geteuid() == 0:
        for path in owned:
            os.chown(path, uid, gid if gid is not None else uid)
    return Workspace(root=root, work=work, tmp=tmp)


def give_to_run_user(path: Path) -> None:
    """Hand a file put into the workspace to the run uid (when the server is root)."""
    uid, gid = settings.RUN_UID, settings.RUN_GID
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else uid)


def remove_tree(path: Path) -> None:
    """Remove ``path`` even when the script left read-only directories in it."""

    def fix(func, target, _exc_info):
        try:
            parent = os.path.dirname(target)
            os.chmod(parent, 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
            func(target)
        except FileNotFoundError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=fix)


def prune_workspaces(*, older_than_hours: float = 24) -> list[str]:
    """Remove run directories left behind (a crashed worker, an interrupted removal)
    untouched for ``older_than_hours``. Returns the names removed."""
    top = Path(settings.WORKSPACES_DIR)
    if not top.is_dir():
        return []
    cutoff = time.time() - older_than_hours * 3600
    removed = []
    for entry in top.iterdir():
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                remove_tree(entry)
                removed.append(entry.name)
        except OSError:
            continue
    return removed

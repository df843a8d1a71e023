"""Per-run directories: ``WORKSPACES_DIR/<run>-<random>/`` holds ``work/`` (the
script's working directory, the only place it may write) and, under the rlimit
backend, ``tmp/`` (its TMPDIR; bwrap gives a private /tmp instead)."""

import errno
import os
import queue
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .files import listing

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
    home: Path | None = None
    box: Path | None = None
    owner: tuple[int, int] | None = None
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
            try:
                remove_tree(self.root)
            except OSError:
                pass  # prune_workspaces takes what is left
            return
        _remover().put((time.monotonic(), trash))


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
    from .janitor import wait_quietly

    while True:
        given, path = work.get()
        wait_quietly(given)  # after the run's answer
        try:
            remove_tree(path)
        except Exception:  # noqa: BLE001, S110 - never let one bad tree stop the remover
            pass


def _listing(top: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of the regular files under ``top``, by
    the collection's own walk (iterative, through directory fds, links never
    followed, bounded), so its keys are exactly those ``collect_files`` compares."""
    return listing(top)


def create_workspace(run_id: str, *, owner: tuple[int, int] | None, backend: str) -> Workspace:
    """A fresh run directory ``<run>/``: ``work/`` (the script's working directory)
    owned by ``owner`` (uid, gid; None: the server's own user) and mode 0700, plus
    what the backend needs beside it: ``box/`` (ns: the new root's mount point, the
    server's only), or ``tmp/`` and ``home/`` (rlimit: TMPDIR and HOME, outside the
    collected folder; ns and bwrap give private tmpfs instead)."""
    top = Path(settings.WORKSPACES_DIR)
    if not top.is_dir() or stat.S_IMODE(top.stat().st_mode) & 0o044:
        ensure_traversable(top)
        os.chmod(top, 0o711)  # runs must not list each other
    root = top / f"{safe_id(run_id)}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o711)
    work = root / "work"
    tmp = home = box = None
    owned = [work]
    if backend == "rlimit":
        tmp, home = root / "tmp", root / "home"
        owned += [tmp, home]
    for path in owned:
        path.mkdir(mode=0o700)
    if backend == "ns":
        box = root / "box"
        box.mkdir(mode=0o700)
    os.chmod(root, 0o711)
    if owner is not None:
        for path in owned:
            os.chown(path, *owner)
    return Workspace(root=root, work=work, tmp=tmp, home=home, box=box, owner=owner)


def give_to_run_user(path: Path, owner: tuple[int, int] | None) -> None:
    """Hand a file put into the workspace to the run's uid (when it has its own)."""
    if owner is not None:
        os.chown(path, *owner)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_WINDOW = 32  # directory fds remove_tree holds at once, whatever the depth
_SCAN_BATCH = 1024  # sub-folders remembered per scan of one folder
_ATTEMPTS = 3  # passes over a tree something keeps writing into


@dataclass
class _Level:
    """One folder on remove_tree's way down: its fd (None while it is out of the
    window of open fds), its name in its parent, its (st_dev, st_ino), the
    sub-folders still to empty and the names that could not be removed."""

    fd: int | None
    name: str
    ident: tuple[int, int]
    pending: list[str] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and all it holds (a missing ``path`` is fine; a file or a link
    is simply unlinked). Iterative, so any depth; it works through directory fds, so
    a link is removed and never followed, a folder swapped for a link mid-way is
    not entered, and nothing outside ``path`` is touched (another file system
    mounted inside is not entered either). Names are handled as bytes (any
    encoding); folders the script made read-only or unreadable are fixed; as root,
    files of any owner go. Raises OSError (the first failure) only when something is
    still there after a few passes, e.g. a process that keeps writing."""
    path = Path(path)
    try:
        parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        for _attempt in range(_ATTEMPTS):
            error = _remove_once(parent_fd, path.name)
            if error is None or not _exists(path.name, parent_fd):
                return
        raise error
    finally:
        os.close(parent_fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _remove_once(parent_fd: int, name: str) -> OSError | None:
    """One depth-first pass removing ``name`` in ``parent_fd``; the first error."""
    try:
        top_fd = _open_dir(name, parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return _unlink(name, parent_fd, fix=False)  # a file or a link
        return exc
    errors: list[OSError] = []
    top = _Level(top_fd, name, _identity(top_fd))
    device = top.ident[0]
    stack = [top]
    try:
        while stack:
            level = stack[-1]
            if level.pending:
                child = _enter(level, level.pending.pop(), device, errors)
                if child is not None:
                    stack.append(child)
                    if len(stack) > _FD_WINDOW:  # keep the fds of the deepest levels only
                        far = stack[-_FD_WINDOW - 1]
                        if far.fd is not None:
                            os.close(far.fd)
                            far.fd = None
                continue
            level.pending = _empty(level, errors)
            if level.pending:
                continue
            # Nothing left in it that can go: remove it from its parent.
            parent = stack[-2] if len(stack) > 1 else None
            if parent is not None and parent.fd is None:
                parent.fd = _reopen_parent(level.fd, parent.ident)
            stack.pop()
            os.close(level.fd)
            level.fd = None
            if parent is None:
                error = _rmdir(level.name, parent_fd, fix=False)
            else:
                error = _rmdir(level.name, parent.fd, fix=True)
            if error is not None:
                errors.append(error)
                if parent is not None:
                    parent.kept.add(level.name)
    except OSError as exc:  # the tree was moved while being removed: stop there
        errors.append(exc)
    finally:
        for level in stack:
            if level.fd is not None:
                os.close(level.fd)
    return errors[0] if errors else None


def _open_dir(name: str, dir_fd: int) -> int:
    """``name`` in ``dir_fd`` opened as a directory, never through a link; a folder
    the server may not read (its own, made unreadable by the script when both share
    a uid) is made u+rwx first, through an O_PATH fd so that no link is followed."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        path_fd = os.open(
            name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
        try:
            os.chmod(f"/proc/self/fd/{path_fd}", 0o700)
            return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(path_fd)


def _identity(fd: int) -> tuple[int, int]:
    """(st_dev, st_ino) of the folder ``fd``, made u+rwx first when the server is
    not root and the script took those rights away (root needs none of them)."""
    st = os.fstat(fd)
    if os.geteuid() != 0 and stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        try:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)  # to list it and unlink in it
        except OSError:
            pass
    return (st.st_dev, st.st_ino)


def _enter(level: _Level, name: str, device: int, errors: list[OSError]) -> _Level | None:
    """The sub-folder ``name`` of ``level``, opened, or None: gone, or replaced by a
    link or a file (then unlinked), or not removable (noted in ``errors``)."""
    try:
        fd = _open_dir(name, level.fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        error = exc
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            error = _unlink(name, level.fd, fix=True)
        if error is not None:
            errors.append(error)
            level.kept.add(name)
        return None
    child = _Level(fd, name, _identity(fd))
    if child.ident[0] != device:
        os.close(fd)
        errors.append(OSError(errno.EXDEV, "a file system is mounted there", name))
        level.kept.add(name)
        return None
    return child


def _empty(level: _Level, errors: list[OSError]) -> list[str]:
    """Unlink every entry of ``level`` that is not a folder; return (up to
    _SCAN_BATCH of) its sub-folders still to empty."""
    subdirs: list[str] = []
    try:
        with os.scandir(level.fd) as entries:
            for entry in entries:
                name = entry.name
                if name in level.kept:
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                error = None if is_dir else _unlink(name, level.fd, fix=True)
                if is_dir or isinstance(error, IsADirectoryError):
                    subdirs.append(name)
                    if len(subdirs) >= _SCAN_BATCH:
                        break
                elif error is not None:
                    errors.append(error)
                    level.kept.add(name)
    except OSError as exc:
        errors.append(exc)
    return subdirs


def _reopen_parent(fd: int, ident: tuple[int, int]) -> int:
    """The fd of the folder holding ``fd``, which must still be ``ident``."""
    parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    st = os.fstat(parent)
    if (st.st_dev, st.st_ino) != ident:
        os.close(parent)
        raise OSError(errno.ESTALE, "the tree was moved while being removed")
    return parent


def _unlink(name: str, dir_fd: int, *, fix: bool) -> OSError | None:
    """Unlink the non-folder ``name`` in ``dir_fd``; the error, None when done or
    gone. ``fix``: on EACCES make the folder u+rwx and try again."""
    return _remove_entry(os.unlink, name, dir_fd, fix=fix)


def _rmdir(name: str, dir_fd: int, *, fix: bool) -> OSError | None:
    """Remove the empty folder ``name`` in ``dir_fd``, like ``_unlink``."""
    return _remove_entry(os.rmdir, name, dir_fd, fix=fix)


def _remove_entry(remove, name: str, dir_fd: int, *, fix: bool) -> OSError | None:
    for again in (fix, False):
        try:
            remove(name, dir_fd=dir_fd)
            return None
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            if not again:
                return exc
            _fix_mode(dir_fd)
        except OSError as exc:
            return exc
    return None


def _fix_mode(dir_fd: int) -> None:
    try:
        os.fchmod(dir_fd, 0o700)
    except OSError:
        pass


def prune_workspaces(*, older_than_hours: float = 24) -> list[str]:
    """Remove run directories left behind (a crashed worker, an interrupted removal)
    untouched for ``older_than_hours``. Returns the names removed. Never raises: what
    cannot be removed now (and anything that is not a directory) stays for the next
    prune."""
    top = Path(settings.WORKSPACES_DIR)
    try:
        names = sorted(os.listdir(top))
    except OSError:
        return []
    cutoff = time.time() - older_than_hours * 3600
    removed = []
    for name in names:
        try:
            st = os.lstat(top / name)
            if not stat.S_ISDIR(st.st_mode) or st.st_mtime >= cutoff:
                continue
            remove_tree(top / name)
        except OSError:
            continue
        removed.append(name)
    return removed

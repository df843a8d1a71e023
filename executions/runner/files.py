"""Collecting what a run left in its workspace: new or changed regular files at any
depth, never following symlinks, never leaving the workspace, within the file limits;
each with a type category.

The workspace belongs to the script, which may still be changing it (a process that
outlived the run) while the server, often root, reads it. So the walk goes through
directory file descriptors (``openat`` with ``O_NOFOLLOW``, never a path string), is
iterative (no recursion limit), stops below ``MAX_DEPTH`` levels and after
``max_entries`` entries, and never raises for what it finds: a hostile name, a link,
a file that vanishes or changes mid-walk is skipped with a reason. The reasons are
bounded (``MAX_REASONS`` lines plus one summary line), and so is every name they show.

Names that are not valid UTF-8 are skipped (``"<name with \\xNN escapes>: the name is
not valid UTF-8 (not collected)"``): an artifact's name must be text, and renaming the
file would give it a name the script never wrote.

A ``CollectedFile`` is read with ``CollectedFile.open()`` only: it walks the path again
from the workspace without following any link and refuses a file that is no longer
the one collected (``FileChangedError``).
"""

import errno
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CATEGORIES = ("data", "document", "image", "archive", "code", "log", "other")
_BY_EXTENSION = {
    "data": "csv tsv json jsonl ndjson xml yaml yml parquet feather xlsx xls ods sqlite db "
    "sqlite3 h5 hdf5 npy npz pkl pickle avro arrow dat",
    "document": "pdf doc docx odt rtf txt md markdown html htm tex epub pptx ppt odp",
    "image": "png jpg jpeg gif bmp svg webp tif tiff ico heic avif eps",
    "archive": "zip tar gz tgz bz2 xz zst 7z rar lz4 tbz2 txz",
    "code": "py ipynb js ts sql sh r c h cpp java go rs rb pl php css",
    "log": "log out err",
}
EXTENSIONS = {ext: cat for cat, exts in _BY_EXTENSION.items() for ext in exts.split()}
_MAGIC = [
    (b"%PDF-", "document"),
    (b"\x89PNG\r\n\x1a\n", "image"),
    (b"\xff\xd8\xff", "image"),
    (b"GIF8", "image"),
    (b"RIFF", "image"),  # WebP (and WAV/AVI, rare as outputs)
    (b"PK\x03\x04", "archive"),
    (b"\x1f\x8b", "archive"),
    (b"BZh", "archive"),
    (b"\xfd7zXZ\x00", "archive"),
    (b"7z\xbc\xaf\x27\x1c", "archive"),
    (b"SQLite format 3\x00", "data"),
]

MAX_DEPTH = 64  # folders deeper than this are not looked into
MAX_REASONS = 50  # skipped-file lines kept; the rest are counted in one summary line
ENTRIES_PER_FILE = 10  # the walk looks at most at max_files x this entries ...
MIN_ENTRIES = 1000  # ... and at least this many
MAX_SHOWN = 200  # characters of a name shown in a reason line

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SWAPPED = (errno.ELOOP, errno.ENOTDIR)  # a component became a symlink or a file


class FileChangedError(OSError):
    """A collected file is no longer the regular file that was collected: it was
    replaced (by a link, a folder, another file) after the walk saw it."""


@dataclass
class CollectedFile:
    """A file the run produced, still in the workspace (it is removed afterwards).

    ``path`` is for display and tests only: the script may swap it for a link at any
    moment, so the server reads the file through ``open()``."""

    relative_path: str
    path: Path
    size: int
    category: str  # data|document|image|archive|code|log|other
    workspace: Path = field(default=Path("/nonexistent"), repr=False)
    identity: tuple[int, int] = field(default=(-1, -1), repr=False)  # (st_dev, st_ino)

    def open(self) -> BinaryIO:
        """A binary reader of the file as collected: opened by walking
        ``relative_path`` from the workspace one component at a time without
        following links, checked to be the same regular file (device and inode) the
        walk saw, and reading at most ``size`` bytes (a file still growing is cut at
        its collected size). Raises ``FileChangedError`` when the file was replaced,
        ``FileNotFoundError`` when it is gone; the caller closes the reader."""
        fd = _open_in(self.workspace, self.relative_path.split("/"), self.identity)
        return io.BufferedReader(_Bounded(fd, self.size), 1 << 16)


class _Bounded(io.RawIOBase):
    """A raw reader of at most ``remaining`` bytes of ``fd`` (which it owns)."""

    def __init__(self, fd: int, remaining: int):
        self.fd, self.remaining = fd, remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")[: self.remaining]
        if not len(view):
            return 0
        n = os.readv(self.fd, [view])
        self.remaining -= n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def categorise(path: Path) -> str:
    """The category of a file, by extension first, then by its first bytes
    (``.bin`` holding a PNG is an image; text without extension is a document)."""
    ext = path.suffix.lower().lstrip(".")
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "other"
    return _category_of(ext, head)


def _category_of(ext: str, head: bytes) -> str:
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    for magic, category in _MAGIC:
        if head.startswith(magic):
            return category
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return "other"
        stripped = head.lstrip()
        return "data" if stripped[:1] in (b"{", b"[") else "document"
    return "other"


def shown_name(name: str) -> str:
    """``name`` fit for one log line: bytes that are not UTF-8 as ``\\xNN``, control
    characters escaped, at most about MAX_SHOWN characters (the middle elided)."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    if len(text) > MAX_SHOWN:
        text = f"{text[: MAX_SHOWN // 2]}…{text[-(MAX_SHOWN // 2 - 1) :]}"
    return text


class _Reasons:
    """The skipped-file lines: the first MAX_REASONS kept, the rest only counted."""

    def __init__(self):
        self.lines: list[str] = []
        self.more = 0
        self.stopped = ""  # why the walk stopped early, if it did

    def add(self, rel: str, reason: str) -> None:
        if len(self.lines) < MAX_REASONS:
            self.lines.append(f"{shown_name(rel)}: {reason}")
        else:
            self.more += 1

    def result(self) -> list[str]:
        lines = list(self.lines)
        if self.more:
            lines.append(f"... and {self.more} more files not collected")
        if self.stopped:
            lines.append(self.stopped)
        return lines


@dataclass
class _Found:
    rel: str
    st: os.stat_result


def _open_dir(name: str, dir_fd: int) -> int:
    """``name`` in ``dir_fd`` opened as a directory, never through a symlink."""
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _open_file(name: str, dir_fd: int) -> int:
    """``name`` in ``dir_fd`` opened for reading, never through a symlink, never
    blocking (a FIFO opens at once, and is then refused as not a regular file)."""
    return os.open(name, _FILE_FLAGS, dir_fd=dir_fd)


def _open_in(root: Path, parts: list[str], identity: tuple[int, int]) -> int:
    """An fd of the regular file ``root/parts...`` whose (st_dev, st_ino) is
    ``identity``, reached without following any link."""
    try:
        fd = os.open(root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                inner = _open_dir(part, fd)
                os.close(fd)
                fd = inner
            file_fd = _open_file(parts[-1], fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in _SWAPPED:
            raise FileChangedError(
                exc.errno, "a link was swapped in after the file was collected", "/".join(parts)
            ) from None
        raise
    st = os.fstat(file_fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != tuple(identity):
        os.close(file_fd)
        raise FileChangedError(
            errno.ESTALE, "the file was replaced after it was collected", "/".join(parts)
        )
    os.set_blocking(file_fd, True)
    return file_fd


def _valid_name(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def scan(
    work: Path, *, max_entries: int, reasons: _Reasons | None = None
) -> tuple[list[_Found], os.stat_result | None]:
    """(regular files under ``work`` with their lstat, the stat of ``work`` itself),
    found by an iterative walk through directory fds that never follows a link,
    never crosses into another file system, looks at most ``max_entries`` entries
    and never deeper than MAX_DEPTH folders. What it does not look into is told to
    ``reasons`` (if given). Never raises: an unreadable ``work`` gives no files."""
    reasons = reasons if reasons is not None else _Reasons()
    try:
        root_fd = os.open(work, _DIR_FLAGS)
    except OSError as exc:
        reasons.stopped = f"the working folder could not be read ({exc.strerror})"
        return [], None
    found: list[_Found] = []
    root_st = os.fstat(root_fd)
    seen = 0
    # Depth-first, one open fd per level (at most MAX_DEPTH + 1 at a time); each
    # level keeps the names of the sub-folders still to visit.
    stack: list[tuple[int, str, list[str]]] = []
    fd, rel = root_fd, ""
    try:
        while True:
            subdirs: list[str] = []
            depth = rel.count("/") + 1 if rel else 0
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        seen += 1
                        if seen > max_entries:
                            break
                        _classify(entry, rel, depth, found, subdirs, reasons)
            except OSError as exc:
                reasons.add(rel or ".", f"the folder could not be read ({exc.strerror})")
            if seen > max_entries:
                reasons.stopped = (
                    f"... the workspace holds more than {max_entries} entries: the walk "
                    "stopped there, what it did not reach is not collected"
                )
                os.close(fd)
                break
            subdirs.sort(reverse=True)
            stack.append((fd, rel, subdirs))
            fd = None
            while stack and fd is None:
                parent_fd, parent_rel, pending = stack[-1]
                if not pending:
                    os.close(parent_fd)
                    stack.pop()
                    continue
                name = pending.pop()
                child_rel = f"{parent_rel}/{name}" if parent_rel else name
                fd = _enter(name, parent_fd, child_rel, root_st.st_dev, reasons)
                rel = child_rel
            if fd is None:
                break
    finally:
        for parent_fd, _rel, _pending in stack:
            os.close(parent_fd)
    return found, root_st


def _classify(entry, rel_dir, depth, found, subdirs, reasons) -> None:
    """Sort one directory entry: a regular file goes to ``found``, a folder to
    ``subdirs``, anything else to ``reasons``."""
    name = entry.name
    rel = f"{rel_dir}/{name}" if rel_dir else name
    if not _valid_name(name):
        reasons.add(rel, "the name is not valid UTF-8 (not collected)")
        return
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return  # it vanished: nothing to collect
    except OSError as exc:
        reasons.add(rel, f"could not be read ({exc.strerror})")
        return
    if stat.S_ISDIR(st.st_mode):
        if depth + 1 > MAX_DEPTH:
            reasons.add(rel, f"folder nested deeper than {MAX_DEPTH} levels (not collected)")
        else:
            subdirs.append(name)
    elif stat.S_ISLNK(st.st_mode):
        try:
            to_dir = entry.is_dir()  # a stat of the target, never opened nor read
        except OSError:
            to_dir = False
        reasons.add(
            rel, "symbolic link (not followed)" if to_dir else "symbolic link (not collected)"
        )
    elif stat.S_ISREG(st.st_mode):
        found.append(_Found(rel, st))
    else:
        reasons.add(rel, "not a regular file")


def _enter(name, parent_fd, rel, device, reasons) -> int | None:
    """An fd of the folder ``name`` in ``parent_fd``, or None (with a reason when
    it is not simply gone) when it changed into something else or is elsewhere."""
    try:
        fd = _open_dir(name, parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _SWAPPED:
            reasons.add(rel, "replaced by a link or a file during collection (not followed)")
        else:
            reasons.add(rel, f"the folder could not be read ({exc.strerror})")
        return None
    if os.fstat(fd).st_dev != device:
        os.close(fd)
        reasons.add(rel, "another file system is mounted there (not followed)")
        return None
    return fd


def collect_files(
    work: Path,
    baseline: dict[str, tuple[int, int]],
    *,
    max_files: int,
    max_file_bytes: int,
    max_total_file_bytes: int,
) -> tuple[list[CollectedFile], list[str]]:
    """(collected, skipped) for the files under ``work`` that are new or changed
    since ``baseline``. Symlinks (to files or directories) and special files are
    skipped and never followed; files over a limit are skipped with the reason
    (``"name: reason"``), in path order so the outcome is repeatable.

    Bounded and total whatever the workspace holds: at most max(10 x max_files, 1000)
    entries are looked at, no folder deeper than MAX_DEPTH, at most MAX_REASONS
    skipped lines plus ``"... and N more files not collected"`` and one line if the
    walk stopped early. Never raises: a file that vanishes or is replaced while it is
    being collected is skipped; non-UTF-8 names are skipped with a reason."""
    reasons = _Reasons()
    max_entries = max(ENTRIES_PER_FILE * max_files, MIN_ENTRIES)
    found, root_st = scan(work, max_entries=max_entries, reasons=reasons)
    collected: list[CollectedFile] = []
    total = 0
    for item in sorted(found, key=lambda f: f.rel):
        rel, st = item.rel, item.st
        if baseline.get(rel) == (st.st_size, st.st_mtime_ns):
            continue  # an input file or the script itself, unchanged
        if st.st_nlink > 1 and root_st is not None and st.st_uid != root_st.st_uid:
            reasons.add(rel, "a hard link to a file the run does not own (not collected)")
        elif st.st_size > max_file_bytes:
            reasons.add(rel, f"{st.st_size} bytes, over the {max_file_bytes}-byte limit")
        elif len(collected) >= max_files:
            reasons.add(rel, f"over the limit of {max_files} files")
        elif total + st.st_size > max_total_file_bytes:
            reasons.add(rel, f"over the total limit of {max_total_file_bytes} bytes")
        else:
            identity = (st.st_dev, st.st_ino)
            category = _categorise_in(work, rel, identity, reasons)
            if category is not None:
                total += st.st_size
                collected.append(
                    CollectedFile(rel, work / rel, st.st_size, category, work, identity)
                )
    return collected, reasons.result()


def _categorise_in(work: Path, rel: str, identity, reasons: _Reasons) -> str | None:
    """The category of the walked file ``rel`` (opened safely, its head read only when
    the extension does not tell), or None (with a reason) when it is gone or
    replaced since the walk."""
    try:
        fd = _open_in(work, rel.split("/"), identity)
    except FileNotFoundError:
        reasons.add(rel, "vanished during collection (not collected)")
        return None
    except OSError as exc:
        reasons.add(rel, f"changed during collection (not collected: {exc.strerror})")
        return None
    ext = Path(rel).suffix.lower().lstrip(".")
    try:
        head = b"" if ext in EXTENSIONS else os.pread(fd, 512, 0)
    except OSError:
        head = b""
    finally:
        os.close(fd)
    return _category_of(ext, head)


def listing(work: Path, *, max_entries: int = 100_000) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of the regular files under ``work``, by
    the same safe walk as ``collect_files`` (at most ``max_entries`` entries)."""
    found, _root = scan(work, max_entries=max_entries)
    return {f.rel: (f.st.st_size, f.st.st_mtime_ns) for f in found}

"""Collecting what a run left in its workspace: new or changed regular files at any
depth, never following symlinks, never leaving the workspace, within the file limits;
each with a type category."""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class CollectedFile:
    """A file the run produced, still in the workspace (it is removed afterwards)."""

    relative_path: str
    path: Path
    size: int
    category: str  # data|document|image|archive|code|log|other


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
    (``"name: reason"``), in path order so the outcome is repeatable."""
    collected: list[CollectedFile] = []
    skipped: list[str] = []
    total = 0
    root = os.path.realpath(work)
    candidates = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                skipped.append(f"{_rel(rel_dir, name)}: symbolic link (not followed)")
                dirnames.remove(name)
        for name in filenames:
            candidates.append(_rel(rel_dir, name))
    for rel in sorted(candidates):
        path = os.path.join(root, rel)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            skipped.append(f"{rel}: symbolic link (not collected)")
            continue
        if not stat.S_ISREG(st.st_mode):
            skipped.append(f"{rel}: not a regular file")
            continue
        if baseline.get(rel) == (st.st_size, st.st_mtime_ns):
            continue  # an input file or the script itself, unchanged
        if st.st_size > max_file_bytes:
            skipped.append(f"{rel}: {st.st_size} bytes, over the {max_file_bytes}-byte limit")
        elif len(collected) >= max_files:
            skipped.append(f"{rel}: over the limit of {max_files} files")
        elif total + st.st_size > max_total_file_bytes:
            skipped.append(f"{rel}: over the total limit of {max_total_file_bytes} bytes")
        else:
            total += st.st_size
            p = Path(path)
            collected.append(CollectedFile(rel, p, st.st_size, categorise(p)))
    return collected, skipped


def _rel(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"

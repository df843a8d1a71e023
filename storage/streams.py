"""Streaming helpers: a reader that counts, hashes and limits what passes through it,
content-type detection from a name and the first bytes, and byte-range readers."""

import hashlib
import io
import mimetypes
import re

from config.errors import ApplicationError

CHUNK_SIZE = 1024 * 1024
HEAD_SIZE = 8192

# Magic numbers -> content type. Checked in order; the first match wins.
_MAGIC = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (b"\x7fELF", "application/x-executable"),
]
# Formats that are zip (or gzip) containers: the name is more precise than the bytes.
_CONTAINER_FAMILIES = {
    "application/zip": (
        "application/vnd.openxmlformats",
        "application/vnd.oasis.opendocument",
        "application/java-archive",
        "application/epub+zip",
        "application/x-zip-compressed",
        "application/zip",
    ),
    "application/gzip": ("application/gzip", "application/x-gzip", "application/x-tar"),
}
_CONTENT_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def sniff_content_type(name: str, head: bytes) -> str:
    """The content type from the file name and its first bytes: the bytes win when they
    identify a format the name contradicts (a PNG called ``x.pdf`` is image/png), the name
    wins for containers it refines (``.docx`` over zip); text that is not recognised is
    ``text/plain``, anything else ``application/octet-stream``."""
    by_name, encoding = mimetypes.guess_type(name or "", strict=False)
    if encoding == "gzip":
        by_name = "application/gzip"
    by_bytes = next((ctype for magic, ctype in _MAGIC if head.startswith(magic)), None)
    if by_bytes:
        family = _CONTAINER_FAMILIES.get(by_bytes, ())
        if by_name and by_name.startswith(family):
            return by_name
        return by_bytes
    if by_name:
        return by_name
    if head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the head is still text.
            if exc.start < len(head) - 3:
                return "application/octet-stream"
        if b"\x00" not in head:
            return "text/plain"
    return "application/octet-stream"


def clean_content_type(value: str | None) -> str | None:
    """A caller-given content type, lower-cased, parameters dropped; None if malformed."""
    if not value:
        return None
    value = value.split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE_RE.fullmatch(value) else None


def too_large(max_bytes: int) -> ApplicationError:
    return ApplicationError(
        "FILE_TOO_LARGE",
        f"The file is larger than the limit of {max_bytes} bytes.",
        {"max_bytes": max_bytes},
        status=413,
    )


class CountingReader(io.RawIOBase):
    """Reads ``source`` (after an already-read ``head``) once, front to back, keeping
    the size and sha256 of what passed, and raising FILE_TOO_LARGE (413) as soon as
    more than ``max_bytes`` have been read: before the excess is handed on."""

    def __init__(self, source, *, head: bytes, max_bytes: int):
        super().__init__()
        self._source = source
        self._head = head
        self.max_bytes = max_bytes
        self.size = 0
        self._sha256 = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def _take(self, data: bytes) -> bytes:
        if self.size + len(data) > self.max_bytes:
            raise too_large(self.max_bytes)
        self.size += len(data)
        self._sha256.update(data)
        return data

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (a chunk when unbounded); short only at the end, since
        some readers (s3transfer) take a short read for the end of the stream."""
        if size is None or size < 0:
            size = CHUNK_SIZE
        parts, wanted = [], size
        if self._head:
            data, self._head = self._head[:wanted], self._head[wanted:]
            parts.append(self._take(data))
            wanted -= len(data)
        while wanted > 0:
            data = self._source.read(wanted)
            if not data:
                break
            parts.append(self._take(data))
            wanted -= len(data)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def chunks(self, chunk_size: int = CHUNK_SIZE):
        """What django's storages iterate over when they copy a file."""
        while data := self.read(chunk_size):
            yield data


class LimitedReader(io.RawIOBase):
    """At most ``length`` bytes of ``source`` (already positioned); closes it."""

    def __init__(self, source, length: int):
        super().__init__()
        self._source = source
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._source.read(size) or b""
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """One ``bytes=`` range against a file of ``size`` bytes -> ``(start, end)`` inclusive;
    None when there is no usable Range header (serve everything); False when it cannot be
    satisfied (416). Multiple ranges are answered with the whole file."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # bytes=-n: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return False
    return start, min(end, size - 1)

"""Storage keys: the only names the storage is ever given.

A key is ``segment/segment/.../name``: every segment is 1-100 characters of
``A-Z a-z 0-9 . _ -``, never starts with a dot (so no ``.``, ``..`` or hidden names),
at most 16 segments and STORAGE_KEY_MAX_LENGTH characters in all. Anything else
(absolute paths, backslashes, NUL and control characters, empty segments, ``..``,
over-long keys) is refused with INVALID_KEY, so no key can name anything outside the
storage root, on disk or in a bucket.
"""

import re
import secrets
import unicodedata

from django.conf import settings

from config.errors import ApplicationError

SEGMENT_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,99}")
MAX_SEGMENTS = 16
_EXT_RE = re.compile(r"[a-z0-9]{1,10}")
# Room left after the prefix for "/<32 hex>.<ext up to 10>".
_NAME_ROOM = 1 + 32 + 1 + 10


def _invalid(value, reason: str) -> ApplicationError:
    shown = value if isinstance(value, str) and len(value) <= 200 else None
    return ApplicationError(
        "INVALID_KEY",
        f"Invalid file key: {reason}.",
        {"key": [reason], "value": shown} if shown is not None else {"key": [reason]},
    )


def _reason(value: str, max_length: int) -> str | None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "control characters (NUL, newline...) are not allowed"
    if "\\" in value:
        return "backslashes are not allowed"
    if value.startswith("/"):
        return "absolute paths are not allowed"
    if len(value) > max_length:
        return f"longer than {max_length} characters"
    segments = value.split("/")
    if len(segments) > MAX_SEGMENTS:
        return f"more than {MAX_SEGMENTS} segments"
    for segment in segments:
        if segment == "":
            return "empty segments (//, leading or trailing /) are not allowed"
        if segment in (".", ".."):
            return "'.' and '..' segments are not allowed"
        if segment.startswith("."):
            return "segments may not start with a dot"
        if not SEGMENT_RE.fullmatch(segment):
            return "segments are 1-100 characters of letters, digits, '.', '_' and '-'"
    return None


def key_validate(key) -> str:
    """Return ``key`` (NFC-normalised) if it is a safe storage key; INVALID_KEY (400)
    otherwise. Never touches the storage."""
    if not isinstance(key, str) or not key:
        raise _invalid(key, "a key is required")
    key = unicodedata.normalize("NFC", key)
    reason = _reason(key, settings.STORAGE_KEY_MAX_LENGTH)
    if reason:
        raise _invalid(key, reason)
    return key


def prefix_validate(prefix) -> str:
    """Normalise a prefix (NFC, one trailing ``/`` dropped) and check it like a key,
    leaving room for the generated name. INVALID_KEY (400) when it is not safe."""
    if not isinstance(prefix, str) or not prefix:
        raise _invalid(prefix, "a prefix is required")
    prefix = unicodedata.normalize("NFC", prefix)
    if prefix.endswith("/") and not prefix.endswith("//"):
        prefix = prefix[:-1]
    reason = _reason(prefix, settings.STORAGE_KEY_MAX_LENGTH - _NAME_ROOM)
    if reason is None and prefix.count("/") + 2 > MAX_SEGMENTS:
        reason = f"more than {MAX_SEGMENTS - 1} segments"
    if reason:
        raise _invalid(prefix, reason)
    return prefix


def extension_of(original_name: str) -> str:
    """The lower-case extension of a client's file name if it is short and plain
    (``report.PDF`` -> ``pdf``, ``a.tar.gz`` -> ``gz``), else ``""``."""
    base = (original_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    if "." not in base.strip("."):
        return ""
    ext = base.rsplit(".", 1)[-1].lower()
    return ext if _EXT_RE.fullmatch(ext) else ""


def key_generate(*, prefix: str, original_name: str) -> str:
    """``<prefix>/<32 random hex>.<ext>``: the client's name never reaches the key."""
    ext = extension_of(original_name)
    name = secrets.token_hex(16) + (f".{ext}" if ext else "")
    return f"{prefix_validate(prefix)}/{name}"


def clean_original_name(original_name) -> str:
    """The client's file name as shown back to people: the last path part, control
    characters removed, at most 255 characters; ``file`` when nothing is left."""
    name = str(original_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 32 and ord(ch) != 127).strip()
    name = unicodedata.normalize("NFC", name)
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 254 - len(ext)] + dot + ext) if dot and len(ext) < 20 else name[:255]
    return name or "file"


# First segments that belong to the system: run files live under executions/<id>/.
RESERVED_UPLOAD_PREFIXES = ("executions", ".health")


def upload_prefix_validate(prefix) -> str:
    """``prefix_validate`` for prefixes a user uploads under: also refuses the
    reserved first segments (INVALID_KEY, 400), so user files never mix with run files."""
    prefix = prefix_validate(prefix)
    if prefix.split("/", 1)[0] in RESERVED_UPLOAD_PREFIXES:
        raise _invalid(prefix, "this prefix is reserved for files made by Scriptorium")
    return prefix

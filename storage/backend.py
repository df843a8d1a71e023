"""The few operations the storage app needs from Django's default storage, done in a
streaming way on both backends (FileSystemStorage and django-storages' S3Storage).

Only storage.services and storage.cleanup call these; the rest of the project goes
through storage.services.
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from django.core.files.storage import default_storage

from storage.streams import LimitedReader


class ObjectMissing(Exception):
    """The object named by a key does not exist in storage."""


def storage():
    """The one storage of the project (STORAGES["default"])."""
    return default_storage


def is_s3() -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # pragma: no cover - django-storages is a base requirement
        return False
    # LazyObject forwards __class__, so this looks at the configured storage.
    return isinstance(default_storage, S3Storage)


def _s3_object(key: str):
    from storages.utils import clean_name

    return default_storage.bucket.Object(default_storage._normalize_name(clean_name(key)))


def open_stream(key: str, *, start: int = 0, length: int | None = None):
    """A binary reader of the object's bytes from ``start`` (``length`` of them, or to
    the end). Reads as the caller reads: S3 answers a ranged GET whose body streams;
    the disk file is opened and seeked. ObjectMissing when there is no such object."""
    if is_s3():
        from botocore.exceptions import ClientError

        kwargs = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            kwargs["Range"] = f"bytes={start}-{end}"
        try:
            return _s3_object(key).get(**kwargs)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(key) from exc
            raise
    try:
        fh = default_storage.open(key, "rb")
    except FileNotFoundError as exc:
        raise ObjectMissing(key) from exc
    if start:
        fh.seek(start)
    return LimitedReader(fh, length) if length is not None else fh


def delete_object(key: str) -> None:
    """Delete the object (a missing object is not an error); other failures raise."""
    default_storage.delete(key)


def object_exists(key: str) -> bool:
    return default_storage.exists(key)


def iter_objects() -> Iterator[tuple[str, datetime]]:
    """Every object in the storage as ``(key, last_modified)`` (aware, UTC), listed page
    by page (S3) or walked (disk); keys use ``/`` on every platform."""
    if is_s3():
        location = default_storage.location.strip("/")
        prefix = f"{location}/" if location else ""
        for obj in default_storage.bucket.objects.filter(Prefix=prefix):
            yield obj.key[len(prefix) :], obj.last_modified
        return
    root = default_storage.location
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            full = os.path.join(dirpath, filename)
            try:
                mtime = os.stat(full).st_mtime
            except FileNotFoundError:  # deleted while we walked
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            yield rel, datetime.fromtimestamp(mtime, tz=UTC)

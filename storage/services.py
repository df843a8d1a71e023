"""Every write of the storage app: the one door to the project's file storage.

The rule: a StoredFile row exists only while its object exists. Storing writes the
object first and the row second (deleting the object if the row cannot be saved).
Deleting removes the row and records the key in PendingDeletion in one transaction;
after commit the object is deleted and the record dropped. If the object cannot be
deleted, the failure is logged and the record stays for ``storage_cleanup`` to retry,
so no row ever points at nothing. Deleting rows any other way (admin, queryset
``delete()``, a run being deleted) goes through the same path (storage.signals).
"""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from accounts.permissions import user_owns_or_is_staff
from config.errors import ApplicationError, NotFoundError, PermissionDeniedError
from storage import backend
from storage.keys import clean_original_name, key_generate
from storage.models import PendingDeletion, StoredFile
from storage.streams import HEAD_SIZE, CountingReader, clean_content_type, sniff_content_type

logger = logging.getLogger("scriptorium.storage")


def storage_used_by(*, owner) -> int:
    """Bytes of the files ``owner`` uploaded (run outputs are not counted)."""
    total = StoredFile.objects.filter(owner=owner, execution__isnull=True).aggregate(
        total=Sum("size")
    )["total"]
    return total or 0


def _limit_for(*, owner, execution, max_bytes: int | None) -> int:
    limit = settings.STORAGE_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    quota = settings.STORAGE_USER_QUOTA_BYTES
    if quota and owner is not None and execution is None:
        left = quota - storage_used_by(owner=owner)
        if left <= 0:
            raise ApplicationError(
                "QUOTA_EXCEEDED",
                "Your storage quota is used up; delete files to upload more.",
                {"quota_bytes": quota, "left_bytes": max(left, 0)},
                status=413,
            )
        if left < limit:
            return left
    return limit


def _read_head(fileobj) -> bytes:
    head = b""
    while len(head) < HEAD_SIZE:
        data = fileobj.read(HEAD_SIZE - len(head))
        if not data:
            break
        if isinstance(data, str):
            raise TypeError("file_store needs a binary file object")
        head += data
    return head


def file_store(
    *,
    fileobj,
    original_name: str,
    prefix: str,
    owner=None,
    execution=None,
    max_bytes: int | None = None,
    content_type: str | None = None,
) -> StoredFile:
    """Stream ``fileobj`` (binary, read once in chunks from its current position) into
    storage under ``<prefix>/<random>.<ext>`` and return the new StoredFile, with its
    size, sha256 and content type (``content_type`` if well-formed, else from the name
    and the first bytes) computed on the way.

    Refuses: a bad prefix (INVALID_KEY, 400, before anything is read); more than
    ``max_bytes`` (default STORAGE_MAX_UPLOAD_BYTES) with FILE_TOO_LARGE (413) as soon
    as the excess is read; an upload past the owner's quota (QUOTA_EXCEEDED, 413; only
    files without ``execution`` count). On any failure nothing is left behind: no
    object, no row. The caller keeps ownership of ``fileobj`` (it is not closed)."""
    key = key_generate(prefix=prefix, original_name=original_name)
    name = clean_original_name(original_name)
    limit = _limit_for(owner=owner, execution=execution, max_bytes=max_bytes)
    head = _read_head(fileobj)
    reader = CountingReader(fileobj, head=head, max_bytes=limit)
    reader.content_type = clean_content_type(content_type) or sniff_content_type(name, head)
    saved_key = None
    try:
        saved_key = backend.storage().save(key, reader)
        stored = StoredFile(
            key=saved_key,
            original_name=name,
            size=reader.size,
            content_type=reader.content_type,
            sha256=reader.sha256,
            owner=owner,
            execution=execution,
        )
        with transaction.atomic():
            stored.save()
    except BaseException:
        _discard(saved_key or key)
        raise
    logger.info(
        "file stored",
        extra={"key": stored.key, "size": stored.size, "execution_id": stored.execution_id},
    )
    return stored


def _discard(key: str) -> None:
    """Remove an object that never got its row; log (never raise) if that fails."""
    try:
        backend.delete_object(key)
    except Exception:
        logger.exception("could not remove a partly stored object", extra={"key": key})


def file_open(*, stored_file: StoredFile, start: int = 0, length: int | None = None):
    """A binary reader of the file's bytes (from ``start``, ``length`` of them or to the
    end), read sequentially as the caller reads; the caller closes it. FILE_MISSING (404)
    if the object has gone missing from storage (storage_cleanup will drop the row)."""
    try:
        return backend.open_stream(stored_file.key, start=start, length=length)
    except backend.ObjectMissing:
        logger.error("object missing for a stored file", extra={"key": stored_file.key})
        raise NotFoundError("The file's content is missing.", code="FILE_MISSING")


def file_delete(*, stored_file: StoredFile) -> None:
    """Delete the row and, once that is committed, the object. If the object cannot be
    deleted the failure is logged and its key stays in PendingDeletion for
    storage_cleanup to retry; the row is gone either way (never a row without object)."""
    with transaction.atomic():
        stored_file.delete()  # storage.signals records the PendingDeletion


def file_delete_for_user(*, user, stored_file: StoredFile) -> None:
    """Delete a file on behalf of ``user``: its owner or staff (403 otherwise)."""
    if not user_owns_or_is_staff(user, stored_file.owner_id):
        raise PermissionDeniedError("Only the file's owner or staff may delete it.")
    file_delete(stored_file=stored_file)


def files_delete_for_execution(*, execution_id: int) -> int:
    """Delete every file the run produced (rows now, objects on commit); returns how many."""
    with transaction.atomic():
        _total, per_model = StoredFile.objects.filter(execution_id=execution_id).delete()
    return per_model.get(StoredFile._meta.label, 0)


def pending_deletion_record(*, key: str) -> None:
    """Record that ``key``'s object must go, and try to delete it once the current
    transaction commits (rolled back with it). Called for every deleted StoredFile row."""
    PendingDeletion.objects.get_or_create(key=key)
    transaction.on_commit(lambda: pending_deletion_process(key=key), robust=True)


def pending_deletion_process(*, key: str) -> bool:
    """Try to delete ``key``'s object; drop its PendingDeletion on success. A failure is
    logged and counted on the record (storage_cleanup retries). Never deletes an object
    that has a row again. Returns whether the object is gone."""
    if StoredFile.objects.filter(key=key).exists():
        PendingDeletion.objects.filter(key=key).delete()
        return False
    try:
        backend.delete_object(key)
    except Exception as exc:
        logger.warning(
            "could not delete object; storage_cleanup will retry",
            extra={"key": key, "error": repr(exc)},
        )
        pending = PendingDeletion.objects.filter(key=key).first()
        if pending:
            pending.attempts += 1
            pending.last_error = repr(exc)[:500]
            pending.save(update_fields=["attempts", "last_error"])
        return False
    PendingDeletion.objects.filter(key=key).delete()
    return True

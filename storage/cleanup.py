"""storage_cleanup: make rows and objects agree again, and apply the retention age.

1. Pending deletions (rows already gone) are retried.
2. Rows whose object is missing are deleted (they would only answer FILE_MISSING).
3. Objects without a row are deleted once older than STORAGE_ORPHAN_GRACE_SECONDS
   (an upload writes its object a moment before its row).
4. Files older than the retention age (STORAGE_RETENTION_DAYS, 0 = keep) are deleted.

With ``dry_run`` nothing changes; the report says what would have been done.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from storage import backend, services
from storage.models import PendingDeletion, StoredFile

logger = logging.getLogger("scriptorium.storage")
BATCH = 500


@dataclass
class CleanupReport:
    dry_run: bool
    pending_retried: list[str] = field(default_factory=list)
    pending_failed: list[str] = field(default_factory=list)
    rows_without_object: list[str] = field(default_factory=list)
    objects_without_row: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "pending_retried": len(self.pending_retried),
            "pending_failed": len(self.pending_failed),
            "rows_without_object": len(self.rows_without_object),
            "objects_without_row": len(self.objects_without_row),
            "expired": len(self.expired),
        }


def _retry_pending(report: CleanupReport) -> None:
    for key in PendingDeletion.objects.values_list("key", flat=True).iterator():
        if report.dry_run:
            report.pending_retried.append(key)
        elif services.pending_deletion_process(key=key):
            report.pending_retried.append(key)
        else:
            report.pending_failed.append(key)


def _reconcile(report: CleanupReport, *, grace_seconds: int) -> None:
    # Rows made after the listing starts may have objects the listing missed.
    listed_at = timezone.now()
    orphan_before = listed_at - timedelta(seconds=grace_seconds)
    objects: dict[str, object] = dict(backend.iter_objects())
    pending = set(PendingDeletion.objects.values_list("key", flat=True))

    rows = StoredFile.objects.filter(created_at__lt=listed_at).values_list("key", flat=True)
    known: set[str] = set()
    for key in rows.iterator(chunk_size=2000):
        known.add(key)
        if key not in objects:
            report.rows_without_object.append(key)
    if report.rows_without_object and not report.dry_run:
        for start in range(0, len(report.rows_without_object), BATCH):
            keys = report.rows_without_object[start : start + BATCH]
            with transaction.atomic():
                StoredFile.objects.filter(key__in=keys).delete()
                # Their objects are already gone: nothing to retry later.
                PendingDeletion.objects.filter(key__in=keys).delete()
        logger.warning(
            "deleted rows whose object was missing",
            extra={"count": len(report.rows_without_object)},
        )

    candidates = [
        key
        for key, modified in objects.items()
        if key not in known and key not in pending and modified < orphan_before
    ]
    for start in range(0, len(candidates), BATCH):
        batch = candidates[start : start + BATCH]
        # Recheck against the table: a row may have appeared since the listing.
        taken = set(StoredFile.objects.filter(key__in=batch).values_list("key", flat=True))
        for key in batch:
            if key in taken:
                continue
            report.objects_without_row.append(key)
            if not report.dry_run:
                try:
                    backend.delete_object(key)
                except Exception:
                    logger.exception("could not delete an orphan object", extra={"key": key})


def _expire(report: CleanupReport, *, retention_days: int) -> None:
    if retention_days <= 0:
        return
    cutoff = timezone.now() - timedelta(days=retention_days)
    expired = StoredFile.objects.filter(created_at__lt=cutoff)
    keys = list(expired.values_list("key", flat=True))
    report.expired.extend(keys)
    if report.dry_run:
        return
    for start in range(0, len(keys), BATCH):
        with transaction.atomic():
            # Objects follow after commit (storage.signals -> PendingDeletion).
            StoredFile.objects.filter(key__in=keys[start : start + BATCH]).delete()


def storage_cleanup(
    *,
    dry_run: bool = False,
    retention_days: int | None = None,
    grace_seconds: int | None = None,
) -> CleanupReport:
    """Run the four steps above and return what was (or, dry, would be) done.
    ``retention_days`` / ``grace_seconds`` default to their settings."""
    report = CleanupReport(dry_run=dry_run)
    if retention_days is None:
        retention_days = settings.STORAGE_RETENTION_DAYS
    if grace_seconds is None:
        grace_seconds = settings.STORAGE_ORPHAN_GRACE_SECONDS
    _retry_pending(report)
    _reconcile(report, grace_seconds=grace_seconds)
    _expire(report, retention_days=retention_days)
    logger.info("storage cleanup", extra={"dry_run": dry_run, **report.summary()})
    return report

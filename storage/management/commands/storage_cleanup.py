"""manage.py storage_cleanup: retry pending deletions, drop rows without objects and
objects without rows, delete files past the retention age. --dry-run changes nothing."""

from django.core.management.base import BaseCommand, CommandError

from storage.cleanup import storage_cleanup


class Command(BaseCommand):
    help = (
        "Make storage rows and objects agree (orphans both ways, failed deletions) and "
        "delete files past the retention age."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be done; change nothing."
        )
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="Retention age in days (default STORAGE_RETENTION_DAYS; 0 keeps all).",
        )
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=None,
            help="Leave objects without a row alone this long (default "
            "STORAGE_ORPHAN_GRACE_SECONDS).",
        )
        parser.add_argument("--list", action="store_true", help="Also print every key.")

    def handle(self, *args, dry_run, older_than_days, grace_seconds, list, **options):
        for name, value in (
            ("--older-than-days", older_than_days),
            ("--grace-seconds", grace_seconds),
        ):
            if value is not None and value < 0:
                raise CommandError(f"{name} must be 0 or more.")
        report = storage_cleanup(
            dry_run=dry_run, retention_days=older_than_days, grace_seconds=grace_seconds
        )
        verb = "would be" if dry_run else "were"
        labels = {
            "pending_retried": f"pending deletions {verb} retried",
            "pending_failed": "pending deletions still failing",
            "rows_without_object": f"rows without an object {verb} deleted",
            "objects_without_row": f"objects without a row {verb} deleted",
            "expired": f"files past the retention age {verb} deleted",
        }
        for field, count in report.summary().items():
            self.stdout.write(f"{count} {labels[field]}")
            if list:
                for key in getattr(report, field):
                    self.stdout.write(f"  {key}")
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
        if report.pending_failed:
            raise CommandError(
                f"{len(report.pending_failed)} objects could not be deleted; see the log."
            )

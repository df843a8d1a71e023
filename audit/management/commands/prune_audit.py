"""manage.py prune_audit [--days N]: delete audit events past the retention."""

from django.conf import settings
from django.core.management.base import BaseCommand

from audit.services import audit_prune


class Command(BaseCommand):
    help = "Delete audit events older than AUDIT_RETENTION_DAYS (0 keeps everything)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Retention in days (default: AUDIT_RETENTION_DAYS, "
            f"now {settings.AUDIT_RETENTION_DAYS}; 0 keeps all).",
        )

    def handle(self, *args, days=None, **options):
        deleted = audit_prune(retention_days=days)
        self.stdout.write(f"{deleted} audit event(s) deleted.")

"""manage.py prune_runs: delete old finished runs with their logs and files."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.errors import ApplicationError
from executions import services


class Command(BaseCommand):
    help = "Delete finished runs older than --days (default RUN_RETENTION_DAYS) with their files."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="only count them")

    def handle(self, *args, days=None, dry_run=False, **options):
        days = settings.RUN_RETENTION_DAYS if days is None else days
        if days <= 0:
            raise CommandError("Give --days N (N > 0), or set RUN_RETENTION_DAYS.")
        try:
            count = services.executions_prune(older_than_days=days, dry_run=dry_run)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {count} run(s) finished more than {days} day(s) ago.")

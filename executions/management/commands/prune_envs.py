"""``manage.py prune_envs [--days N] [--dry-run]``: remove per-script environments
not used for N days (default 30) and half-finished builds, plus run workspaces left
behind by a crashed worker (untouched for a day)."""

from django.core.management.base import BaseCommand, CommandError

from executions.runner.environments import prune_environments
from executions.runner.workspace import prune_workspaces


class Command(BaseCommand):
    help = "Remove script environments unused for --days days (default 30)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=30.0)
        parser.add_argument("--dry-run", action="store_true", help="List, remove nothing.")

    def handle(self, *args, days, dry_run, **options):
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        removed = prune_environments(unused_days=days, dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        for name in removed:
            self.stdout.write(f"{verb} {name}")
        self.stdout.write(f"{verb} {len(removed)} environment(s).")
        if not dry_run:
            stale = prune_workspaces(older_than_hours=24)
            self.stdout.write(f"Removed {len(stale)} stale workspace(s).")

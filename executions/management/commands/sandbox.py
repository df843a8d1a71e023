"""``manage.py sandbox``: say plainly what protects script runs on this machine."""

from django.core.management.base import BaseCommand

from executions.health import sandbox_rows


class Command(BaseCommand):
    help = "Show the sandbox backend and what it protects (make run prints this)."

    def handle(self, *args, **options):
        rows = sandbox_rows()
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            line = f"  {name.ljust(width)}  {value}"
            is_bad = name == "Warning" or "only!" in value or "unavailable" in value
            self.stdout.write(self.style.WARNING(line) if is_bad else line)

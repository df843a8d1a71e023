"""``manage.py warm [--start | --stop [--now]]``: the warm templates of this instance
(environment, state, pid, age, runs served, memory...); ``--start`` starts the base
environment's and waits until it serves; ``--stop`` stops them all."""

from django.core.management.base import BaseCommand, CommandError

from executions.health import duration_text, memory_text, warm_problem, warm_templates
from executions.runner import templates, warm_up

COLUMNS = ["ENVIRONMENT", "STATE", "PID", "AGE", "RUNS", "RUNNING", "MEMORY", "IDLE", "PRELOADED"]


def plain(value) -> str:
    """A figure the sandboxed template reported, safe for a terminal (no control
    characters, so no escape sequences)."""
    text = "-" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


class Command(BaseCommand):
    help = (
        "List this instance's warm templates; --start warms the base environment, --stop ends them."
    )

    def add_arguments(self, parser):
        what = parser.add_mutually_exclusive_group()
        what.add_argument(
            "--start", action="store_true", help="Start the base environment's template and wait."
        )
        what.add_argument("--stop", action="store_true", help="Stop every warm template.")
        parser.add_argument(
            "--now",
            action="store_true",
            help="With --stop: kill them now (runs in flight die).",
        )
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="With --start: seconds to wait (30)."
        )

    def handle(self, *args, start, stop, now, timeout, **options):
        if now and not stop:
            raise CommandError("--now goes with --stop.")
        try:
            if stop:
                count = templates.stop_all(now=now)
                verb = "Killed" if now else "Stopped"
                self.stdout.write(f"{verb} {count} warm template(s).")
                return
            if start:
                self._start(timeout)
            self._list()
        except OSError as exc:
            raise CommandError(f"Cannot reach the warm templates: {exc}") from exc

    def _start(self, timeout: float) -> None:
        problem = warm_problem()
        if problem:
            raise CommandError(f"No warm runs here: {problem}.")
        if not warm_up([], timeout=timeout):
            raise CommandError(
                f"The base environment's template did not get ready in {timeout:g} s "
                "(manage.py warm shows its state and reason)."
            )
        self.stdout.write(self.style.SUCCESS("The base environment's warm template is ready."))

    def _list(self) -> None:
        problem = warm_problem()
        if problem:
            self.stdout.write(self.style.WARNING(f"No warm runs here: {problem}."))
        rows = warm_templates()
        if not rows:
            self.stdout.write("No warm template is running.")
            return
        table = [COLUMNS]
        for row in rows:
            table.append(
                [
                    plain(row["environment"]),
                    plain(row["state"]),
                    plain(row["pid"]),
                    duration_text(row["age_seconds"]),
                    plain(row["runs"]),
                    plain(row["running"]),
                    memory_text(row["memory_kb"]),
                    duration_text(row["idle_seconds"]),
                    str(len(row["preloaded"])),
                ]
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        for row in rows:
            if row["reason"]:
                self.stdout.write(
                    self.style.WARNING(f"{plain(row['environment'])}: {plain(row['reason'])}")
                )

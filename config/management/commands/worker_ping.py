"""manage.py worker_ping: enqueue a task and wait until a qcluster worker answers."""

import time

from django.core.management.base import BaseCommand, CommandError
from django_q.tasks import async_task, result


class Command(BaseCommand):
    help = "Check that a django-q2 worker (manage.py qcluster) runs tasks."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=30, help="seconds to wait")

    def handle(self, *args, **options):
        started = time.time()
        task_id = async_task("config.tasks.ping", started, save=True)
        answer = result(task_id, wait=int(options["timeout"] * 1000))
        if not answer:
            raise CommandError(
                f"No worker answered within {options['timeout']:g} s. "
                "Is `manage.py qcluster` running against the same database/broker?"
            )
        elapsed = (time.time() - started) * 1000
        self.stdout.write(
            self.style.SUCCESS(
                f"Worker pid {answer['pid']} ran task {task_id} in {elapsed:.0f} ms."
            )
        )

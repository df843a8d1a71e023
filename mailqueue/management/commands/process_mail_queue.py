"""manage.py process_mail_queue: run the processor by hand (ignores the window and
whether the service is started)."""

from django.core.management.base import BaseCommand, CommandError

from mailqueue.processor import process_batch


class Command(BaseCommand):
    help = "Send due e-mails from the queue now (one batch, or --until-empty)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None, help="rows per batch")
        parser.add_argument(
            "--until-empty", action="store_true", help="repeat batches until none is due"
        )
        parser.add_argument(
            "--wait", type=float, default=60, help="seconds to wait for the SQLite lock"
        )

    def handle(self, *args, **options):
        size = options["batch_size"]
        if size is not None and size < 1:
            raise CommandError("--batch-size must be at least 1.")
        totals = {"processed": 0, "sent": 0, "failed": 0, "retried": 0, "deferred": 0}
        while True:
            result = process_batch(batch_size=size, wait=options["wait"])
            if result.busy:
                raise CommandError("Another processor holds the queue lock; try again later.")
            for key in totals:
                totals[key] += getattr(result, key)
            from mailqueue.services import service_get

            limit = size or service_get().batch_size
            if not options["until_empty"] or result.processed < limit:
                break
        self.stdout.write(" ".join(f"{k}={v}" for k, v in totals.items()))

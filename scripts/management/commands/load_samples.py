"""``manage.py load_samples``: install the sample scripts in the "samples" folder."""

from django.core.management.base import BaseCommand, CommandError

from config.errors import ApplicationError
from scripts.samples import load_samples


class Command(BaseCommand):
    help = (
        "Install (or update) the sample scripts in the 'samples' folder, owned by the first "
        "superuser. Idempotent: unchanged samples add no version."
    )

    def add_arguments(self, parser):
        parser.add_argument("--owner", help="Username of the owner (default: first superuser)")

    def handle(self, *args, owner=None, **options):
        try:
            results = load_samples(owner_username=owner)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for path, what in results:
            self.stdout.write(f"{what:10s} {path}")
        added = sum(1 for _, what in results if what != "unchanged")
        self.stdout.write(self.style.SUCCESS(f"Samples ready ({added} added or updated)."))

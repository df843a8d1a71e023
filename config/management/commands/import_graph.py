"""``manage.py import_graph``: print who imports whom between the project's apps and
exit non-zero when an app imports upward or sideways (config/layers.py) or an app has
an import cycle between its own modules."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config import import_graph


class Command(BaseCommand):
    help = (
        "Print the app-level import graph (from the AST of every module, function-level "
        "imports included); fail on an upward import or an import cycle inside an app."
    )

    def handle(self, *args, **options):
        graph = import_graph.build(settings.BASE_DIR)
        self.stdout.write(import_graph.render(graph))
        if not graph.ok:
            raise CommandError(
                f"{len(graph.upward)} upward import(s), {len(graph.cycles)} cycle(s) inside apps."
            )
        self.stdout.write("OK")

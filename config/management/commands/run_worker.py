"""manage.py run_worker: `qcluster` that stops cleanly when its process group is signalled."""

import signal
import subprocess
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

MANAGE_PY = Path(__file__).resolve().parents[3] / "manage.py"


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (manage.py qcluster) in its own session and pass SIGTERM/"
        "SIGINT to its main process only. Process managers (honcho, a terminal's Ctrl-C) "
        "signal a whole process group; a cluster whose workers get the signal directly "
        "fights to restart them and is killed instead of stopping."
    )

    def handle(self, *args, **options):
        cluster = subprocess.Popen(
            [sys.executable, str(MANAGE_PY), "qcluster"], start_new_session=True
        )

        def forward(signum, frame):
            if cluster.poll() is None:
                cluster.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = cluster.wait()
        if code:
            sys.exit(code)

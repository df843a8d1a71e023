"""The heartbeat of the runs a process carries: one thread writes ``heartbeat_at`` on
all of their rows every HEARTBEAT_SECONDS (one UPDATE), whatever each run is doing at
the time: building its environment or waiting for another process's build of it,
running, storing its files. The reaper (services.executions_reap_lost) takes a run as
lost only when the process carrying it stopped beating, never because one of its
steps took long.

The thread runs while there are runs to beat and ends with the last one; it opens a
database connection for each beat and closes it after (a beat every few seconds needs
no pool, and no connection is left open in a thread nobody waits for)."""

import os
import threading
import time

from django.db import connections
from django.utils import timezone

from config.logging import get_logger

logger = get_logger("scriptorium.executions")

HEARTBEAT_SECONDS = 5


class _Heartbeat:
    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has no thread

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, int] = {}  # run id -> how many carry it here (1)
        self._thread: threading.Thread | None = None

    def start(self, execution_id: int) -> None:
        """Beat ``execution_id``'s row from now until ``stop``."""
        with self._lock:
            self._runs[execution_id] = self._runs.get(execution_id, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="run-heartbeat")
                self._thread.daemon = True
                self._thread.start()

    def stop(self, execution_id: int) -> None:
        """No more beats for ``execution_id`` (its outcome is being written)."""
        with self._lock:
            left = self._runs.get(execution_id, 0) - 1
            if left > 0:
                self._runs[execution_id] = left
            else:
                self._runs.pop(execution_id, None)

    def _serve(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                ids = sorted(self._runs)
                if not ids:
                    self._thread = None
                    return
            try:
                _beat(ids)
            except Exception:  # a database outage must not end the heartbeat
                logger.exception("runs' heartbeat not written", runs=len(ids))
            finally:
                connections.close_all()


def _beat(ids: list[int]) -> None:
    from executions.models import Execution

    Execution.objects.filter(pk__in=ids, status=Execution.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


_heartbeat = _Heartbeat()
start, stop = _heartbeat.start, _heartbeat.stop

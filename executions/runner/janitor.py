"""What a run leaves to do after its outcome is known: a warm run taken as ended at
its last record (execute.watch) still has a killed process finishing its exit, and
its groups and uid are released once that is over, in this process's janitor thread
rather than in the run's time. Jobs run in order, each QUIET_SECONDS after it was
given at the soonest; ``wait_idle`` waits for them (tests, and a process that ends:
at exit it waits a few seconds)."""

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

EXIT_WAIT_SECONDS = 5.0  # at interpreter exit, how long the janitor may finish its jobs
# A job starts no sooner than this after it was given (no later wait when it is older):
# the run that gave it writes its outcome and answers first. Both need this process's
# GIL, which the janitor's Python work between its system calls would hold (measured:
# a sync run answered 0.5-1 ms later with the janitor and the remover at work).
QUIET_SECONDS = 0.004


class _Janitor:
    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has no thread
        atexit.register(lambda: self.wait_idle(EXIT_WAIT_SECONDS))

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` in the janitor thread, after the jobs already given."""
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="run-janitor", daemon=True)
                self._thread.start()
        self._jobs.put((time.monotonic(), job))

    def _serve(self) -> None:
        while True:
            given, job = self._jobs.get()
            wait_quietly(given)
            try:
                job()
            except Exception:  # a failed release must not end the thread
                logger.exception("a run's leftovers could not be released")
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every job given so far is done; False when ``timeout`` passed."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


def wait_quietly(given: float, clock=time) -> None:
    """Sleep until QUIET_SECONDS after ``given`` (a ``clock.monotonic()`` reading):
    what a thread doing a run's leftovers calls before each job."""
    wait = given + QUIET_SECONDS - clock.monotonic()
    if wait > 0:
        clock.sleep(wait)


_janitor = _Janitor()
submit = _janitor.submit
wait_idle = _janitor.wait_idle

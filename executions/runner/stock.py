"""Run groups made ahead: a warm run's group (its cgroups, with the run's limits) is
made before the run, for a later one (warm.py: a spare's PID 2 sits in it while
idle), and making one takes from a fraction of a millisecond to milliseconds when
the host is busy. So this process keeps one made group per (template, limits), made
by the janitor thread after a run rather than in the next run's time. A group kept
here holds no process; it is removed at exit, and one removed meanwhile (its
template's groups pruned) is not handed out."""

import atexit
import os
import threading

from . import cgroups

MAX_KEPT = 8  # (template, limits) pairs with a group kept; the oldest goes first


class _Stock:
    def __init__(self):
        self._lock = threading.Lock()
        self._groups: dict[tuple, cgroups.RunCgroup] = {}
        self._closed = False
        os.register_at_fork(after_in_child=self._forget)  # the parent's, not the child's
        atexit.register(self.close)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._groups = {}
        self._closed = False

    def take(self, prefix: str, *, memory_bytes: int, max_processes: int):
        """The group kept for these limits (named ``prefix``...), or None."""
        with self._lock:
            group = self._groups.pop((prefix, memory_bytes, max_processes), None)
        if group is None:
            return None
        if all(path.is_dir() for path in group.dirs):
            return group
        group.remove()  # (what is left of it)
        return None

    def make(self, prefix: str, *, memory_bytes: int, max_processes: int) -> None:
        """Make and keep a group for these limits unless one is kept already."""
        key = (prefix, memory_bytes, max_processes)
        with self._lock:
            if key in self._groups:
                return
        group = cgroups.open_run(
            f"{prefix}{os.urandom(6).hex()}", memory_bytes=memory_bytes, max_processes=max_processes
        )
        if group is None:
            return
        extra = []
        with self._lock:
            if self._closed or key in self._groups:
                extra.append(group)
            else:
                self._groups[key] = group
                while len(self._groups) > MAX_KEPT:
                    extra.append(self._groups.pop(next(iter(self._groups))))
        for group in extra:
            group.remove()

    def close(self) -> None:
        """Remove every group kept, and keep none made from now on: the process is
        ending (at exit the janitor may still make one, which would be left behind)."""
        with self._lock:
            self._closed = True
        self.clear()

    def clear(self) -> None:
        """Remove every group kept."""
        with self._lock:
            groups, self._groups = list(self._groups.values()), {}
        for group in groups:
            group.remove()


_stock = _Stock()
take, make, clear = _stock.take, _stock.make, _stock.clear

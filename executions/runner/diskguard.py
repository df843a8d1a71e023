"""A run's share of the disk, enforced while it runs: its workspace may grow by its
file limits (RUN_MAX_TOTAL_FILE_BYTES, and a bounded number of entries), and no run
may take the disk below RUN_DISK_RESERVE_MB. Checked four times a second (fallocate,
which would outrun that, is refused by the sandbox's seccomp filter); a run over its
share is stopped (DISK_LIMIT) before it fills the host's disk."""

import os
import stat
import time

from django.conf import settings

CHECK_SECONDS = 0.25
SLACK_BYTES = 16 << 20  # directories, small writes between checks


class DiskGuard:
    """``tripped()`` is True (and ``reason`` says why) once the run is over its share."""

    def __init__(self, work, *, max_total_file_bytes: int, max_files: int, baseline_bytes: int):
        self.work = str(work)
        self.allowance = max_total_file_bytes + baseline_bytes + SLACK_BYTES
        self.max_entries = max(100 * max_files, 100_000)
        self.reserve = int(getattr(settings, "RUN_DISK_RESERVE_MB", 1024)) << 20
        self.reason = ""
        self._next = time.monotonic() + CHECK_SECONDS

    def tripped(self) -> bool:
        now = time.monotonic()
        if self.reason or now < self._next:
            return bool(self.reason)
        self._next = now + CHECK_SECONDS
        self.reason = self._check()
        return bool(self.reason)

    def _check(self) -> str:
        try:
            fs = os.statvfs(self.work)
        except OSError:
            return ""
        if fs.f_bavail * fs.f_frsize < self.reserve:
            return (
                "The server's disk is nearly full (under RUN_DISK_RESERVE_MB free); "
                "the run was stopped."
            )
        used, entries = usage(self.work, stop_bytes=self.allowance, stop_entries=self.max_entries)
        if entries > self.max_entries:
            return f"The run made more than {self.max_entries} files and folders; it was stopped."
        if used > self.allowance:
            return (
                f"The run wrote more than {self.allowance >> 20} MB to its folder "
                "(RUN_MAX_TOTAL_FILE_BYTES); it was stopped."
            )
        return ""


def usage(top: str, *, stop_bytes: int, stop_entries: int) -> tuple[int, int]:
    """(bytes allocated, entries) under ``top``, without following links; stops
    counting once either bound is passed. Never raises."""
    used = entries = 0
    pending = [top]
    while pending:
        path = pending.pop()
        try:
            with os.scandir(path) as listing:
                for entry in listing:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        pending.append(entry.path)
                    if used > stop_bytes or entries > stop_entries:
                        return used, entries
        except OSError:
            continue
    return used, entries

"""Progress reports from a running script: ``from scriptorium_progress import report``
then ``report(40, "Halfway")``. Outside Scriptorium it does nothing.

The report travels over a dedicated pipe (fd in SCRIPTORIUM_PROGRESS_FD), never over
stdout, as one line ``percent<TAB>message``. Percent is clamped to 0-100.
"""

import os

_fd = None


def report(percent, message=""):
    """Send ``percent`` (0-100) and a short ``message``; returns False when there is
    nowhere to send it (not running under Scriptorium) or the channel is closed."""
    global _fd
    if _fd is None:
        try:
            _fd = int(os.environ.get("SCRIPTORIUM_PROGRESS_FD", "-1"))
        except ValueError:
            _fd = -1
    if _fd < 0:
        return False
    percent = max(0, min(100, int(percent)))
    text = " ".join(str(message).split())[:500]
    try:
        os.write(_fd, f"{percent}\t{text}\n".encode("utf-8", "replace"))
    except OSError:
        _fd = -1
        return False
    return True

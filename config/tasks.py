"""Project-level django-q2 tasks."""

import os
import time


def ping(sent_at: float) -> dict:
    """Answer a worker_ping: which process ran it and how long after it was sent."""
    return {"pid": os.getpid(), "delay_ms": round((time.time() - sent_at) * 1000, 1)}

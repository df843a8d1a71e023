"""django-q2 entry points of the mail queue (thin: the rules are in schedule/processor)."""

from datetime import datetime

from mailqueue.processor import process_batch
from mailqueue.schedule import schedule_get, window_open
from mailqueue.services import service_get


def process_scheduled(now: datetime | None = None) -> dict:
    """The schedule's task: one batch when the service is started and its window is
    open (settings.TIME_ZONE); otherwise nothing. Returns what it did."""
    service = service_get()
    if not service.is_started or schedule_get() is None:
        return {"skipped": "stopped"}
    if not window_open(service=service, now=now):
        return {"skipped": "outside window"}
    return process_batch(now=now).as_dict()

"""Server-Sent Events for a run: log chunks, progress and status, resumable."""

import json
import time
from collections.abc import Iterator

from executions.models import Execution, ExecutionLogChunk

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15
MAX_STREAM_SECONDS = 6 * 3600


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def event_stream(*, execution_id: int, last_seq: int = 0) -> Iterator[str]:
    """Yield SSE frames: every log chunk after ``last_seq`` (``id`` = its number),
    ``progress`` when it changes, ``status`` when it changes; the stream ends after
    the final status and the last chunk."""
    yield "retry: 2000\n\n"
    seen_status = seen_progress = None
    started = last_sent = time.monotonic()
    while True:
        chunks = list(
            ExecutionLogChunk.objects.filter(execution_id=execution_id, seq__gt=last_seq)
            .order_by("seq")
            .values_list("seq", "text")[:200]
        )
        for seq, text in chunks:
            last_seq = seq
            yield _event("log", {"text": text}, event_id=seq)
        row = (
            Execution.objects.filter(pk=execution_id)
            .values(
                "status",
                "progress_percent",
                "progress_message",
                "error_code",
                "error_message",
                "exit_code",
            )
            .first()
        )
        if row is None:
            yield _event("status", {"status": "deleted"})
            return
        progress = (row["progress_percent"], row["progress_message"])
        if progress != seen_progress and progress != (None, ""):
            seen_progress = progress
            yield _event("progress", {"percent": progress[0], "message": progress[1]})
        if row["status"] != seen_status:
            seen_status = row["status"]
            yield _event(
                "status",
                {k: row[k] for k in ("status", "error_code", "error_message", "exit_code")},
            )
        if chunks:
            last_sent = time.monotonic()
        if row["status"] in Execution.FINISHED and not chunks:
            return
        now = time.monotonic()
        if now - started > MAX_STREAM_SECONDS:
            return
        if now - last_sent > KEEPALIVE_SECONDS:
            last_sent = now
            yield ": keep-alive\n\n"
        time.sleep(POLL_SECONDS)

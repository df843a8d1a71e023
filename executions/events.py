"""Server-Sent Events for a run: log chunks, progress and status, resumable."""

import json
import time
from collections.abc import Iterator

from django.db.models import Exists, OuterRef

from executions.models import Execution, ExecutionLogChunk

POLL_SECONDS = 0.025  # between polls while there is news (a log chunk, progress, status)
POLL_MAX_SECONDS = 0.25  # the slowest poll, reached after BACKOFF_AFTER_SECONDS of silence
BACKOFF_AFTER_SECONDS = 1.0
BACKOFF_FACTOR = 1.5
FIRST_LINE_POLL_SECONDS = 0.05  # the slowest poll until the stream has sent a log line
CHUNKS_PER_QUERY = 200
KEEPALIVE_SECONDS = 15
MAX_STREAM_SECONDS = 6 * 3600

STATUS_FIELDS = ("status", "error_code", "error_message", "exit_code")


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def _poll(execution_id: int, last_seq: int) -> dict | None:
    """The run's status and progress, and whether chunks after ``last_seq`` exist: one
    query by primary key with an EXISTS on the (execution, seq) unique index. One
    statement reads one snapshot, so a final status seen here comes with every chunk
    the worker wrote before it (it writes the last chunk, then the final status)."""
    newer = ExecutionLogChunk.objects.filter(execution_id=OuterRef("pk"), seq__gt=last_seq)
    return (
        Execution.objects.filter(pk=execution_id)
        .annotate(new_log=Exists(newer))
        .values(*STATUS_FIELDS, "progress_percent", "progress_message", "new_log")
        .order_by()  # not the model's ordering: one row by primary key
        .first()
    )


def _chunks(execution_id: int, last_seq: int) -> list[tuple[int, str]]:
    """The next chunks after ``last_seq`` (an index range scan on (execution, seq))."""
    return list(
        ExecutionLogChunk.objects.filter(execution_id=execution_id, seq__gt=last_seq)
        .order_by("seq")
        .values_list("seq", "text")[:CHUNKS_PER_QUERY]
    )


def event_stream(*, execution_id: int, last_seq: int = 0) -> Iterator[str]:
    """Yield SSE frames: every log chunk after ``last_seq`` (``id`` = its number),
    ``progress`` when it changes, ``status`` when it changes; the stream ends after
    the final status, which comes after the last chunk.

    Each poll reads the status first (with whether newer chunks exist), then the
    chunks; the stream ends only when a final status was read with no chunk after
    the last one sent, so a chunk written just before the final status is never lost.
    Polls are POLL_SECONDS apart while there is news, and back off (by
    BACKOFF_FACTOR, up to POLL_MAX_SECONDS) after BACKOFF_AFTER_SECONDS of silence;
    until a log line has been sent, never past FIRST_LINE_POLL_SECONDS, so that a
    run's first line reaches the client within about 0.1 s of being printed."""
    yield "retry: 2000\n\n"
    seen_status = seen_progress = None
    started = last_sent = last_news = time.monotonic()
    interval = POLL_SECONDS
    while True:
        row = _poll(execution_id, last_seq)
        if row is None:
            yield _event("status", {"status": "deleted"})
            return
        chunks = _chunks(execution_id, last_seq) if row["new_log"] else []
        for seq, text in chunks:
            last_seq = seq
            yield _event("log", {"text": text}, event_id=seq)
        news = bool(chunks)
        progress = (row["progress_percent"], row["progress_message"])
        if progress != seen_progress and progress != (None, ""):
            seen_progress, news = progress, True
            yield _event("progress", {"percent": progress[0], "message": progress[1]})
        final = row["status"] in Execution.FINISHED
        if row["status"] != seen_status and not (final and row["new_log"]):
            seen_status, news = row["status"], True
            yield _event("status", {k: row[k] for k in STATUS_FIELDS})
        if final and not row["new_log"]:
            return
        now = time.monotonic()
        if chunks:
            last_sent = now
        if now - started > MAX_STREAM_SECONDS:
            return
        if now - last_sent > KEEPALIVE_SECONDS:
            last_sent = now
            yield ": keep-alive\n\n"
        if final or len(chunks) == CHUNKS_PER_QUERY:
            continue  # more to send at once: the rest of the log, then the final status
        if news:
            last_news, interval = now, POLL_SECONDS
        elif now - last_news >= BACKOFF_AFTER_SECONDS:
            ceiling = POLL_MAX_SECONDS if last_seq else FIRST_LINE_POLL_SECONDS
            interval = min(interval * BACKOFF_FACTOR, ceiling)
        time.sleep(interval)

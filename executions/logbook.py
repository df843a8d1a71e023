"""The run's log: merged output written to ExecutionLogChunk rows in batches."""

import time

from executions.models import Execution, ExecutionLogChunk

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.25


class LogWriter:
    """Collects text from the runner and writes it as numbered chunks, at most every
    FLUSH_SECONDS or FLUSH_BYTES, so that followers see it live without one row per
    line. ``size`` counts the bytes written (UTF-8)."""

    def __init__(self, *, execution_id: int, first_seq: int = 1):
        self.execution_id = execution_id
        self.seq = first_seq - 1
        self.size = 0
        self.truncated = False
        self._parts: list[str] = []
        self._pending = 0
        self._last_flush = time.monotonic()

    def write(self, text: str) -> None:
        if not text:
            return
        text = text.replace("\x00", "\ufffd")
        self._parts.append(text)
        size = len(text.encode("utf-8", "replace"))
        self._pending += size
        self.size += size
        if self._pending >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush_if_due(self) -> None:
        """Flush what waits if it has waited FLUSH_SECONDS (called by a timer, so a
        quiet script's last line does not wait for its next one)."""
        if self._parts and time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self, *, record_size: bool = True) -> None:
        """Write what waits as the next chunk and (``record_size``) the run's
        ``log_size`` so far."""
        self._last_flush = time.monotonic()
        if not self._parts:
            return
        self.seq += 1
        ExecutionLogChunk.objects.create(
            execution_id=self.execution_id, seq=self.seq, text="".join(self._parts)
        )
        self._parts, self._pending = [], 0
        if record_size:
            Execution.objects.filter(pk=self.execution_id).update(log_size=self.size)

    def close(self) -> None:
        """Write the last chunk (one INSERT). The caller records ``size`` with the
        run's outcome: the worker's final UPDATE writes ``log_size``."""
        self.flush(record_size=False)


def log_text(*, execution_id: int, after_seq: int = 0) -> str:
    """The run's log (from chunk ``after_seq`` on) as one string."""
    chunks = ExecutionLogChunk.objects.filter(execution_id=execution_id, seq__gt=after_seq)
    return "".join(chunks.values_list("text", flat=True))


def log_tail(*, execution_id: int, chars: int) -> tuple[str, bool]:
    """The last ``chars`` characters of the run's log and whether earlier output was
    left out, reading chunks from the end only as far as needed."""
    parts, total, more = [], 0, False
    chunks = ExecutionLogChunk.objects.filter(execution_id=execution_id).order_by("-seq")
    for text in chunks.values_list("text", flat=True).iterator(chunk_size=20):
        if total >= chars:
            more = True
            break
        parts.append(text)
        total += len(text)
    text = "".join(reversed(parts))
    return text[-chars:], more or len(text) > chars

"""One harness process, watched: streams the merged output to ``on_log`` (capped),
reads the result and progress channels, enforces the wall clock and cancellation,
and reports how the process ended. Memory stays flat whatever the script prints."""

import codecs
import fcntl
import functools
import json
import os
import select
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

READ_SIZE = 1 << 20
POLL_SECONDS = 0.2  # should_cancel is asked about five times a second
DRAIN_SECONDS = 0.5  # after the process ends, how long its leftovers may hold the pipes
F_SETPIPE_SZ = 1031


@dataclass
class ProcessResult:
    returncode: int | None
    signal: int | None
    record: dict | None  # what the harness sent on the result channel
    record_error: str  # why the record is missing or unusable
    timed_out: bool
    cancelled: bool
    peak_memory_kb: int | None
    cpu_time_ms: int | None
    log_bytes: int
    log_truncated: bool
    # a warm run taken as ended at its harness's last record, its process killed but
    # its exit maybe not over (see _end_by_record): its groups are left to empty later
    ended_early: bool = False


class LogSink:
    """Decodes the byte stream into text for ``on_log``; past ``limit`` bytes it
    sends one marker line and drops the rest."""

    def __init__(self, on_log: Callable[[str], None], limit: int):
        self.on_log, self.limit = on_log, limit
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.kept = 0
        self.seen = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        if self.truncated:
            return
        room = self.limit - self.kept
        if len(data) > room:
            data, self.truncated = data[:room], True
        self.kept += len(data)
        text = self.decoder.decode(data, final=self.truncated)
        if self.truncated:
            text += (
                f"\n[scriptorium] Log truncated: the limit of {self.limit} bytes was reached; "
                "further output is dropped (the run goes on).\n"
            )
        if text:
            self.on_log(text)

    def close(self) -> None:
        if not self.truncated:
            tail = self.decoder.decode(b"", final=True)
            if tail:
                self.on_log(tail)


class _Progress:
    def __init__(self, on_progress):
        self.on_progress, self.buffer = on_progress, b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > 4096:
            self.buffer = b""
        for line in lines[-50:]:
            percent, _, message = line.decode("utf-8", "replace").partition("\t")
            try:
                value = max(0, min(100, int(percent)))
            except ValueError:
                continue
            if self.on_progress is not None:
                try:
                    self.on_progress(value, message[:500])
                except Exception:  # noqa: BLE001, S110 - a progress consumer never stops a run
                    pass


def watch(
    start: Callable[[int, int], "object"],
    *,
    kill_tree: Callable[[object], None],
    timeout: float,
    result_limit: int,
    log_limit: int,
    on_log: Callable[[str], None],
    on_progress,
    should_cancel,
) -> ProcessResult:
    """Start the process with ``start(result_fd, progress_fd)`` (the write ends it
    must pass on) and watch it to the end; ``kill_tree(proc)`` kills the run's whole
    tree (called when it ends, times out or is cancelled, before the leader is
    reaped). Never raises for what the script does."""
    result_r, result_w = os.pipe()
    progress_r, progress_w = os.pipe()
    try:
        proc = start(result_w, progress_w)
    finally:
        os.close(result_w)
        os.close(progress_w)
    if not hasattr(proc, "exit_fd"):  # a subprocess.Popen
        proc = ChildProcess(proc)
    started = time.monotonic()
    deadline = started + timeout
    out_fd = proc.stdout.fileno()
    try:
        fcntl.fcntl(out_fd, F_SETPIPE_SZ, READ_SIZE)
    except OSError:
        pass
    sink = LogSink(on_log, log_limit)
    progress = _Progress(on_progress)
    result = bytearray()
    result_overflow = False
    selector = selectors.DefaultSelector()
    for fd in (out_fd, result_r, progress_r):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    pidfd = proc.exit_fd()
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    open_fds = {out_fd, result_r, progress_r}
    status = None
    timed_out = cancelled = False
    next_cancel_check = started + POLL_SECONDS
    drain_until = None
    kill = functools.partial(kill_tree, proc)
    early = None  # (status, record) when the run ended at its last record
    parsed = None  # the record, once read (the result pipe closed)
    try:
        while open_fds and early is None:
            now = time.monotonic()
            if status is None and proc.exited():
                kill()  # leftovers die with the run (the group still exists: not reaped)
                status = proc.reap()
                drain_until = now + DRAIN_SECONDS
            if drain_until is not None and now >= drain_until:
                break
            if status is None and not (timed_out or cancelled):
                if now >= deadline:
                    timed_out = True
                    kill()
                elif should_cancel and now >= next_cancel_check:
                    next_cancel_check = now + POLL_SECONDS
                    if _safe_call(should_cancel):
                        cancelled = True
                        kill()
            wait = min(POLL_SECONDS, max(0.0, deadline - now))
            if drain_until is not None:
                wait = max(0.0, drain_until - now)
            for key, _ in selector.select(wait):
                fd = key.fd
                if fd == pidfd:
                    selector.unregister(pidfd)
                    if status is None:
                        kill()
                        status = proc.reap()
                        drain_until = time.monotonic() + DRAIN_SECONDS
                    continue
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    if fd == result_r and status is None and not result_overflow:
                        ended, parsed = _end_by_record(proc, result)
                        if ended is not None:
                            early, status = (ended, parsed), ended
                            _drain(open_fds, out_fd, sink.feed, progress_r, progress.feed)
                            break
                elif fd == out_fd:
                    sink.feed(data)
                elif fd == result_r:
                    if len(result) <= result_limit + 4096:
                        result += data
                    else:
                        result_overflow = True
                else:
                    progress.feed(data)
        if status is None:
            # Every pipe is closed: the process is exiting (or closed them itself).
            remaining = 5.0 if (timed_out or cancelled) else deadline - time.monotonic()
            if _wait_exited(proc, pidfd, max(0.0, remaining)) is None:
                timed_out = timed_out or not cancelled
            kill()
            _wait_exited(proc, pidfd, 5.0)
            status = proc.reap()
        sink.close()
    finally:
        selector.close()
        for fd in (result_r, progress_r, pidfd):
            if fd is not None:
                os.close(fd)
        proc.stdout.close()
        if proc.returncode is None:  # never leave a process or a zombie behind
            kill()
            _wait_exited(proc, None, 5.0)
            status = status or proc.reap()
    outcome = _finish(proc, status, result, result_overflow, timed_out, cancelled, sink, parsed)
    outcome.ended_early = early is not None
    return outcome


def _end_by_record(proc, result: bytearray):
    """(wait status, record) when the run is taken as ended now, at its last record;
    (None, record) when it waits for its exit as usual (a cold run, a record that names
    no status, a process or thread of the run still there). The record, parsed here,
    is not parsed again. The harness closes the result channel right after the record
    and exits with the status it names; the exit of a process forked from a large
    template (the teardown of its memory) takes milliseconds that are not the
    script's. The run ends here when its process (a warm run's, ``proc.end_now``)
    can make sure nothing of the run runs code any more; its CPU time and memory are
    then the kernel's count. A script that writes such a record itself and goes on
    only ends its own run early."""
    end_now = getattr(proc, "end_now", None)
    if end_now is None or not result:
        return None, None
    record, _error = _parse_record(bytes(result))
    code = record.get("exit") if record is not None else None
    if type(code) is not int or not 0 <= code <= 255:
        return None, record
    return end_now(code), record


def _drain(open_fds: set, *pipes) -> None:
    """Read what the pipes (fd, feed, fd, feed...) hold now, without waiting for more."""
    for fd, feed in zip(pipes[::2], pipes[1::2], strict=True):
        while fd in open_fds:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                open_fds.discard(fd)
                break
            feed(data)


def _finish(proc, status, result, overflow, timed_out, cancelled, sink, parsed) -> ProcessResult:
    wstatus, rusage = status if status else (None, None)
    code = sig = None
    if wstatus is not None:
        if os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
        else:
            code = os.WEXITSTATUS(wstatus)
    record, record_error = None, ""
    if overflow:
        record_error = "RESULT_TOO_LARGE"
    elif parsed:
        record = parsed  # read already (_end_by_record)
    elif result:
        record, record_error = _parse_record(bytes(result))
    peak = cpu = None
    if rusage is not None:
        peak = int(rusage.ru_maxrss) if rusage.ru_maxrss is not None else None
        cpu = int((rusage.ru_utime + rusage.ru_stime) * 1000)
    return ProcessResult(
        returncode=code,
        signal=sig,
        record=record,
        record_error=record_error,
        timed_out=timed_out,
        cancelled=cancelled,
        peak_memory_kb=peak,
        cpu_time_ms=cpu,
        log_bytes=sink.kept,
        log_truncated=sink.truncated,
    )


MAX_RECORD_DEPTH = 200  # nesting levels of the outcome record the server keeps and serves
_MAX_COUNTER = 2**31 - 1  # peak_kb / cpu_ms beyond this are not believed


class _BadNumber(ValueError):
    pass


def _parse_record(data: bytes) -> tuple[dict | None, str]:
    """(record, "") for a well-formed outcome record on the result channel, else
    (None, why) in words for people. Never raises, whatever the bytes: invalid
    UTF-8 or JSON, nesting deeper than MAX_RECORD_DEPTH (even far past Python's
    recursion limit), NaN, infinities, integers past Python's digit limit, anything
    that is not an object with ``ok``. Implausible ``peak_kb`` / ``cpu_ms`` values are
    dropped (the process's rusage is used instead)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the result channel held invalid UTF-8"
    try:
        record = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        return None, f"the result is nested more than {MAX_RECORD_DEPTH} levels deep"
    except _BadNumber as exc:
        return None, str(exc)
    except ValueError:
        return None, "the result channel held invalid JSON"
    except Exception:  # noqa: BLE001 - whatever the bytes, the run gets an outcome
        return None, "the result channel could not be read"
    if not isinstance(record, dict) or "ok" not in record:
        return None, "the result channel held no outcome record"
    if _deeper_than(record, MAX_RECORD_DEPTH):
        return None, f"the result is nested more than {MAX_RECORD_DEPTH} levels deep"
    for key in ("peak_kb", "cpu_ms"):
        value = record.get(key)
        if value is not None and not (isinstance(value, int) and 0 <= value <= _MAX_COUNTER):
            del record[key]
    return record, ""


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _BadNumber("the result holds an integer too large to keep") from None


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber("the result holds a number too large to keep")
    return value


def _parse_constant(text: str):
    raise _BadNumber(f"the result holds {text}, which JSON does not allow")


def _deeper_than(value, limit: int) -> bool:
    """Whether lists and objects nest in ``value`` more than ``limit`` levels deep
    (the value itself is level 1); iterative, so any depth is measured."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _pidfd(pid: int):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class ChildProcess:
    """A process this one started (``subprocess.Popen``), as ``watch`` sees a run's
    process: its output pipe, an fd readable once it ends, ``exited()`` without
    reaping, ``reap()`` -> (wait status, rusage). A warm run's process (started by its
    template, see ``templates.WarmProcess``) offers the same."""

    def __init__(self, popen):
        self.popen = popen
        self.pid = popen.pid
        self.stdout = popen.stdout

    @property
    def returncode(self):
        return self.popen.returncode

    def exit_fd(self):
        """A pidfd (the caller closes it), or None where the kernel has none."""
        return _pidfd(self.pid)

    def exited(self) -> bool:
        """True once the process has ended, without reaping it (its pid and process
        group stay valid, so killing the group cannot hit a reused pid)."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def reap(self):
        """(wait status, rusage) of the ended process (blocks if it has not ended)."""
        try:
            _pid, wstatus, rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            return (0, None)
        self.popen.returncode = os.waitstatus_to_exitcode(wstatus)
        return (wstatus, rusage)


def _wait_exited(proc, pidfd, seconds: float) -> bool | None:
    end = time.monotonic() + seconds
    while True:
        if proc.exited():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return None
        if pidfd is not None:
            select.select([pidfd], [], [], left)
        else:
            time.sleep(min(left, 0.005))


def _safe_call(fn) -> bool:
    try:
        return bool(fn())
    except Exception:  # noqa: BLE001 - a failing cancel check is not a cancel
        return False


SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}

"""Throughput of queued runs through django-q2, and live-log (SSE) latency.

Prints, in one run,
  1. the baseline: N bare `python -c pass` of the runner's base environment, one after
     another (total wall time),
  2. N light function scripts (`def main(data: dict): return {"ok": True}`) started at
     once through executions.services.execution_start (what POST /api/v1/executions/
     calls), drained by ONE real `manage.py qcluster` with ONE worker: time from the
     first submit to the last run finished (the database polled every 20 ms), per run,
     and the ratio to the baseline; once with the ORM broker (SQLite in the bench's
     DATA_DIR) and once with the Redis broker (its own database, flushed before and
     after; skipped when Redis does not answer). Target: <= 2x the baseline.
  3. SSE first-line latency: gunicorn with config/gunicorn.conf.py and
     config.settings.production, plus a qcluster; a command script sleeps 0.5 to 0.75 s
     (the client is surely following by then, at a random phase of the stream's
     database polling), prints `hello <time.time()>` and sleeps 1 s; a client follows
     GET /api/v1/executions/<id>/events/ (JWT) and takes the delay between the printed
     timestamp and the moment that log line reached it, split at the log chunk row's
     created_at (worker side / stream side). Target: median and max <= 100 ms.
The database is SQLite in the bench's DATA_DIR throughout (WAL, as config.settings
sets it up); Redis, when used, is the broker and the cache only.
A summary table says "met" or "MISSED" per target. The exit code is 0 either way (a
measurement, not a test); it is non-zero only when the bench itself could not run.

Each broker is measured in a child process of this script (`--drain`), because Django
fixes the broker when it starts. Everything lives in a temporary DATA_DIR that is
removed at the end; the servers and clusters started here are stopped in `finally`.

    .venv/bin/python bench/jobs.py [--jobs 40] [--sse-runs 10 (0: no SSE figure)]
                                   [--redis-url redis://127.0.0.1:6379/13]
                                   [--data-parent DIR (default: var/bench)]
"""

import argparse
import atexit
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIGHT_SCRIPT = b'def main(data: dict):\n    return {"ok": True}\n'
HELLO_SCRIPT = (
    b"import random\n"
    b"import time\n"
    b"\n"
    b"time.sleep(0.5 + random.random() / 4)\n"
    b'print("hello", repr(time.time()), flush=True)\n'
    b"time.sleep(1)\n"
)
POLL_SECONDS = 0.02
QUEUE_TARGET = 2.0  # x the baseline
SSE_TARGET_MS = 100.0


# --- processes -------------------------------------------------------------------------


def scratch_data_dir(prefix: str, parent: str | None = None) -> Path:
    """A temporary DATA_DIR (mode 0711, removed at exit) under ``parent``, by default
    beside the product's own default DATA_DIR (``var/`` in the checkout): runs create
    their workspaces, scripts and uid locks there, and the filesystem that holds them
    is part of what is measured. (On these machines /tmp's part of the disk took
    0.3 ms per mkdir and 0.6 ms per new file, 15 times the rest of the same disk.)"""
    where = Path(parent) if parent else ROOT / "var" / "bench"
    where.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    path.chmod(0o711)
    return path


def start(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """A server or cluster in its own process group, output to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the main process only (a qcluster whose workers are signalled directly
    fights to restart them), then SIGKILL to whatever is left of its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


def qcluster(env: dict, log_path: Path) -> subprocess.Popen:
    return start([sys.executable, "manage.py", "qcluster"], env, log_path)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_client(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        return None
    return client


# --- 1. baseline -----------------------------------------------------------------------


def measure_baseline(python: str, count: int) -> float:
    """Seconds for ``count`` bare interpreters of the runner's base environment in a row."""
    subprocess.run([python, "-c", "pass"], check=True)  # warm-up
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run([python, "-c", "pass"], check=True)
    return time.perf_counter() - started


# --- 2. queued runs through one cluster with one worker ---------------------------------


def wait_finished(ids: list[int], timeout: float) -> None:
    from executions.models import Execution

    deadline = time.monotonic() + timeout
    finished = Execution.objects.filter(pk__in=ids, status__in=Execution.FINISHED)
    while finished.count() < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs not finished after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def drain(jobs: int, log_path: Path) -> dict:
    """In a child process whose settings pick the broker: start a qcluster (1 worker),
    run one warm-up run, then submit ``jobs`` runs at once and wait for all of them."""
    import django

    django.setup()
    from django.conf import settings

    from accounts.models import User
    from executions import services
    from executions.models import Execution

    user = User.objects.get(username="bench")
    cluster = qcluster(dict(os.environ), log_path)
    try:
        warm = services.execution_start(user=user, script_ref="light.py", inputs={})
        wait_finished([warm.pk], timeout=120)
        started = time.perf_counter()
        ids = [
            services.execution_start(user=user, script_ref="light.py", inputs={}).pk
            for _ in range(jobs)
        ]
        submitted = time.perf_counter() - started
        wait_finished(ids, timeout=600)
        total = time.perf_counter() - started
    finally:
        stop(cluster)
    runs = Execution.objects.filter(pk__in=ids)
    in_worker = [(r.finished_at - r.started_at).total_seconds() for r in runs]
    return {
        "broker": "redis" if settings.Q_CLUSTER.get("redis") else "orm",
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "workers": settings.Q_CLUSTER["workers"],
        "total": total,
        "submit": submitted,
        "in_worker_mean": statistics.mean(in_worker),
        "outcomes": dict(
            Counter(r.status + (f" {r.error_code}" if r.error_code else "") for r in runs)
        ),
        "errors": sorted({r.error_message for r in runs if r.error_message})[:3],
    }


def measure_queue(jobs: int, env: dict, log_path: Path) -> dict:
    """Runs ``drain`` in a child process with ``env`` (its JSON answer on stdout); the
    child is asked to stop (SIGTERM: it stops its cluster) if this process is."""
    args = [sys.executable, str(Path(__file__).resolve()), "--drain", "--jobs", str(jobs)]
    child = subprocess.Popen(
        [*args, "--log", str(log_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=900)
    except BaseException:
        child.terminate()
        child.wait(timeout=30)
        raise
    if child.returncode != 0:
        raise RuntimeError(
            f"drain failed ({child.returncode}):\n{err[-3000:]}\ncluster log:\n{tail(log_path)}"
        )
    return json.loads(out.strip().splitlines()[-1])


# --- 3. SSE first-line latency ---------------------------------------------------------


def follow_first_line(port: int, token: str) -> tuple[int, float, float, float]:
    """Start the hello script over the API and follow its events to the end: (the run's
    id, the printed timestamp, when its log line arrived, when the stream's first frame
    did)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/api/v1/executions/", json.dumps({"script": "hello.py"}), headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 202, body
        conn.request("GET", f"/api/v1/executions/{body['id']}/events/", headers=headers)
        stream = conn.getresponse()
        assert stream.status == 200, stream.read()[:500]
        connected = printed = received = None
        event = log = ""
        frames = []
        while line := stream.readline():
            now = time.time()
            connected = connected or now
            line = line.decode().rstrip("\n")
            frames.append((now, line))
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "log" and printed is None:
                # A line may come in several chunks: it has arrived with its newline.
                log += json.loads(line.removeprefix("data: "))["text"]
                printed = hello_stamp(log)
                received = now
        if printed is None:
            raise RuntimeError(missing_line(body["id"], frames))
        return body["id"], printed, received, connected
    finally:
        conn.close()


def missing_line(execution_id: int, frames: list[tuple[float, str]]) -> str:
    """What the stream said and what the database holds, for a run whose hello line
    never reached the client."""
    from executions.models import Execution, ExecutionLogChunk

    run = Execution.objects.get(pk=execution_id)
    chunks = ExecutionLogChunk.objects.filter(execution_id=execution_id).order_by("seq")
    lines = [f"run {execution_id} ({run.status}) ended without its hello line reaching the client"]
    lines += [f"  stream {at:.3f}  {line}" for at, line in frames if line]
    lines += [
        f"  db chunk {c.seq} created {c.created_at.timestamp():.3f}  {c.text!r:.80}" for c in chunks
    ]
    lines.append(f"  db run started {run.started_at.timestamp():.3f}")
    lines.append(f"  db run finished {run.finished_at.timestamp():.3f}")
    return "\n".join(lines)


def hello_stamp(log: str) -> float | None:
    """The timestamp of the first complete `hello <time>` line of ``log``, if any."""
    for line in log.splitlines(keepends=True):
        if line.startswith("hello ") and line.endswith("\n"):
            return float(line.split()[1])
    return None


def line_written(execution_id: int) -> tuple[float, int]:
    """When the worker wrote the log chunk that completed the hello line (its
    created_at), and over how many chunks the line was split."""
    from executions.models import ExecutionLogChunk

    log, first = "", None
    for seq, text, created in ExecutionLogChunk.objects.filter(
        execution_id=execution_id
    ).values_list("seq", "text", "created_at"):
        log += text
        if first is None and "hello" in log:
            first = seq
        if hello_stamp(log) is not None:
            return created.timestamp(), seq - first + 1
    raise RuntimeError(f"run {execution_id}: no complete hello line in the database")


def measure_sse(runs: int, env: dict, token: str, logs: Path) -> dict:
    """gunicorn (config/gunicorn.conf.py, production settings) and a qcluster; one
    warm-up run, then ``runs`` measured ones, one after another."""
    port = free_port()
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    # No control socket: it would be shared (~/.gunicorn) with any other gunicorn here.
    gunicorn_args = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py"]
    gunicorn_args.append("--no-control-socket")
    server = start([*gunicorn_args, "config.wsgi:application"], env, logs / "gunicorn.log")
    cluster = qcluster(env, logs / "qcluster-sse.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{tail(logs / 'gunicorn.log')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not listen within 30 s") from None
                time.sleep(0.1)
        follow_first_line(port, token)  # warm-up
        latencies, to_row, late, split = [], [], 0, 0
        for _ in range(runs):
            execution_id, printed, received, connected = follow_first_line(port, token)
            if printed < connected:  # the client was not following yet: not a fair sample
                late += 1
                continue
            latencies.append((received - printed) * 1000)
            written, chunks = line_written(execution_id)
            to_row.append((written - printed) * 1000)
            split += chunks > 1
    finally:
        stop(cluster)
        stop(server)
    if not latencies:
        raise RuntimeError("no run printed its line while the client was following")
    return {
        "server": "gunicorn (config/gunicorn.conf.py: "
        f"{env.get('WEB_WORKERS', '2')} workers x {env.get('WEB_THREADS', '8')} threads, "
        "gthread), config.settings.production",
        "latencies": latencies,
        "to_row": to_row,
        "late": late,
        "split": split,
    }


def print_sse(sse: dict) -> tuple[float, float]:
    """Print the SSE figures; returns (median, max) of the first-line latency."""
    from executions import events, logbook

    latencies = sse["latencies"]
    sse_median, sse_max = statistics.median(latencies), max(latencies)
    print(f"3. SSE first-line latency, {len(latencies)} runs, server: {sse['server']}")
    print(f"   median {sse_median:.0f} ms, max {sse_max:.0f} ms, min {min(latencies):.0f} ms")
    worker = sse["to_row"]
    stream = [x - y for x, y in zip(latencies, worker, strict=True)]
    print(
        f"   of which: printed -> log chunk row written by the worker: median"
        f" {statistics.median(worker):.0f} ms, max {max(worker):.0f} ms;"
        f" row -> client: median {statistics.median(stream):.0f} ms, max {max(stream):.0f} ms"
    )
    print(
        f"   (the worker writes the log every {getattr(logbook, 'FLUSH_SECONDS', '?')} s at"
        f" most; the SSE view polls the database every {getattr(events, 'POLL_SECONDS', '?')}"
        " s: no push from worker to stream)"
    )
    if sse["split"]:
        print(
            f"   in {sse['split']} of {len(latencies)} runs the line reached the database in"
            " two or more chunks (print() writes its parts separately; the end of the line"
            " waited for the next log flush)"
        )
    if sse["late"]:
        print(f"   {sse['late']} runs left out: they printed before the client followed")
    return sse_median, sse_max


# --- orchestration ---------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--sse-runs", type=int, default=10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--data-parent", help="where the temporary DATA_DIR is made (default: var/bench)"
    )
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` runs
    if args.drain:
        print(json.dumps(drain(args.jobs, args.log)))
        return

    data_dir = scratch_data_dir("scriptorium-bench-jobs-", args.data_parent)
    (data_dir / "static").mkdir()  # whitenoise warns without it; nothing is collected
    logs = Path(tempfile.mkdtemp(prefix="scriptorium-bench-jobs-logs-"))
    unique = f"bench-jobs-{os.getpid()}"
    # Explicit values, so that a developer's .env (read for missing keys) changes nothing.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",  # as a production worker runs (DEBUG keeps a log of every query)
        DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite3'}",
        REDIS_URL="",
        SECRET_KEY=secrets.token_urlsafe(60),  # shared: tokens made here work on gunicorn
        LOG_LEVEL="WARNING",
        Q_CLUSTER_NAME=unique,
        Q_WORKERS="1",
        CACHE_KEY_PREFIX=unique,
        MAX_EXECUTIONS_PER_HOUR="0",
        MAX_CONCURRENT_EXECUTIONS="0",
        PYTHONUNBUFFERED="1",
    )

    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.services import user_create
    from executions import runner
    from executions.runner import sandbox
    from scripts.services import script_upload

    call_command("migrate", verbosity=0)
    user = user_create(username="bench", email="bench@example.com", password=None)
    script_upload(user=user, file_name="light.py", content=LIGHT_SCRIPT, folder=None)
    hello = script_upload(user=user, file_name="hello.py", content=HELLO_SCRIPT, folder=None)
    assert hello.kind == "command", hello.kind
    token = str(RefreshToken.for_user(user).access_token)
    python = str(runner.ensure_environment([]))

    failed = False
    try:
        baseline = measure_baseline(python, args.jobs)
        print(f"sandbox backend: {sandbox.backend_name()}   jobs: {args.jobs}")
        print(f"1. baseline: {args.jobs} x `python -c pass` in a row: {baseline * 1000:.0f} ms")

        queue = [measure_queue(args.jobs, dict(os.environ), logs / "qcluster-orm.log")]
        redis_note = ""
        client = redis_client(args.redis_url)
        if client is None:
            redis_note = f"Redis broker skipped: {args.redis_url} does not answer"
        else:
            client.flushdb()
            try:
                env = {**os.environ, "REDIS_URL": args.redis_url}
                queue.append(measure_queue(args.jobs, env, logs / "qcluster-redis.log"))
            finally:
                client.flushdb()
        workers = ", ".join(sorted({str(q["workers"]) for q in queue}))
        print(
            f"2. {args.jobs} light runs submitted at once, one qcluster with {workers} worker(s):"
        )
        for q in queue:
            print(
                f"   {q['broker']:5} broker ({q['database']}): total {q['total'] * 1000:.0f} ms"
                f" (submit {q['submit'] * 1000:.0f} ms), "
                f"{q['total'] / args.jobs * 1000:.1f} ms per run "
                f"(in the worker {q['in_worker_mean'] * 1000:.1f} ms), "
                f"{q['total'] / baseline:.2f}x baseline; runs: {q['outcomes']}"
            )
            for message in q["errors"]:
                print(f"      error: {message}")
        if redis_note:
            print(f"   {redis_note}")

        sse = None
        if args.sse_runs > 0:  # 0: the queue figures only
            sse = measure_sse(args.sse_runs, dict(os.environ), token, logs)
            sse_median, sse_max = print_sse(sse)

        rows = [
            (f"{args.jobs} runs, {q['broker']} broker, x baseline", q["total"] / baseline, "x")
            for q in queue
        ]
        if sse is not None:
            rows += [
                ("SSE first line, median", sse_median, " ms"),
                ("SSE first line, max", sse_max, " ms"),
            ]
        print()
        print(f"{'target':44} {'measured':>12} {'limit':>10}  verdict")
        for label, value, unit in rows:
            limit = QUEUE_TARGET if unit == "x" else SSE_TARGET_MS
            shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.0f}{unit}"
            limit_shown = f"{limit:.2f}{unit}" if unit == "x" else f"{limit:.0f}{unit}"
            print(f"{label:44} {shown:>12} {limit_shown:>10}  {verdict(value <= limit)}")
    except Exception:
        failed = True
        raise
    finally:
        # the warm templates the clusters and servers started outlive them (shared by an
        # instance's processes until idle): they go with the bench's DATA_DIR
        from executions.runner import templates

        templates.stop_all(now=True)
        if failed:
            print(f"logs kept in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()

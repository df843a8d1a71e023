"""Many workers on many machines: two real `manage.py qcluster` processes (separate
DATA_DIRs, as on two machines) share one PostgreSQL database and one Redis queue and
drain 200 queued runs, each delivered twice: every run starts once and has its result."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from executions import services as execution_services
from executions.models import Execution, ExecutionLogChunk
from tests.jobs.conftest import upload  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
RUNS = 200
DEADLINE_SECONDS = 50
TINY = """
def main(n: int) -> dict:
    print(f"run {n} started")
    return {"n": n, "square": n * n}
"""


def _env(data_dir: Path, queue: str) -> dict:
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        DATA_DIR=str(data_dir),
        Q_CLUSTER_NAME=queue,
        Q_WORKERS="2",
        LOG_FORMAT="console",
        LOG_LEVEL="INFO",
    )
    return env


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _logs(tmp_path: Path) -> str:
    """The end of each cluster's log, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(tmp_path.glob("*.log"))
    )


def _wait_until_running(tmp_path: Path, clusters, timeout: float = 20.0) -> None:
    """Until each cluster logged that it runs (tasks pushed before then were seen to
    wait in the queue while the clusters started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [log.read_text(errors="replace") for log in sorted(tmp_path.glob("*.log"))]
        if len(logs) == len(clusters) and all("] running." in log for log in logs):
            return
        assert all(c.poll() is None for c in clusters), _logs(tmp_path)
        time.sleep(0.1)
    raise AssertionError(f"the clusters did not start: {_logs(tmp_path)}")


def _stop_templates(env: dict) -> None:
    """End the warm templates a cluster started (they outlive it by design: the
    processes of one instance share them, until idle for RUN_WARM_IDLE_SECONDS)."""
    subprocess.run(
        [sys.executable, "manage.py", "warm", "--stop", "--now"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        timeout=60,
        check=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_clusters_drain_200_runs_exactly_once(tmp_path, user, upload, monkeypatch):  # noqa: F811
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.tasks import async_task

    script = upload(TINY, name="tiny.py")
    runs = [
        execution_services.execution_start(
            user=user, script_ref=script.pk, inputs={"n": n}, enqueue=False
        )
        for n in range(RUNS)
    ]
    queue = f"scriptorium-clusters-{os.getpid()}-{int(time.time())}"
    broker = get_broker(list_key=queue)
    monkeypatch.setattr(Conf, "PREFIX", queue)  # tasks are signed with the cluster's name
    envs = {name: _env(tmp_path / name, queue) for name in ("machine-a", "machine-b")}
    clusters = [
        subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{name}.log").open("w"),
            start_new_session=True,
        )
        for name, env in envs.items()
    ]
    started = time.monotonic()
    try:
        _wait_until_running(tmp_path, clusters)
        for delivery in range(2):  # every run is delivered twice: a duplicate claims nothing
            for run in runs:
                async_task(
                    "executions.tasks.run_execution",
                    run.pk,
                    task_name=f"execution-{run.pk}-{delivery}",
                    broker=broker,
                    sync=False,
                    save=False,
                )
        ids = [run.pk for run in runs]
        while time.monotonic() - started < DEADLINE_SECONDS:
            if not Execution.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
                break
            assert all(c.poll() is None for c in clusters), _logs(tmp_path)
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        workers = {pid: index for index, c in enumerate(clusters) for pid in _descendants(c.pid)}
    finally:
        for cluster in clusters:
            _stop(cluster)
        broker.delete_queue()
        for env in envs.values():
            _stop_templates(env)

    done = {e.pk: e for e in Execution.objects.filter(pk__in=ids)}
    unfinished = {
        e.pk: (e.status, e.error_code, e.error_message[:200])
        for e in done.values()
        if e.status != "succeeded"
    }
    assert not unfinished, (list(unfinished.items())[:5], _logs(tmp_path))
    for n, run in enumerate(runs):
        execution = done[run.pk]
        assert execution.result == {"n": n, "square": n * n}
        assert execution.started_at and execution.finished_at
    # each run started once: its own output appears exactly once in its log
    logs: dict[int, str] = {}
    for chunk in ExecutionLogChunk.objects.filter(execution_id__in=ids).order_by("seq"):
        logs[chunk.execution_id] = logs.get(chunk.execution_id, "") + chunk.text
    for n, run in enumerate(runs):
        assert logs[run.pk].count(f"run {n} started") == 1, logs[run.pk]
    # both machines did part of the work
    by_cluster = [0, 0]
    for execution in done.values():
        pid = int(execution.worker.rsplit(":", 1)[1])
        by_cluster[workers[pid]] += 1
    assert all(by_cluster), by_cluster
    print(f"{RUNS} runs by two clusters in {elapsed:.1f} s: {by_cluster}")

"""A real `manage.py qcluster` process runs a task enqueued by `manage.py worker_ping`."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_qcluster_worker_runs_a_task(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        Q_CLUSTER_NAME=f"scriptorium-worker-test-{os.getpid()}",
        Q_WORKERS="1",
        LOG_FORMAT="console",
    )
    manage = [sys.executable, "manage.py"]
    migrate = subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert migrate.returncode == 0, migrate.stderr
    # As the Procfile starts it, in a process group of its own (as honcho does).
    cluster = subprocess.Popen(
        [*manage, "run_worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ping = subprocess.run(
            [*manage, "worker_ping", "--timeout", "60"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ping.returncode == 0, ping.stderr
        assert "Worker pid" in ping.stdout and "ran task" in ping.stdout
        worker_pid = int(ping.stdout.split("Worker pid ")[1].split()[0])
        assert worker_pid not in (os.getpid(), cluster.pid)
        # Ctrl-C / honcho: the whole group gets SIGTERM; the cluster stops by itself.
        os.killpg(cluster.pid, signal.SIGTERM)
        assert cluster.wait(timeout=8) == 0
        assert not _alive(worker_pid), "a cluster worker outlived the stop"
    finally:
        # SIGTERM to the cluster's main process only: it stops its own workers.
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(cluster.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_worker_ping_without_worker_fails_clearly(db, monkeypatch):
    from django.core.management import CommandError, call_command

    # Test settings run tasks inline, so fake the one thing a missing worker causes:
    # no result ever arrives.
    monkeypatch.setattr("config.management.commands.worker_ping.result", lambda *a, **k: None)
    with pytest.raises(CommandError, match="No worker answered"):
        call_command("worker_ping", "--timeout", "0.1")

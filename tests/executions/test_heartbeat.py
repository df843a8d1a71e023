"""The heartbeat of the runs a process carries (executions.heartbeat): one thread, one
UPDATE for all of them, only rows still running, and the thread ends with the last run.
Real rows, a real thread."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from executions import heartbeat
from executions.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_the_runs_carried_here_are_beaten_until_they_stop(fast_heartbeat):
    long_ago = timezone.now() - timedelta(hours=1)
    running = baker.make(Execution, status="running", heartbeat_at=long_ago, _quantity=2)
    ended = baker.make(Execution, status="succeeded", heartbeat_at=long_ago)
    for run in [*running, ended]:
        heartbeat.start(run.pk)
    try:

        def beaten() -> bool:
            return all(Execution.objects.get(pk=run.pk).heartbeat_at > long_ago for run in running)

        assert _wait_for(beaten), "a running row was not beaten"
        assert Execution.objects.get(pk=ended.pk).heartbeat_at == long_ago  # ended: left be
    finally:
        for run in [*running, ended]:
            heartbeat.stop(run.pk)
    assert _wait_for(lambda: fast_heartbeat._thread is None), "the thread went on"
    stopped_at = Execution.objects.get(pk=running[0].pk).heartbeat_at
    time.sleep(0.3)
    assert Execution.objects.get(pk=running[0].pk).heartbeat_at == stopped_at


def test_a_run_carried_twice_here_is_beaten_until_both_stop(fast_heartbeat):
    long_ago = timezone.now() - timedelta(hours=1)
    run = baker.make(Execution, status="running", heartbeat_at=long_ago)
    heartbeat.start(run.pk)
    heartbeat.start(run.pk)
    heartbeat.stop(run.pk)
    try:
        assert _wait_for(lambda: Execution.objects.get(pk=run.pk).heartbeat_at > long_ago)
    finally:
        heartbeat.stop(run.pk)
    assert _wait_for(lambda: fast_heartbeat._thread is None)

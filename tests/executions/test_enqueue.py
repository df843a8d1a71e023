"""Queued runs go to django-q2's real broker (the ORM queue, or Redis with REDIS_URL):
one broker per process, not one per run (django-q2 makes a new one, with a new Redis
client, for every task unless it is given one)."""

import pytest
from django_q import brokers, tasks
from django_q.conf import Conf

from executions import services


@pytest.fixture
def real_queue(monkeypatch):
    """Tasks go to the broker instead of running inline (the test settings' sync mode);
    what the test enqueued is purged afterwards."""
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(services, "_brokers", {})
    yield
    services._broker().purge_queue()


@pytest.mark.django_db
def test_runs_are_enqueued_on_one_broker_per_process(
    user, upload, monkeypatch, real_queue, django_capture_on_commit_callbacks
):
    made = []
    get_broker = brokers.get_broker

    def counted(*args, **kwargs):
        made.append(1)
        return get_broker(*args, **kwargs)

    monkeypatch.setattr(brokers, "get_broker", counted)  # what services asks
    monkeypatch.setattr(tasks, "get_broker", counted)  # what async_task asks without one
    script = upload("def main(data: dict) -> dict:\n    return {}\n", name="light.py")
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            services.execution_start(user=user, script_ref=script.pk)
    assert len(made) == 1, "a broker was made per run"
    assert services._broker().queue_size() == 3  # all three wait on it for a worker

"""The sync API's run threads (executions.worker._RunThreads): a run takes an idle
thread, with the database connection it kept (CONN_MAX_AGE), instead of a new thread
and a new connection; a run past its wait never holds up the next one; an idle
thread ends and closes its connection. Real runs, real threads, real connections."""

import threading
import time

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from executions import worker
from executions.models import Execution

LIGHT = "def main(data: dict) -> dict:\n    return {'ok': True}\n"
SLOW = "import time\ndef main(data: dict) -> dict:\n    time.sleep(3)\n    return {}\n"


@pytest.fixture
def run_threads(monkeypatch):
    """A pool of this test's own whose threads end 0.5 s after their last run; the
    test waits for them to end (closing their connections) before it is torn down."""
    monkeypatch.setattr(worker, "_run_threads", worker._RunThreads())
    monkeypatch.setattr(worker, "RUN_THREAD_IDLE_SECONDS", 0.5)
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        # run-<id> or run-idle (not run-janitor, which lives as long as the process)
        if thread.name == "run-idle" or thread.name.removeprefix("run-").isdigit():
            thread.join(10)
            assert not thread.is_alive(), "an idle run thread did not end"


@pytest.fixture
def opened_in_run_threads():
    """The names of the run threads that opened a database connection, in order."""
    opened: list[str] = []

    def remember(sender, connection, **kwargs):
        name = threading.current_thread().name
        if name.startswith("run-"):
            opened.append(name)

    connection_created.connect(remember)
    yield opened
    connection_created.disconnect(remember)


@pytest.fixture
def carried_by(monkeypatch):
    """{run id: the thread that carried it}, as the runs go (the row's ``worker`` names
    the web thread that recorded a sync run, not the run thread)."""
    threads: dict[int, int] = {}
    carry = worker._carry

    def remembered(execution):
        threads[execution.pk] = threading.get_ident()
        return carry(execution)

    monkeypatch.setattr(worker, "_carry", remembered)
    return threads


def _run(api, path: str) -> Execution:
    response = api.post(f"/api/v1/run/{path}", {"data": {}}, format="json")
    assert response.status_code in (200, 202), response.content
    return Execution.objects.get(pk=response.json()["execution_id"])


@pytest.mark.django_db(transaction=True)
def test_runs_one_after_another_share_a_thread_and_its_connection(
    api, upload, monkeypatch, run_threads, opened_in_run_threads, carried_by
):
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)
    upload(LIGHT, name="light.py")
    runs = [_run(api, "light.py") for _ in range(3)]
    assert [run.status for run in runs] == ["succeeded"] * 3
    assert len({carried_by[run.pk] for run in runs}) == 1, "each run had a thread of its own"
    assert len(opened_in_run_threads) == 1, "a run opened a connection of its own"


@pytest.mark.django_db(transaction=True)
def test_without_persistent_connections_each_run_opens_and_closes_one(
    api, upload, monkeypatch, run_threads, opened_in_run_threads
):
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    upload(LIGHT, name="light.py")
    runs = [_run(api, "light.py") for _ in range(2)]
    assert [run.status for run in runs] == ["succeeded"] * 2
    assert len(opened_in_run_threads) == 2


@pytest.mark.django_db(transaction=True)
def test_a_run_past_its_wait_does_not_hold_up_the_next(
    api, upload, settings, run_threads, carried_by
):
    upload(SLOW, name="slow.py")
    upload(LIGHT, name="light.py")
    settings.SYNC_RUN_WAIT = 0.2
    slow = _run(api, "slow.py")
    assert slow.status == "running"
    settings.SYNC_RUN_WAIT = 30
    light = _run(api, "light.py")
    assert light.status == "succeeded"
    assert carried_by[light.pk] != carried_by[slow.pk], "the light run waited for the slow one"
    deadline = time.monotonic() + 20
    while not Execution.objects.get(pk=slow.pk).is_finished:
        assert time.monotonic() < deadline, "the slow run did not finish"
        time.sleep(0.1)
    assert Execution.objects.get(pk=slow.pk).status == "succeeded"

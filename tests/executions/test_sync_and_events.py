import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from executions import services
from executions.events import event_stream
from executions.models import Execution
from executions.runner import run as run_module
from tests.helpers import assert_error

SLOW = """
import time
def main(seconds: float = 3.0) -> dict:
    print("started", flush=True)
    time.sleep(seconds)
    return {"slept": seconds}
"""


@pytest.mark.django_db
def test_sync_run_returns_the_result(api, upload):
    upload("def main(a: int, b: int) -> dict:\n    return {'sum': a + b}\n", name="add.py")
    response = api.post("/api/v1/run/add.py", {"data": {"a": 2, "b": 3}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["result"] == {"sum": 5}
    assert body["execution_time"] > 0 and Execution.objects.get(pk=body["execution_id"])


@pytest.mark.django_db
def test_sync_run_path_without_py_suffix(api, upload):
    upload("def main(data: dict) -> dict:\n    return {'ok': 1}\n", name="ping.py")
    assert api.post("/api/v1/run/ping", {}, format="json").json()["result"] == {"ok": 1}


@pytest.mark.django_db
def test_sync_run_script_error_is_success_false_not_500(api, upload):
    upload("def main(data: dict):\n    return 1 / 0\n", name="div.py")
    response = api.post("/api/v1/run/div.py", {"data": {}}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False and body["status"] == "failed"
    assert "division by zero" in body["error"]["message"]


@pytest.mark.django_db
def test_sync_run_bad_input_is_400(api, upload):
    upload("def main(a: int) -> dict:\n    return {}\n", name="typed.py")
    response = api.post("/api/v1/run/typed.py", {"data": {"a": "x"}}, format="json")
    assert "a" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_sync_run_unknown_script_is_404(api):
    assert_error(api.post("/api/v1/run/missing/script.py", {}, format="json"), 404)


@pytest.mark.django_db(transaction=True)
def test_sync_run_answers_202_past_the_wait_and_run_goes_on(api, upload, settings):
    settings.SYNC_RUN_WAIT = 0.5
    upload(SLOW, name="slow.py")
    started = time.monotonic()
    response = api.post("/api/v1/run/slow.py", {"data": {"seconds": 2}}, format="json")
    assert time.monotonic() - started < 2
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is None and body["status"] == "running"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution = Execution.objects.get(pk=body["execution_id"])
        if execution.is_finished:
            break
        time.sleep(0.1)
    assert execution.status == "succeeded" and execution.result == {"slept": 2}


@pytest.mark.django_db(transaction=True)
def test_a_sync_run_is_recorded_running_by_its_process_and_never_enqueued(
    api, upload, settings, monkeypatch
):
    settings.SYNC_RUN_WAIT = 0.0
    enqueued = []
    monkeypatch.setattr(services, "_enqueue", enqueued.append)
    upload(SLOW, name="slow.py")
    response = api.post("/api/v1/run/slow.py", {"data": {"seconds": 1}}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "running"
    execution = Execution.objects.get(pk=response.json()["execution_id"])
    # running from its INSERT on (nothing can claim it twice, and a process that dies
    # with it leaves a row the reaper takes, not one queued for ever)
    assert execution.status == "running" and execution.source == "sync"
    assert execution.started_at and execution.heartbeat_at and execution.worker
    assert execution.queued_at == execution.started_at  # one moment: never started early
    deadline = time.monotonic() + 30
    while not execution.is_finished and time.monotonic() < deadline:
        time.sleep(0.1)
        execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.result == {"slept": 1}
    assert enqueued == []


@pytest.mark.django_db
def test_a_claimed_run_whose_process_died_is_reaped_as_lost(user, upload, settings):
    script = upload(SLOW, name="slow.py")
    execution = services.execution_start(user=user, script_ref=script.pk, claim=True)
    assert execution.status == "running" and execution.started_at
    assert services.executions_reap_lost() == 0  # beating less than a minute ago
    old = execution.heartbeat_at - timedelta(seconds=settings.RUN_HEARTBEAT_STALE_SECONDS + 1)
    Execution.objects.filter(pk=execution.pk).update(heartbeat_at=old)  # no run thread beat
    assert services.executions_reap_lost() == 1
    execution.refresh_from_db()
    assert execution.status == "lost" and execution.error_code == "LOST"


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_environment_takes_long_to_build_is_not_reaped(
    user, upload, settings, monkeypatch, fast_heartbeat
):
    # nothing of the run asks the database while its environment builds (or while it
    # waits for another process's build): the heartbeat goes on all the same
    settings.RUN_HEARTBEAT_STALE_SECONDS = 1
    build = run_module.ensure_environment

    def slow_build(*args, **kwargs):
        time.sleep(2.5)  # a long pip install
        return build(*args, **kwargs)

    monkeypatch.setattr(run_module, "ensure_environment", slow_build)
    script = upload("def main(data: dict) -> dict:\n    return {'ok': 1}\n", name="ok.py")
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)

    def carry():
        try:
            services.execution_run(execution_id=execution.pk)
        finally:
            connection.close()

    runner = threading.Thread(target=carry)
    runner.start()
    reaped = []
    for _ in range(4):  # 1.2 to 2.4 s into the build
        time.sleep(0.6)
        reaped.append(services.executions_reap_lost())
    runner.join(30)
    execution.refresh_from_db()
    assert reaped == [0, 0, 0, 0]
    assert execution.status == "succeeded" and execution.result == {"ok": 1}


@pytest.mark.django_db(transaction=True)
def test_cancel_running_run_kills_it(api, user, upload):
    script = upload(SLOW, name="slow.py")
    execution = services.execution_start(
        user=user, script_ref=script.pk, inputs={"seconds": 60}, enqueue=False
    )
    services.execution_run_and_wait(execution=execution, wait_seconds=0.0)
    deadline = time.monotonic() + 20
    while Execution.objects.get(pk=execution.pk).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.monotonic()
    assert api.post(f"/api/v1/executions/{execution.pk}/cancel/").status_code == 200
    while not Execution.objects.get(pk=execution.pk).is_finished:
        assert time.monotonic() - started < 10, "cancel did not stop the run"
        time.sleep(0.05)
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert time.monotonic() - started < 5


def _frames(response):
    text = b"".join(response.streaming_content).decode()
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            frames.append(fields)
    return frames


@pytest.mark.django_db
def test_events_stream_log_progress_and_final_status(api, upload, run_now):
    upload(
        "from scriptorium_progress import report\n"
        "def main(data: dict):\n    print('one', flush=True)\n    report(50, 'half')\n"
        "    print('two')\n"
        "    return {}\n",
        name="prog.py",
    )
    run_id = run_now(api.post, "/api/v1/executions/", {"script": "prog.py"}, format="json").json()[
        "id"
    ]
    response = api.get(f"/api/v1/executions/{run_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    frames = _frames(response)
    kinds = [f["event"] for f in frames]
    assert kinds[-1] == "status" and '"succeeded"' in frames[-1]["data"]
    log = "".join(f["data"] for f in frames if f["event"] == "log")
    assert "one" in log and "two" in log
    assert any(f["event"] == "progress" for f in frames)


@pytest.mark.django_db
def test_events_resume_after_last_event_id(user, upload):
    from executions.models import ExecutionLogChunk

    script = upload("def main(data: dict):\n    return {}\n")
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    for seq in (1, 2, 3):
        ExecutionLogChunk.objects.create(execution=execution, seq=seq, text=f"chunk{seq}\n")
    Execution.objects.filter(pk=execution.pk).update(status="succeeded")
    text = "".join(event_stream(execution_id=execution.pk, last_seq=2))
    assert "chunk3" in text and "chunk1" not in text and "chunk2" not in text
    assert "id: 3" in text


@pytest.mark.django_db(transaction=True)
def test_events_follow_a_live_run(user, upload):
    script = upload(
        "import time\ndef main(data: dict):\n"
        "    for i in range(3):\n        print(f'tick {i}', flush=True)\n        time.sleep(0.4)\n"
        "    return {}\n"
    )
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)

    def carry():
        try:
            services.execution_run(execution_id=execution.pk)
        finally:
            connection.close()  # the thread's own: PostgreSQL drops the test database after

    runner = threading.Thread(target=carry)
    runner.start()
    seen = []
    for frame in event_stream(execution_id=execution.pk):
        seen.append((time.monotonic(), frame))
    runner.join()
    ticks = [t for t, f in seen if "tick" in f]
    assert len(ticks) >= 2 and ticks[-1] - ticks[0] > 0.3, "log arrived all at once, not live"
    assert '"succeeded"' in seen[-1][1]


@pytest.mark.django_db
def test_events_with_a_garbage_last_event_id_start_from_the_beginning(api, upload, run_now):
    upload("def main(data: dict):\n    print('first line')\n    return {}\n", name="one.py")
    run_id = run_now(api.post, "/api/v1/executions/", {"script": "one.py"}, format="json").json()[
        "id"
    ]
    response = api.get(f"/api/v1/executions/{run_id}/events/", HTTP_LAST_EVENT_ID="abc")
    assert response.status_code == 200
    assert "first line" in "".join(f["data"] for f in _frames(response) if f["event"] == "log")

"""Pipelines: each step's result (a JSON object) is merged over the next step's input;
a failed step stops the pipeline (later steps skipped); cancel cancels the current step."""

import pytest

from executions import services as execution_services
from executions.models import Execution
from executions.signals import send_execution_finished
from executions.transitions import execution_transition
from jobs import services
from jobs.models import Pipeline, PipelineRun
from tests.helpers import assert_error
from tests.jobs.conftest import ADD_TEN, DOUBLE, FAILS, HELLO, TYPED_SUM

pytestmark = pytest.mark.django_db


def _pipeline(api, *paths, name="flow") -> int:
    response = api.post(
        "/api/v1/pipelines/",
        {"name": name, "steps": [{"script": p} for p in paths]},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_pipeline_passes_each_result_to_the_next_step(api, upload, run_now):
    upload(DOUBLE, name="double.py")
    upload(ADD_TEN, name="add_ten.py")
    upload(TYPED_SUM, name="sum.py")
    pipeline_id = _pipeline(api, "double.py", "add_ten.py", "sum.py")
    response = run_now(
        api.post,
        f"/api/v1/pipelines/{pipeline_id}/run/",
        {"data": {"x": 3, "note": "n"}},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = api.get(f"/api/v1/pipeline-runs/{response.json()['id']}/").json()
    assert body["status"] == "succeeded", body
    assert body["result"] == {"sum": 6 + 16}  # the last step's result
    assert [s["status"] for s in body["steps"]] == ["succeeded"] * 3
    runs = [Execution.objects.get(pk=s["execution"]) for s in body["steps"]]
    assert runs[0].inputs == {"x": 3, "note": "n"}
    # step 2 got step 1's input with its result merged over it
    assert runs[1].inputs == {"x": 6, "note": "n", "seen": ["note", "x"]}
    # a typed step takes only the keys it declares
    assert runs[2].inputs == {"x": 6, "y": 16}
    assert {r.source for r in runs} == {"pipeline"}


def test_a_failed_step_stops_the_pipeline_and_skips_the_rest(api, upload, run_now):
    upload(DOUBLE, name="double.py")
    upload(FAILS, name="fails.py")
    upload(ADD_TEN, name="add_ten.py")
    pipeline_id = _pipeline(api, "double.py", "fails.py", "add_ten.py")
    run_id = run_now(
        api.post, f"/api/v1/pipelines/{pipeline_id}/run/", {"data": {"x": 1}}, format="json"
    ).json()["id"]
    body = api.get(f"/api/v1/pipeline-runs/{run_id}/").json()
    assert body["status"] == "failed" and body["result"] is None
    assert [s["status"] for s in body["steps"]] == ["succeeded", "failed", "skipped"]
    assert body["steps"][2]["execution"] is None
    assert body["error"]["message"].startswith("Step 2 (fails.py) failed")
    assert Execution.objects.count() == 2


def test_a_step_that_cannot_start_fails_the_pipeline(api, upload, run_now):
    upload(HELLO, name="hello.py")
    upload(TYPED_SUM, name="sum.py")  # needs x and y, which hello does not give
    pipeline_id = _pipeline(api, "hello.py", "sum.py")
    run_id = run_now(api.post, f"/api/v1/pipelines/{pipeline_id}/run/", {}, format="json").json()[
        "id"
    ]
    body = api.get(f"/api/v1/pipeline-runs/{run_id}/").json()
    assert body["status"] == "failed"
    assert [s["status"] for s in body["steps"]] == ["succeeded", "failed"]
    assert body["steps"][1]["error_code"] == "VALIDATION_ERROR"


def test_cancel_stops_a_pipeline_at_a_queued_step(api, upload):
    upload(DOUBLE, name="double.py")
    upload(ADD_TEN, name="add_ten.py")
    pipeline_id = _pipeline(api, "double.py", "add_ten.py")
    # no on-commit run here: the first step's run stays queued
    run_id = api.post(
        f"/api/v1/pipelines/{pipeline_id}/run/", {"data": {"x": 1}}, format="json"
    ).json()["id"]
    body = api.post(f"/api/v1/pipeline-runs/{run_id}/cancel/").json()
    assert body["status"] == "cancelled"
    assert [s["status"] for s in body["steps"]] == ["cancelled", "skipped"]
    assert Execution.objects.get().status == "cancelled"
    # the worker that later receives the task finds nothing to do
    assert execution_services.execution_run(execution_id=body["steps"][0]["execution"]) is None
    again = api.post(f"/api/v1/pipeline-runs/{run_id}/cancel/")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_stops_a_pipeline_at_a_running_step(api, user, upload):
    upload(DOUBLE, name="double.py")
    upload(ADD_TEN, name="add_ten.py")
    pipeline_id = _pipeline(api, "double.py", "add_ten.py")
    run = services.pipeline_run_start(user=user, pipeline=Pipeline.objects.get(pk=pipeline_id))
    step_run = Execution.objects.get()
    execution_transition(
        runs=Execution.objects.filter(pk=step_run.pk), source="queued", target="running"
    )
    body = api.post(f"/api/v1/pipeline-runs/{run.pk}/cancel/").json()
    assert body["status"] == "cancelled"
    step_run.refresh_from_db()
    assert step_run.cancel_requested_at is not None  # the worker kills it
    # ... and it ends as the worker would end it: the next step never starts
    execution_transition(
        runs=Execution.objects.filter(pk=step_run.pk), source="running", target="cancelled"
    )
    step_run.refresh_from_db()
    send_execution_finished(step_run)
    body = api.get(f"/api/v1/pipeline-runs/{run.pk}/").json()
    assert [s["status"] for s in body["steps"]] == ["cancelled", "skipped"]
    assert Execution.objects.count() == 1


def test_a_finished_pipeline_run_cannot_be_cancelled(api, upload, run_now):
    upload(DOUBLE, name="double.py")
    pipeline_id = _pipeline(api, "double.py")
    run_id = run_now(api.post, f"/api/v1/pipelines/{pipeline_id}/run/", {}, format="json").json()[
        "id"
    ]
    assert_error(api.post(f"/api/v1/pipeline-runs/{run_id}/cancel/"), 409, "PIPELINE_RUN_FINISHED")


def test_advancing_twice_does_nothing_more(user, upload, run_now):
    upload(DOUBLE, name="double.py")
    upload(ADD_TEN, name="add_ten.py")
    pipeline = services.pipeline_create(
        user=user, name="p", steps=["double.py", {"script": "add_ten.py"}]
    )
    run = run_now(services.pipeline_run_start, user=user, pipeline=pipeline, data={"x": 2})
    first = run.steps.get(position=1).execution
    services.pipeline_run_advance(execution=first)  # a duplicate signal
    assert Execution.objects.count() == 2
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result == {"y": 14}


@pytest.mark.parametrize(
    "body, code, status",
    [
        ({"name": "x", "steps": []}, "VALIDATION_ERROR", 400),
        ({"name": "x", "steps": [{"script": "missing.py"}]}, "VALIDATION_ERROR", 400),
        ({"name": "", "steps": [{"script": "double.py"}]}, "VALIDATION_ERROR", 400),
        ({"name": "x", "steps": [{"script": "double.py", "extra": 1}]}, "VALIDATION_ERROR", 400),
    ],
)
def test_bad_pipelines_are_refused(api, upload, body, code, status):
    upload(DOUBLE, name="double.py")
    assert_error(api.post("/api/v1/pipelines/", body, format="json"), status, code)
    assert not Pipeline.objects.exists()


def test_a_pipeline_name_is_unique_per_owner(api, upload):
    upload(DOUBLE, name="double.py")
    _pipeline(api, "double.py", name="same")
    response = api.post(
        "/api/v1/pipelines/", {"name": "same", "steps": [{"script": "double.py"}]}, format="json"
    )
    assert_error(response, 409, "PIPELINE_EXISTS")


def test_others_pipelines_are_hidden(api, client_for, other_user, upload):
    upload(DOUBLE, name="double.py", owner=other_user)
    pipeline = services.pipeline_create(user=other_user, name="theirs", steps=["double.py"])
    assert_error(api.post(f"/api/v1/pipelines/{pipeline.pk}/run/", {}, format="json"), 404)
    assert api.get("/api/v1/pipelines/").json()["count"] == 0
    run = services.pipeline_run_start(user=other_user, pipeline=pipeline)
    assert_error(api.get(f"/api/v1/pipeline-runs/{run.pk}/"), 404)
    assert_error(api.post(f"/api/v1/pipeline-runs/{run.pk}/cancel/"), 404)


def test_deleting_a_pipeline_keeps_the_steps_runs(api, upload, run_now):
    upload(DOUBLE, name="double.py")
    pipeline_id = _pipeline(api, "double.py")
    run_now(api.post, f"/api/v1/pipelines/{pipeline_id}/run/", {}, format="json")
    assert api.delete(f"/api/v1/pipelines/{pipeline_id}/").status_code == 204
    assert not PipelineRun.objects.exists() and Execution.objects.count() == 1


def test_list_query_counts_are_constant(api, user, upload, run_now, django_assert_max_num_queries):
    upload(DOUBLE, name="double.py")
    upload(ADD_TEN, name="add_ten.py")
    pipeline = services.pipeline_create(user=user, name="p", steps=["double.py", "add_ten.py"])
    run_now(services.pipeline_run_start, user=user, pipeline=pipeline, data={"x": 1})
    with django_assert_max_num_queries(6) as few_runs:
        assert api.get("/api/v1/pipeline-runs/").json()["count"] == 1
    with django_assert_max_num_queries(5) as few_pipelines:
        assert api.get("/api/v1/pipelines/").json()["count"] == 1
    for index in range(5):
        other = services.pipeline_create(
            user=user, name=f"p{index}", steps=["double.py", "add_ten.py"]
        )
        run_now(services.pipeline_run_start, user=user, pipeline=other, data={"x": 1})
    with django_assert_max_num_queries(len(few_runs.captured_queries)):
        assert api.get("/api/v1/pipeline-runs/").json()["count"] == 6
    with django_assert_max_num_queries(len(few_pipelines.captured_queries)):
        assert api.get("/api/v1/pipelines/").json()["count"] == 6

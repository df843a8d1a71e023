import pytest
from django.core import mail

from executions import services
from executions.models import Execution
from tests.helpers import assert_error

TYPED = """
def main(name: str, count: int = 2) -> dict:
    print(f"hello {name}")
    return {"greeting": " ".join([f"hi {name}"] * count)}
"""

FILES = """
import json
def main(data: dict):
    open("report.csv", "w").write("a,b\\n1,2\\n")
    open("summary.json", "w").write(json.dumps(data))
    return {"ok": True}
"""


@pytest.mark.django_db
def test_start_run_by_path_queues_and_worker_finishes_it(api, upload, run_now):
    upload(TYPED, name="greet.py")
    response = run_now(
        api.post,
        "/api/v1/executions/",
        {"script": "greet.py", "data": {"name": "Ada"}},
        format="json",
    )
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    body = api.get(f"/api/v1/executions/{run_id}/").json()
    assert body["status"] == "succeeded", body
    assert body["result"] == {"greeting": "hi Ada hi Ada"}
    assert body["inputs"] == {"name": "Ada"} and body["version_number"] == 1
    assert body["started_at"] and body["finished_at"] and body["exit_code"] == 0
    log = api.get(f"/api/v1/executions/{run_id}/log/")
    assert log["Content-Type"].startswith("text/plain")
    assert "hello Ada" in log.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data,field",
    [({}, "name"), ({"name": 5}, "name"), ({"name": "x", "count": "many"}, "count")],
)
def test_bad_inputs_are_refused_before_any_run(api, upload, data, field):
    script = upload(TYPED)
    response = api.post("/api/v1/executions/", {"script": script.pk, "data": data}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_inputs_that_are_not_an_object_are_refused(api, upload):
    script = upload(TYPED)
    response = api.post("/api/v1/executions/", {"script": script.pk, "data": [1, 2]}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_unknown_script_is_404_and_makes_no_row(api):
    response = api.post("/api/v1/executions/", {"script": "nope/none.py"}, format="json")
    assert_error(response, 404)
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_bad_email_and_timeout_are_refused(api, upload):
    script = upload(TYPED)
    for extra, field in [({"email_to": ["not-mail"]}, "email_to"), ({"timeout": 0}, "timeout")]:
        response = api.post(
            "/api/v1/executions/",
            {"script": script.pk, "data": {"name": "a"}, **extra},
            format="json",
        )
        assert field in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_command_script_receives_args(api, upload, run_now):
    upload("import sys\nprint('ARGS=' + '|'.join(sys.argv[1:]))\n", name="cmd.py")
    response = run_now(
        api.post,
        "/api/v1/executions/",
        {"script": "cmd.py", "args": ["a b", "--x=1"]},
        format="json",
    )
    run_id = response.json()["id"]
    assert Execution.objects.get(pk=run_id).status == "succeeded"
    assert "ARGS=a b|--x=1" in api.get(f"/api/v1/executions/{run_id}/log/").content.decode()


@pytest.mark.django_db
def test_files_are_listed_with_categories_and_downloadable(api, upload, run_now):
    upload(FILES, name="files.py")
    run_id = run_now(
        api.post, "/api/v1/executions/", {"script": "files.py", "data": {"k": 1}}, format="json"
    ).json()["id"]
    files = {f["name"]: f for f in api.get(f"/api/v1/executions/{run_id}/files/").json()}
    assert set(files) == {"report.csv", "summary.json"}
    assert files["report.csv"]["category"] == "data"
    assert files["report.csv"]["key"].startswith(f"executions/{run_id}/")
    download = api.get(files["summary.json"]["url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b'{"k": 1}'


@pytest.mark.django_db
def test_script_error_fails_the_run_with_traceback_in_log(api, upload, run_now):
    upload("def main(data: dict):\n    raise ValueError('bad thing')\n", name="boom.py")
    run_id = run_now(api.post, "/api/v1/executions/", {"script": "boom.py"}, format="json").json()[
        "id"
    ]
    body = api.get(f"/api/v1/executions/{run_id}/").json()
    assert body["status"] == "failed"
    assert "bad thing" in body["error"]["message"]
    assert "Traceback" in api.get(f"/api/v1/executions/{run_id}/log/").content.decode()


@pytest.mark.django_db
def test_other_users_run_is_404_staff_sees_it(
    api, client_for, other_user, staff_api, upload, run_now
):
    upload(TYPED)
    run_id = run_now(
        api.post,
        "/api/v1/executions/",
        {"script": "job.py", "data": {"name": "a"}},
        format="json",
    ).json()["id"]
    assert_error(client_for(other_user).get(f"/api/v1/executions/{run_id}/"), 404, "NOT_FOUND")
    assert_error(client_for(other_user).post(f"/api/v1/executions/{run_id}/cancel/"), 404)
    assert staff_api.get(f"/api/v1/executions/{run_id}/").status_code == 200


@pytest.mark.django_db
def test_list_query_count_does_not_grow(api, user, upload, django_assert_max_num_queries):
    script = upload(TYPED)
    for _ in range(3):
        services.execution_start(
            user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
        )
    with django_assert_max_num_queries(6):
        first = api.get("/api/v1/executions/").json()
    for _ in range(20):
        services.execution_start(
            user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
        )
    with django_assert_max_num_queries(6):
        second = api.get("/api/v1/executions/?status=queued").json()
    assert first["count"] == 3 and second["count"] == 23


@pytest.mark.django_db
def test_cancel_queued_run(api, user, upload):
    script = upload(TYPED)
    execution = services.execution_start(
        user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
    )
    body = api.post(f"/api/v1/executions/{execution.pk}/cancel/").json()
    assert body["status"] == "cancelled"
    # the worker that later receives the task finds nothing to do
    assert services.execution_run(execution_id=execution.pk) is None


@pytest.mark.django_db
def test_cancel_finished_run_is_409(api, upload, run_now):
    upload(TYPED)
    run_id = run_now(
        api.post,
        "/api/v1/executions/",
        {"script": "job.py", "data": {"name": "a"}},
        format="json",
    ).json()["id"]
    assert_error(api.post(f"/api/v1/executions/{run_id}/cancel/"), 409, "EXECUTION_FINISHED")


@pytest.mark.django_db
def test_duplicate_delivery_runs_once(user, upload):
    script = upload(TYPED)
    execution = services.execution_start(
        user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
    )
    assert services.execution_run(execution_id=execution.pk).status == "succeeded"
    assert services.execution_run(execution_id=execution.pk) is None
    assert execution.log_chunks.count() >= 1


@pytest.mark.django_db
def test_rerun_uses_same_inputs_and_version(api, upload, run_now):
    script = upload(TYPED)
    first = run_now(
        api.post,
        "/api/v1/executions/",
        {"script": script.pk, "data": {"name": "Bo"}},
        format="json",
    ).json()["id"]
    response = run_now(api.post, f"/api/v1/executions/{first}/rerun/")
    assert response.status_code == 202
    again = Execution.objects.get(pk=response.json()["id"])
    assert again.rerun_of_id == first and again.inputs == {"name": "Bo"}
    assert again.status == "succeeded" and again.result == {"greeting": "hi Bo hi Bo"}


@pytest.mark.django_db
def test_reaper_marks_silent_runs_lost(user, upload):
    from datetime import timedelta

    from django.utils import timezone

    script = upload(TYPED)
    execution = services.execution_start(
        user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
    )
    Execution.objects.filter(pk=execution.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    fresh = services.execution_start(
        user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
    )
    Execution.objects.filter(pk=fresh.pk).update(status="running", heartbeat_at=timezone.now())
    assert services.executions_reap_lost() == 1
    assert Execution.objects.get(pk=execution.pk).status == "lost"
    assert Execution.objects.get(pk=fresh.pk).status == "running"
    # a zero staleness is zero (not the default): any run not beating this instant
    assert services.executions_reap_lost(stale_after=timedelta(0)) == 1
    assert Execution.objects.get(pk=fresh.pk).status == "lost"


@pytest.mark.django_db
def test_report_email_with_attachments(api, upload, run_now):
    upload(FILES, name="files.py")
    mail.outbox.clear()
    run_now(
        api.post,
        "/api/v1/executions/",
        {"script": "files.py", "data": {"x": 1}, "email_to": ["boss@example.com"]},
        format="json",
    )
    message = mail.outbox[-1]
    assert message.to == ["boss@example.com"] and "files.py" in message.subject
    assert {a[0] for a in message.attachments} == {"report.csv", "summary.json"}
    assert "Succeeded" in message.subject
    run_id = Execution.objects.get().pk
    html = message.alternatives[0][0] if message.alternatives else message.body
    assert f"/runs/{run_id}/" in html and "/admin/" not in html  # the portal: any user opens it


@pytest.mark.django_db
def test_unknown_fields_and_misplaced_args_are_refused(api, upload):
    upload(TYPED, name="greet.py")
    sync = api.post("/api/v1/run/greet.py", {"data": {"name": "a"}, "args": ["x"]}, format="json")
    assert "args" in assert_error(sync, 400, "VALIDATION_ERROR")["details"]
    queued = api.post(
        "/api/v1/executions/",
        {"script": "greet.py", "data": {"name": "a"}, "args": ["x"]},
        format="json",
    )
    assert "args" in assert_error(queued, 400, "VALIDATION_ERROR")["details"]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_inputs_over_the_limit_are_413_and_make_no_row(api, upload, settings):
    settings.RUN_INPUT_MAX_BYTES = 100
    upload(TYPED, name="greet.py")
    response = api.post(
        "/api/v1/executions/", {"script": "greet.py", "data": {"name": "a" * 500}}, format="json"
    )
    assert_error(response, 413, "INPUT_TOO_LARGE")
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_validation_messages_stay_short_for_huge_values(api, upload):
    upload(TYPED, name="greet.py")
    response = api.post(
        "/api/v1/executions/",
        {"script": "greet.py", "data": {"name": ["x"] * 20000}},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert len(str(error["details"])) < 1000


@pytest.mark.django_db
def test_input_file_reaches_the_script_and_a_deleted_one_fails_the_run(api, user, upload):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from storage.models import StoredFile

    upload("import sys\nprint(open(sys.argv[1]).read())\n", name="cat.py")
    key = api.post(
        "/api/v1/files/upload?prefix=inputs", {"file": SimpleUploadedFile("data.txt", b"hi!")}
    ).json()["key"]
    first = services.execution_start(
        user=user, script_ref="cat.py", args=["data.txt"], input_files=[key], enqueue=False
    )
    services.execution_run(execution_id=first.pk)
    first.refresh_from_db()
    assert first.status == "succeeded"
    assert "hi!" in api.get(f"/api/v1/executions/{first.pk}/log/").content.decode()

    second = services.execution_start(
        user=user, script_ref="cat.py", args=["data.txt"], input_files=[key], enqueue=False
    )
    StoredFile.objects.filter(key=key).delete()
    services.execution_run(execution_id=second.pk)
    second.refresh_from_db()
    assert second.status == "failed" and second.error_code != "INTERNAL_ERROR"
    assert "no longer exists" in second.error_message + "".join(
        second.log_chunks.values_list("text", flat=True)
    )


@pytest.mark.django_db
def test_log_tail_reads_only_the_end(user, upload, django_assert_max_num_queries):
    from executions.logbook import log_tail
    from executions.models import ExecutionLogChunk

    script = upload(TYPED)
    execution = services.execution_start(
        user=user, script_ref=script.pk, inputs={"name": "a"}, enqueue=False
    )
    ExecutionLogChunk.objects.bulk_create(
        ExecutionLogChunk(execution=execution, seq=i, text=f"{i:04d}\n") for i in range(1, 501)
    )
    text, cut = log_tail(execution_id=execution.pk, chars=10)
    assert text == "0499\n0500\n" and cut
    with django_assert_max_num_queries(1):
        log_tail(execution_id=execution.pk, chars=10)
    whole, cut = log_tail(execution_id=execution.pk, chars=10_000)
    assert whole.startswith("0001\n") and whole.endswith("0500\n") and not cut


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/etc/passwd", "uploads/\x00x", "nope/missing.txt"]
)
def test_bad_or_unknown_input_file_keys_are_refused(api, upload, key):
    upload("import sys\nprint(sys.argv)\n", name="cmd.py")
    response = api.post(
        "/api/v1/executions/",
        {"script": "cmd.py", "args": [], "input_files": [key]},
        format="json",
    )
    assert "input_files" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_events_of_a_missing_run_is_a_json_404(api):
    """Asked for an event stream, the error still comes as JSON, labelled so."""
    response = api.get("/api/v1/executions/999999/events/", HTTP_ACCEPT="text/event-stream")
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404, "NOT_FOUND")
    response = api.get("/api/v1/executions/999999/events/?format=sse")
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, accept",
    [
        ("/api/v1/executions/999999/log/", "text/plain"),
        ("/api/v1/executions/999999/files/out.png", "image/png"),
    ],
)
def test_errors_of_text_and_file_endpoints_are_json_whatever_was_asked(api, path, accept):
    """A client asking for the bytes gets the view's answer (here a 404), not a 406."""
    response = api.get(path, HTTP_ACCEPT=accept)
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_an_unknown_input_is_reported_under_its_key(api, upload):
    script = upload(TYPED)
    response = api.post(
        "/api/v1/executions/",
        {"script": script.pk, "data": {"name": "a", "colour": "red"}},
        format="json",
    )
    details = assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert details == {"colour": ["Unknown input for this script."]}
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_a_timeout_over_the_maximum_is_clamped_and_stored_clamped(api, upload, settings):
    settings.RUN_TIMEOUT_MAX_SECONDS = 3600
    script = upload(TYPED)
    response = api.post(
        "/api/v1/executions/",
        {"script": script.pk, "data": {"name": "a"}, "timeout": 999999},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert Execution.objects.get(pk=response.json()["id"]).options["timeout"] == 3600


@pytest.mark.django_db
@pytest.mark.parametrize("timeout", [0, -5])
def test_a_timeout_below_one_second_is_refused_by_the_service_rule(api, upload, timeout):
    script = upload(TYPED)
    for url, body in [
        ("/api/v1/executions/", {"script": script.pk, "data": {"name": "a"}}),
        (f"/api/v1/run/{script.logical_path}", {"data": {"name": "a"}}),
    ]:
        response = api.post(url, {**body, "timeout": timeout}, format="json")
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"] == {"timeout": ["Expected a positive number."]}


@pytest.mark.django_db
def test_too_many_recipients_or_input_files_are_refused_by_the_service_too(user, upload):
    """The API and every other caller meet the same limit, with the same answer."""
    from config.errors import ApplicationError

    script = upload(TYPED)
    too_many = [f"u{i}@example.com" for i in range(services.EMAIL_TO_MAX + 1)]
    with pytest.raises(ApplicationError) as refused:
        services.execution_start(
            user=user, script_ref=script.pk, inputs={"name": "a"}, email_to=too_many
        )
    assert refused.value.details == {"email_to": [f"At most {services.EMAIL_TO_MAX} addresses."]}
    keys = [f"uploads/k{i}.txt" for i in range(services.INPUT_FILES_MAX + 1)]
    with pytest.raises(ApplicationError) as refused:
        services.execution_start(
            user=user, script_ref=script.pk, inputs={"name": "a"}, input_files=keys
        )
    assert refused.value.details == {"input_files": [f"At most {services.INPUT_FILES_MAX} files."]}
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_the_api_gives_the_services_answer_for_those_limits(api, upload):
    script = upload(TYPED)
    too_many = [f"u{i}@example.com" for i in range(services.EMAIL_TO_MAX + 1)]
    response = api.post(
        "/api/v1/executions/",
        {"script": script.pk, "data": {"name": "a"}, "email_to": too_many},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"email_to": [f"At most {services.EMAIL_TO_MAX} addresses."]}
    keys = [f"uploads/k{i}.txt" for i in range(services.INPUT_FILES_MAX + 1)]
    response = api.post(
        "/api/v1/executions/",
        {"script": script.pk, "data": {"name": "a"}, "input_files": keys},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"input_files": [f"At most {services.INPUT_FILES_MAX} files."]}

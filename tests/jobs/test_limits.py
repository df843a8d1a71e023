"""Per-user limits, counted in the database: MAX_EXECUTIONS_PER_HOUR and
MAX_CONCURRENT_EXECUTIONS answer 429 RATE_LIMITED with Retry-After and create nothing;
superusers are exempt."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions import services as execution_services
from executions.models import Execution
from jobs import services
from jobs.models import PipelineRun
from tests.helpers import assert_error
from tests.jobs.conftest import HELLO

pytestmark = pytest.mark.django_db


def _start(api, script):
    return api.post("/api/v1/executions/", {"script": script.pk, "data": {}}, format="json")


def test_the_hourly_limit_answers_429_with_retry_after_and_creates_nothing(
    api, user, upload, settings
):
    settings.MAX_EXECUTIONS_PER_HOUR = 2
    script = upload(HELLO)
    first = _start(api, script)
    assert first.status_code == 202
    Execution.objects.filter(pk=first.json()["id"]).update(
        status="succeeded", queued_at=timezone.now() - timedelta(minutes=50)
    )
    assert _start(api, script).status_code == 202
    response = _start(api, script)
    error = assert_error(response, 429, "RATE_LIMITED")
    # the oldest run of the hour ages out in about 10 minutes
    assert 590 <= int(response["Retry-After"]) <= 602
    assert error["details"] == {"limit": 2, "retry_after": int(response["Retry-After"])}
    assert Execution.objects.count() == 2
    # the rerun and the sync run obey it too
    assert_error(api.post(f"/api/v1/executions/{first.json()['id']}/rerun/"), 429, "RATE_LIMITED")
    assert_error(api.post(f"/api/v1/run/{script.logical_path}", {}, format="json"), 429)
    assert Execution.objects.count() == 2
    # runs older than an hour no longer count
    Execution.objects.update(queued_at=timezone.now() - timedelta(minutes=61))
    assert _start(api, script).status_code == 202


def test_the_concurrent_limit_answers_429_with_retry_after_and_creates_nothing(
    api, user, upload, settings
):
    settings.MAX_CONCURRENT_EXECUTIONS = 2
    script = upload(HELLO)
    assert _start(api, script).status_code == 202
    assert _start(api, script).status_code == 202
    response = _start(api, script)
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) >= 1
    assert Execution.objects.count() == 2
    Execution.objects.filter(pk=Execution.objects.first().pk).update(status="running")
    assert _start(api, script).status_code == 429  # queued and running both count
    Execution.objects.filter(status="running").update(status="failed")
    assert _start(api, script).status_code == 202


def test_the_limits_hold_for_a_user_signed_in_by_session(client, user, upload, settings):
    # a session's user is a lazy object (the portal's run form, the admin, the API with
    # a session cookie): counted like a token's, not a 500
    settings.MAX_CONCURRENT_EXECUTIONS = 1
    script = upload(HELLO)
    client.force_login(user)
    first = client.post(
        "/api/v1/executions/", {"script": script.pk, "data": {}}, content_type="application/json"
    )
    assert first.status_code == 202, first.content
    second = client.post(
        "/api/v1/executions/", {"script": script.pk, "data": {}}, content_type="application/json"
    )
    assert_error(second, 429, "RATE_LIMITED")
    assert Execution.objects.count() == 1


def test_a_pipeline_run_over_the_limit_creates_nothing(api, user, upload, settings):
    settings.MAX_CONCURRENT_EXECUTIONS = 1
    script = upload(HELLO, name="hello.py")
    pipeline = services.pipeline_create(user=user, name="p", steps=["hello.py"])
    assert _start(api, script).status_code == 202
    response = api.post(f"/api/v1/pipelines/{pipeline.pk}/run/", {}, format="json")
    assert_error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"]
    assert not PipelineRun.objects.exists() and Execution.objects.count() == 1


def test_limits_are_per_user_and_superusers_are_exempt(
    api, client_for, other_user, superuser, upload, settings
):
    settings.MAX_EXECUTIONS_PER_HOUR = 1
    settings.MAX_CONCURRENT_EXECUTIONS = 1
    script = upload(HELLO)
    assert _start(api, script).status_code == 202
    assert _start(api, script).status_code == 429
    assert _start(client_for(other_user), script).status_code == 202
    root = client_for(superuser)
    for _ in range(3):
        assert _start(root, script).status_code == 202
    assert Execution.objects.count() == 5


def test_zero_means_unlimited(user, upload, settings):
    settings.MAX_EXECUTIONS_PER_HOUR = 0
    settings.MAX_CONCURRENT_EXECUTIONS = 0
    script = upload(HELLO)
    for _ in range(5):
        execution_services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    assert Execution.objects.count() == 5

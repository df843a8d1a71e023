"""The admin shows schedules (next firing, last run, skipped firings) and pipelines
(steps, runs), starts a pipeline, and writes through the services."""

import pytest
from django.test import Client
from django.utils import timezone

from jobs import services
from jobs.models import Pipeline, PipelineRun, Schedule
from tests.jobs.conftest import ADD_TEN, DOUBLE, HELLO

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def test_schedules_show_next_firing_last_run_and_skipped_firings(admin_client, superuser, upload):
    script = upload(HELLO, name="hello.py", owner=superuser)
    schedule = services.schedule_create(
        user=superuser, script_ref=script.pk, every_minutes=5, name="nightly"
    )
    now = timezone.now()
    started = services.schedule_fire(schedule_id=schedule.pk, due=now)
    services.schedule_fire(schedule_id=schedule.pk, due=now + timezone.timedelta(minutes=5))
    page = admin_client.get("/admin/jobs/schedule/").content.decode()
    assert "nightly" in page and "hello.py" in page and "every 5 min" in page
    assert f"/admin/executions/execution/{started.execution_id}/change/" in page  # last run
    assert "skipped" in page and ">1</a>" in page  # the skipped firing, linked
    schedule.refresh_from_db()
    next_run = timezone.localtime(schedule.q_schedule.next_run)
    assert str(next_run.year) in page
    detail = admin_client.get(f"/admin/jobs/schedule/{schedule.pk}/change/").content.decode()
    assert "Skipped: previous run still running" in detail and "Run started" in detail
    firings = admin_client.get(
        f"/admin/jobs/schedulefiring/?schedule__id__exact={schedule.pk}"
    ).content.decode()
    assert "Skipped: previous run still running" in firings


def test_adding_and_disabling_a_schedule_goes_through_the_services(admin_client, superuser, upload):
    script = upload(HELLO, name="hello.py", owner=superuser)
    response = admin_client.post(
        "/admin/jobs/schedule/add/",
        {
            "name": "from admin",
            "owner": superuser.pk,
            "script": script.pk,
            "cron": "0 4 * * *",
            "enabled": "on",
            "data": '{"name": "adm"}',
            "email_to": "a@example.com, b@example.com",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = Schedule.objects.get()
    assert schedule.q_schedule.cron == "0 4 * * *" and schedule.data == {"name": "adm"}
    assert schedule.email_to == ["a@example.com", "b@example.com"]
    bad = admin_client.post(
        "/admin/jobs/schedule/add/",
        {"owner": superuser.pk, "script": script.pk, "cron": "bad cron", "enabled": "on"},
    )
    assert bad.status_code == 200 and "Not a valid cron expression" in bad.content.decode()
    admin_client.post(
        "/admin/jobs/schedule/",
        {"action": "disable", "_selected_action": [schedule.pk]},
    )
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.q_schedule is None


def test_pipelines_show_steps_and_runs_and_the_admin_starts_one(
    admin_client, superuser, upload, run_now
):
    upload(DOUBLE, name="double.py", owner=superuser)
    upload(ADD_TEN, name="add_ten.py", owner=superuser)
    response = admin_client.post(
        "/admin/jobs/pipeline/add/",
        {"name": "import", "owner": superuser.pk, "steps_text": "double.py\nadd_ten.py"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    pipeline = Pipeline.objects.get()
    assert [s.script_path for s in pipeline.steps.all()] == ["double.py", "add_ten.py"]

    form = admin_client.get(f"/admin/jobs/pipeline/{pipeline.pk}/run/")
    assert form.status_code == 200 and "add_ten.py" in form.content.decode()
    response = run_now(
        admin_client.post, f"/admin/jobs/pipeline/{pipeline.pk}/run/", {"data": '{"x": 5}'}
    )
    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(
        f"/admin/jobs/pipelinerun/{run.pk}/change/"
    )
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result == {"y": 20} and run.source == "admin"

    page = admin_client.get(f"/admin/jobs/pipeline/{pipeline.pk}/change/").content.decode()
    assert "double.py" in page and "add_ten.py" in page  # steps
    assert f"/admin/jobs/pipelinerun/{run.pk}/change/" in page  # runs
    run_page = admin_client.get(f"/admin/jobs/pipelinerun/{run.pk}/change/").content.decode()
    assert "Succeeded" in run_page and "/admin/executions/execution/" in run_page
    assert admin_client.get("/admin/jobs/pipelinerun/").status_code == 200
    assert admin_client.get("/admin/jobs/reportcleanup/").status_code == 200

    bad = admin_client.post(f"/admin/jobs/pipeline/{pipeline.pk}/run/", {"data": "[1"})
    assert bad.status_code == 200 and "Not valid JSON" in bad.content.decode()

"""Schedules: built on django-q2's scheduler; each due time fires once and its outcome
is recorded (started / skipped: still running / skipped: over the limit / failed)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule as QSchedule
from django_q.scheduler import scheduler

from executions.models import Execution
from jobs import services
from jobs.models import Schedule, ScheduleFiring
from tests.helpers import assert_error
from tests.jobs.conftest import DOUBLE, HELLO

pytestmark = pytest.mark.django_db


def _make_due(schedule: Schedule) -> None:
    QSchedule.objects.filter(pk=schedule.q_schedule_id).update(
        next_run=timezone.now() - timedelta(seconds=5)
    )


def test_a_schedule_fires_through_django_q2_and_records_its_run(api, user, upload, run_now):
    upload(HELLO, name="hello.py")
    response = api.post(
        "/api/v1/schedules/",
        {"script": "hello.py", "data": {"name": "cron"}, "every_minutes": 5, "name": "greet"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["next_run_at"] and body["enabled"] and body["owner"] == user.username
    schedule = Schedule.objects.get(pk=body["id"])
    q = schedule.q_schedule
    assert q.func == "jobs.tasks.fire_schedule" and q.minutes == 5 and q.repeats == -1
    assert q.next_run > timezone.now() + timedelta(minutes=4)

    _make_due(schedule)
    run_now(scheduler)  # one pass of django-q2's scheduler; the tasks run inline here

    firing = ScheduleFiring.objects.get(schedule=schedule)
    assert firing.outcome == "started" and firing.execution is not None
    run = firing.execution
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result == {"greeting": "hi cron"}
    assert run.source == "schedule" and run.schedule_id == schedule.pk
    assert run.requested_by == user  # the owner's permissions
    q.refresh_from_db()
    assert q.next_run > timezone.now()  # the next firing moved on
    detail = api.get(f"/api/v1/schedules/{schedule.pk}/").json()
    assert detail["last_outcome"] == "started" and detail["last_execution"] == run.pk
    assert [f["outcome"] for f in detail["recent_firings"]] == ["started"]
    listed = api.get(f"/api/v1/executions/?source=schedule&schedule={schedule.pk}").json()
    assert [r["id"] for r in listed["results"]] == [run.pk]
    assert listed["results"][0]["schedule"] == schedule.pk
    assert api.get("/api/v1/executions/?source=api").json()["count"] == 0


def test_a_due_time_fires_once_however_many_clusters_fire_it(user, upload):
    script = upload(HELLO)
    schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=1)
    due = timezone.now().replace(microsecond=0)
    first = services.schedule_fire(schedule_id=schedule.pk, due=due)
    # a second cluster's task for the same due time (or an earlier one) claims nothing
    assert services.schedule_fire(schedule_id=schedule.pk, due=due) is None
    assert services.schedule_fire(schedule_id=schedule.pk, due=due - timedelta(minutes=1)) is None
    assert first.outcome == "started"
    assert ScheduleFiring.objects.filter(schedule=schedule).count() == 1
    assert Execution.objects.filter(schedule_id=schedule.pk).count() == 1


def test_an_overlapping_firing_is_skipped_and_recorded(api, user, upload):
    script = upload(HELLO)
    schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=1)
    now = timezone.now()
    first = services.schedule_fire(schedule_id=schedule.pk, due=now)  # queued, not run
    second = services.schedule_fire(schedule_id=schedule.pk, due=now + timedelta(minutes=1))
    assert first.outcome == "started"
    assert second.outcome == "skipped_running" and second.execution is None
    assert "still running" in second.message
    assert Execution.objects.filter(schedule_id=schedule.pk).count() == 1
    Execution.objects.filter(pk=first.execution_id).update(status="running")
    third = services.schedule_fire(schedule_id=schedule.pk, due=now + timedelta(minutes=2))
    assert third.outcome == "skipped_running"
    Execution.objects.filter(pk=first.execution_id).update(status="succeeded")
    fourth = services.schedule_fire(schedule_id=schedule.pk, due=now + timedelta(minutes=3))
    assert fourth.outcome == "started"
    body = api.get(f"/api/v1/schedules/{schedule.pk}/").json()
    assert body["skipped_firings"] == 2
    outcomes = [
        f["outcome"] for f in api.get(f"/api/v1/schedules/{schedule.pk}/firings/").json()["results"]
    ]
    assert outcomes == ["started", "skipped_running", "skipped_running", "started"]


def test_a_disabled_schedule_does_not_fire(api, user, upload, run_now):
    upload(HELLO, name="hello.py")
    created = api.post(
        "/api/v1/schedules/", {"script": "hello.py", "cron": "*/5 * * * *"}, format="json"
    ).json()
    schedule = Schedule.objects.get(pk=created["id"])
    _make_due(schedule)
    response = api.patch(f"/api/v1/schedules/{schedule.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["next_run_at"] is None
    assert not QSchedule.objects.filter(name=services.q_schedule_name(schedule.pk)).exists()
    run_now(scheduler)
    # even a task already in the queue for it does nothing
    assert services.schedule_fire(schedule_id=schedule.pk) is None
    assert not ScheduleFiring.objects.exists() and not Execution.objects.exists()
    # enabled again: a django-q2 schedule with the next cron time
    body = api.patch(f"/api/v1/schedules/{schedule.pk}/", {"enabled": True}, format="json").json()
    assert (
        body["next_run_at"]
        and QSchedule.objects.get(name=services.q_schedule_name(schedule.pk)).cron == "*/5 * * * *"
    )


def test_scheduled_runs_over_the_limit_are_skipped_and_recorded(user, upload, settings):
    settings.MAX_CONCURRENT_EXECUTIONS = 1
    script = upload(HELLO)
    schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=1)
    other = services.schedule_create(user=user, script_ref=script.pk, every_minutes=1)
    services.schedule_fire(schedule_id=other.pk)  # the owner's one run at a time (queued)
    firing = services.schedule_fire(schedule_id=schedule.pk)
    assert firing.outcome == "skipped_limit" and firing.error_code == "RATE_LIMITED"
    assert firing.execution is None and "at once" in firing.message
    assert Execution.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.last_outcome == "skipped_limit" and schedule.last_fired_at


def test_a_failing_start_is_recorded(user, upload):
    script = upload(HELLO)
    schedule = services.schedule_create(
        user=user, script_ref=script.pk, every_minutes=1, data={"name": 5}
    )
    firing = services.schedule_fire(schedule_id=schedule.pk)
    assert firing.outcome == "failed" and firing.error_code == "VALIDATION_ERROR"
    assert not Execution.objects.exists()


def test_deleting_a_schedule_keeps_its_runs(api, user, upload):
    script = upload(HELLO)
    schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=1)
    run = services.schedule_fire(schedule_id=schedule.pk).execution
    name = services.q_schedule_name(schedule.pk)
    assert api.delete(f"/api/v1/schedules/{schedule.pk}/").status_code == 204
    assert not Schedule.objects.exists() and not QSchedule.objects.filter(name=name).exists()
    run.refresh_from_db()
    assert run.schedule_id == schedule.pk and run.source == "schedule"
    assert api.get(f"/api/v1/executions/?schedule={schedule.pk}").json()["count"] == 1


def test_a_schedule_can_run_a_pipeline(user, upload, run_now):
    upload(DOUBLE, name="double.py")
    pipeline = services.pipeline_create(user=user, name="p", steps=[{"script": "double.py"}])
    schedule = services.schedule_create(
        user=user, pipeline_ref=pipeline.pk, every_minutes=60, data={"x": 4}
    )
    firing = run_now(services.schedule_fire, schedule_id=schedule.pk)
    assert firing.outcome == "started" and firing.pipeline_run is not None
    firing.pipeline_run.refresh_from_db()
    assert firing.pipeline_run.status == "succeeded"
    assert firing.pipeline_run.result["x"] == 8
    assert firing.pipeline_run.schedule_id == schedule.pk


@pytest.mark.parametrize(
    "body, field",
    [
        ({"script": "hello.py"}, "cron"),
        ({"script": "hello.py", "cron": "*/5 * * * *", "every_minutes": 5}, "cron"),
        ({"script": "hello.py", "cron": "not a cron"}, "cron"),
        ({"script": "hello.py", "cron": "61 * * * *"}, "cron"),
        ({"script": "hello.py", "every_minutes": 0}, "every_minutes"),
        ({"script": "nope.py", "every_minutes": 5}, "script"),
        ({"every_minutes": 5}, "script"),
        ({"script": "hello.py", "every_minutes": 5, "data": [1]}, "data"),
        ({"script": "hello.py", "every_minutes": 5, "data": {"a": "\u0000"}}, "data"),
        ({"script": "hello.py", "every_minutes": 5, "email_to": ["x"]}, "email_to"),
        ({"script": "hello.py", "every_minutes": 5, "pipeline": "9"}, "script"),
        ({"script": "hello.py", "every_minutes": 5, "owner": 3}, "owner"),
    ],
)
def test_bad_schedules_are_refused_with_field_details(api, upload, body, field):
    upload(HELLO, name="hello.py")
    error = assert_error(api.post("/api/v1/schedules/", body, format="json"), 400)
    assert field in error["details"], error
    assert (
        not Schedule.objects.exists()
        and not QSchedule.objects.filter(name__startswith="jobs.schedule.").exists()
    )


def test_others_schedules_are_hidden_and_staff_see_all(
    api, client_for, other_user, staff_user, upload
):
    script = upload(HELLO, owner=other_user)
    schedule = services.schedule_create(user=other_user, script_ref=script.pk, every_minutes=5)
    assert_error(api.get(f"/api/v1/schedules/{schedule.pk}/"), 404, "NOT_FOUND")
    assert_error(
        api.patch(f"/api/v1/schedules/{schedule.pk}/", {"enabled": False}, format="json"), 404
    )
    assert api.get("/api/v1/schedules/").json()["count"] == 0
    staff = client_for(staff_user)
    assert staff.get("/api/v1/schedules/").json()["count"] == 1
    assert (
        staff.patch(
            f"/api/v1/schedules/{schedule.pk}/", {"every_minutes": 10}, format="json"
        ).json()["every_minutes"]
        == 10
    )


def test_patch_switches_between_cron_and_minutes(api, user, upload):
    script = upload(HELLO)
    schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=5)
    body = api.patch(
        f"/api/v1/schedules/{schedule.pk}/", {"cron": "0 3 * * *"}, format="json"
    ).json()
    assert body["cron"] == "0 3 * * *" and body["every_minutes"] is None
    q = QSchedule.objects.get(name=services.q_schedule_name(schedule.pk))
    assert q.schedule_type == QSchedule.CRON and q.cron == "0 3 * * *"


def test_schedule_list_query_count_is_constant(api, user, upload, django_assert_max_num_queries):
    script = upload(HELLO)
    for _ in range(2):
        services.schedule_create(user=user, script_ref=script.pk, every_minutes=5)
    with django_assert_max_num_queries(5) as first:
        assert api.get("/api/v1/schedules/").json()["count"] == 2
    for _ in range(8):
        schedule = services.schedule_create(user=user, script_ref=script.pk, every_minutes=5)
        services.schedule_fire(schedule_id=schedule.pk)
    with django_assert_max_num_queries(len(first.captured_queries)):
        assert api.get("/api/v1/schedules/").json()["count"] == 10

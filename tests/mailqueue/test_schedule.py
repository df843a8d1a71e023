"""The processing window, service control and the scheduled task, with a fixed "now"."""

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from mailqueue import schedule
from mailqueue.models import EmailDetail, MailService
from mailqueue.selectors import service_status
from mailqueue.services import service_configure, service_get
from mailqueue.tasks import process_scheduled

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("start", "end", "at", "inside"),
    [
        ("09:00", "17:00", "09:00", True),
        ("09:00", "17:00", "16:59", True),
        ("09:00", "17:00", "17:00", False),
        ("09:00", "17:00", "08:59", False),
        ("22:00", "06:00", "23:30", True),  # crosses midnight
        ("22:00", "06:00", "02:00", True),
        ("22:00", "06:00", "06:00", False),
        ("22:00", "06:00", "12:00", False),
        ("00:00", "00:00", "13:37", True),  # equal: all day
    ],
)
def test_window(start, end, at, inside):
    parse = time.fromisoformat
    assert schedule.in_window(start=parse(start), end=parse(end), at=parse(at)) is inside


def test_window_is_read_in_the_project_time_zone(settings):
    settings.TIME_ZONE = "Asia/Kolkata"  # UTC+5:30
    service = service_configure(start_time=time(22, 0), end_time=time(6, 0))
    utc = ZoneInfo("UTC")
    # 17:00 UTC is 22:30 in Kolkata: inside; 01:00 UTC is 06:30 there: outside.
    assert schedule.window_open(service=service, now=datetime(2026, 1, 5, 17, 0, tzinfo=utc))
    assert not schedule.window_open(service=service, now=datetime(2026, 1, 5, 1, 0, tzinfo=utc))


def test_start_stop_persist_and_drive_the_schedule():
    schedule.service_stop()
    assert Schedule.objects.filter(name=schedule.SCHEDULE_NAME).count() == 0
    assert service_status()["status"] == "stopped"

    schedule.service_start()
    schedule.service_start()  # idempotent
    (sched,) = Schedule.objects.filter(name=schedule.SCHEDULE_NAME)
    assert sched.func == "mailqueue.tasks.process_scheduled" and sched.minutes == 1
    # A restart reads the stored choice: nothing in memory matters.
    assert MailService.objects.get(pk=1).is_started
    status = service_status()
    assert status["status"] == "running" and status["started_at"]
    assert status["next_run"] is not None

    service_configure(interval=2, interval_unit="hours")
    assert Schedule.objects.get(name=schedule.SCHEDULE_NAME).minutes == 120

    schedule.service_stop()
    assert not MailService.objects.get(pk=1).is_started
    assert not Schedule.objects.filter(name=schedule.SCHEDULE_NAME).exists()
    # After a restart (migrate runs service_ensure) a stopped service stays stopped.
    schedule.service_ensure()
    assert service_status()["status"] == "stopped"


def test_running_needs_the_schedule_too():
    schedule.service_start()
    Schedule.objects.filter(name=schedule.SCHEDULE_NAME).delete()
    assert service_status()["status"] == "stopped"
    schedule.service_ensure()  # what a restart does: the schedule comes back
    assert service_status()["status"] == "running"


def test_fresh_install_autostarts_after_migrate(settings):
    MailService.objects.all().delete()
    Schedule.objects.all().delete()
    settings.MAILQUEUE_AUTOSTART = True
    call_command("migrate", "mailqueue", verbosity=0)  # sends post_migrate
    assert service_status()["status"] == "running"


def test_task_processes_only_when_started_and_inside_the_window(settings):
    settings.MAILQUEUE_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.TIME_ZONE = "UTC"
    utc = ZoneInfo("UTC")
    service_configure(start_time=time(22, 0), end_time=time(6, 0))
    EmailDetail.objects.create(to_emails="a@example.com", subject="s", body_text="b")
    schedule.service_stop()
    assert process_scheduled(now=datetime(2026, 1, 5, 23, 0, tzinfo=utc)) == {"skipped": "stopped"}
    schedule.service_start()
    noon = datetime(2026, 1, 5, 12, 0, tzinfo=utc)
    assert process_scheduled(now=noon) == {"skipped": "outside window"}
    assert EmailDetail.objects.get().send_flag == "N"
    result = process_scheduled(now=datetime(2026, 1, 6, 1, 0, tzinfo=utc))
    assert result["sent"] == 1
    assert EmailDetail.objects.get().send_flag == "Y"


def test_next_run_moves_to_the_window_opening(settings):
    settings.TIME_ZONE = "UTC"
    utc = ZoneInfo("UTC")
    schedule.service_start()
    service = service_configure(start_time=time(22, 0), end_time=time(6, 0))
    Schedule.objects.filter(name=schedule.SCHEDULE_NAME).update(
        next_run=datetime(2026, 1, 5, 12, 0, tzinfo=utc)
    )
    now = datetime(2026, 1, 5, 11, 0, tzinfo=utc)
    assert schedule.next_window_run(service=service, now=now) == datetime(
        2026, 1, 5, 22, 0, tzinfo=utc
    )


def test_bad_configuration_changes_nothing():
    from config.errors import ApplicationError

    before = service_get()
    with pytest.raises(ApplicationError) as exc:
        service_configure(interval=0, interval_unit="weeks")
    assert set(exc.value.details) == {"interval", "interval_unit"}
    after = MailService.objects.get(pk=1)
    assert (after.interval, after.interval_unit) == (before.interval, before.interval_unit)

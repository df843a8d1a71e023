"""Service control and the processing window.

The service is started or stopped in ``MailService.is_started`` (so the choice survives
restarts). While it is started a django-q2 Schedule named SCHEDULE_NAME runs
``mailqueue.tasks.process_scheduled`` every ``interval`` minutes or hours; that task
processes a batch only inside the ``start_time``-``end_time`` window, read in
settings.TIME_ZONE. A window whose end is before its start crosses midnight; equal
start and end mean all day.
"""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from mailqueue.models import IntervalUnit, MailService

SCHEDULE_NAME = "mailqueue.process"
TASK = "mailqueue.tasks.process_scheduled"


def in_window(*, start: time, end: time, at: time) -> bool:
    """Whether the time of day ``at`` falls in [start, end); crossing midnight when
    ``end < start``; the whole day when they are equal."""
    if start == end:
        return True
    if start < end:
        return start <= at < end
    return at >= start or at < end


def local_now(now: datetime | None = None) -> datetime:
    """``now`` (default: the current time) in the project's time zone."""
    return timezone.localtime(now or timezone.now())


def window_open(*, service: MailService, now: datetime | None = None) -> bool:
    """Whether the service's window is open at ``now`` (in settings.TIME_ZONE)."""
    return in_window(start=service.start_time, end=service.end_time, at=local_now(now).time())


def interval_minutes(service: MailService) -> int:
    factor = 60 if service.interval_unit == IntervalUnit.HOURS else 1
    return max(int(service.interval) * factor, 1)


def schedule_get() -> Schedule | None:
    return Schedule.objects.filter(name=SCHEDULE_NAME).first()


def schedule_sync(*, service: MailService) -> Schedule | None:
    """Make the django-q2 schedule match the service: present with the configured
    interval while started, absent while stopped."""
    if not service.is_started:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return None
    minutes = interval_minutes(service)
    schedule = schedule_get()
    if schedule is None:
        return Schedule.objects.create(
            name=SCHEDULE_NAME,
            func=TASK,
            schedule_type=Schedule.MINUTES,
            minutes=minutes,
            repeats=-1,
            next_run=timezone.now(),
        )
    changed = schedule.minutes != minutes or schedule.func != TASK
    if changed or schedule.schedule_type != Schedule.MINUTES or schedule.repeats != -1:
        schedule.func, schedule.minutes = TASK, minutes
        schedule.schedule_type, schedule.repeats = Schedule.MINUTES, -1
        schedule.next_run = min(schedule.next_run, timezone.now() + timedelta(minutes=minutes))
        schedule.save()
    return schedule


def service_get() -> MailService:
    """The service's one row (made with the settings' defaults on first use). Lives
    here, below the processor and the services, which both read it."""
    service, _ = MailService.objects.get_or_create(
        pk=1,
        defaults={
            "max_retries": settings.MAILQUEUE_MAX_RETRIES,
            "batch_size": settings.MAILQUEUE_BATCH_SIZE,
        },
    )
    return service


def service_start() -> MailService:
    """Start the service: remembered in the database, schedule created (idempotent)."""
    with transaction.atomic():
        service = MailService.objects.select_for_update().get(pk=service_get().pk)
        if not service.is_started:
            service.is_started = True
            service.started_at = timezone.now()
            service.save(update_fields=["is_started", "started_at"])
        schedule_sync(service=service)
    return service


def service_stop() -> MailService:
    """Stop the service: remembered in the database, schedule removed (idempotent).
    A batch already running finishes."""
    with transaction.atomic():
        service = MailService.objects.select_for_update().get(pk=service_get().pk)
        if service.is_started:
            service.is_started = False
            service.stopped_at = timezone.now()
            service.save(update_fields=["is_started", "stopped_at"])
        schedule_sync(service=service)
    return service


def service_ensure() -> MailService:
    """After ``migrate``: a fresh install starts the service when MAILQUEUE_AUTOSTART
    is on; afterwards the stored choice wins (and its schedule is restored)."""
    if not MailService.objects.filter(pk=1).exists() and settings.MAILQUEUE_AUTOSTART:
        return service_start()
    service = service_get()
    schedule_sync(service=service)
    return service


def next_window_run(*, service: MailService, now: datetime | None = None) -> datetime | None:
    """When the next batch will run: the schedule's next run, moved to the window's
    opening when it falls outside the window. None while stopped."""
    schedule = schedule_get()
    if not service.is_started or schedule is None or schedule.next_run is None:
        return None
    candidate = max(schedule.next_run, now or timezone.now())
    if window_open(service=service, now=candidate):
        return candidate
    local = local_now(candidate)
    opening = local.replace(
        hour=service.start_time.hour,
        minute=service.start_time.minute,
        second=service.start_time.second,
        microsecond=0,
    )
    if opening <= local:
        opening += timedelta(days=1)
    return opening

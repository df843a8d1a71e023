"""Keep the reaper schedule in place after migrations."""

from django.db.models.signals import post_migrate
from django.dispatch import receiver

REAPER_SCHEDULE = "executions: mark lost runs"
RETENTION_SCHEDULE = "executions: delete runs past RUN_RETENTION_DAYS"


@receiver(post_migrate)
def ensure_reaper_schedule(sender, app_config=None, using="default", **kwargs):
    """The django-q2 schedules of runs: mark runs without heartbeat as lost (every
    minute) and apply the retention (daily; it does nothing while RUN_RETENTION_DAYS=0)."""
    if app_config is None or app_config.label != "executions":
        return
    from django_q.models import Schedule

    Schedule.objects.using(using).get_or_create(
        name=REAPER_SCHEDULE,
        defaults={
            "func": "executions.tasks.reap_lost_executions",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    Schedule.objects.using(using).get_or_create(
        name=RETENTION_SCHEDULE,
        defaults={
            "func": "executions.tasks.prune_old_executions",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
    )

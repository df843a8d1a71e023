"""Keep the reaper schedule in place after migrations; a run's files go with it."""

from django.db.models.signals import post_migrate, pre_delete
from django.dispatch import receiver

from executions.models import Execution

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


@receiver(pre_delete, sender=Execution, dispatch_uid="executions_files_go_with_the_run")
def delete_run_files(sender, instance, **kwargs):
    """However a run is deleted (admin, queryset, retention), its stored files go
    first (before the foreign key is set to NULL), through the storage service."""
    from storage.services import files_delete_for_execution

    files_delete_for_execution(execution_id=instance.pk)

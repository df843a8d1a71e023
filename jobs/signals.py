"""What the jobs app listens to: runs that finish (pipelines advance), run reports
handed to the mail queue (files removed once sent), deleted schedules (their
django-q2 schedule goes too) and migrations (the cleanup's own schedule)."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from config.registry import register_schedule
from executions.signals import execution_finished, report_queued
from jobs.models import Schedule

CLEANUP_SCHEDULE = "jobs: remove files of runs whose report was sent"


@receiver(execution_finished, dispatch_uid="jobs_pipeline_advance")
def advance_pipeline(sender, execution, **kwargs):
    from jobs.services import pipeline_run_advance

    pipeline_run_advance(execution=execution)


@receiver(report_queued, dispatch_uid="jobs_report_cleanup")
def remember_report(sender, execution, mail_ids, sent, **kwargs):
    from jobs.services import report_cleanup_register

    report_cleanup_register(execution=execution, mail_ids=mail_ids, sent=sent)


@receiver(post_delete, sender=Schedule, dispatch_uid="jobs_schedule_deleted")
def delete_q_schedule(sender, instance, **kwargs):
    """However a schedule goes (service, admin, cascade from its script, pipeline or
    owner), its django-q2 schedule goes with it: nothing fires for a deleted one."""
    from django_q.models import Schedule as QSchedule

    from jobs.services import q_schedule_name

    QSchedule.objects.filter(name=q_schedule_name(instance.pk)).delete()


register_schedule(
    "jobs",
    name=CLEANUP_SCHEDULE,
    func="jobs.tasks.cleanup_reported_files",  # a no-op while CLEANUP_FILES_AFTER_EMAIL is off
    every_minutes=1,
)

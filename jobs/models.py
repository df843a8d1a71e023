"""Schedules (runs that start on a cron expression or every N minutes), their firings,
pipelines (scripts chained into one workflow) and their runs, and the cleanup of a
run's files once its report was sent."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Schedule(models.Model):
    """Start a script (or a pipeline) with fixed inputs on a cron expression or every
    N minutes, as ``owner`` (whose permissions the runs get). Firings come from a
    django-q2 Schedule (``q_schedule``) that calls jobs.tasks.fire_schedule."""

    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_schedules"
    )
    script = models.ForeignKey(
        "scripts.Script",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
    )
    pipeline = models.ForeignKey(
        "jobs.Pipeline",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
    )
    data = models.JSONField(default=dict, blank=True)
    args = models.JSONField(null=True, blank=True)  # command scripts without parameters
    cron = models.CharField(max_length=120, blank=True)
    every_minutes = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    email_to = models.JSONField(default=list, blank=True)

    q_schedule = models.OneToOneField(
        "django_q.Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="job_schedule",
    )
    # The latest due time a firing claimed (conditional UPDATE): a due time fires once.
    last_due_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=32, blank=True)
    last_execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_pipeline_run = models.ForeignKey(
        "jobs.PipelineRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(script__isnull=False) & Q(pipeline__isnull=True))
                | (Q(script__isnull=True) & Q(pipeline__isnull=False)),
                name="jobs_schedule_one_target",
            ),
            models.CheckConstraint(
                condition=(Q(cron="") & Q(every_minutes__gte=1))
                | (~Q(cron="") & Q(every_minutes__isnull=True)),
                name="jobs_schedule_cron_or_every",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"schedule #{self.pk}"

    @property
    def target_label(self) -> str:
        if self.script_id:
            return self.script.logical_path if self.script else f"script #{self.script_id}"
        return f"pipeline {self.pipeline.name}" if self.pipeline else "?"

    @property
    def timing_label(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {self.every_minutes} min"


class ScheduleFiring(models.Model):
    """What one due time of a schedule did: started a run, or why it did not."""

    class Outcome(models.TextChoices):
        STARTED = "started", "Run started"
        SKIPPED_RUNNING = "skipped_running", "Skipped: previous run still running"
        SKIPPED_LIMIT = "skipped_limit", "Skipped: over the owner's limit"
        FAILED = "failed", "Failed"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="schedule_firings",
    )
    pipeline_run = models.ForeignKey(
        "jobs.PipelineRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="schedule_firings",
    )
    error_code = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-due_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "due_at"], name="jobs_firing_once"),
            models.CheckConstraint(
                condition=Q(outcome__in=["started", "skipped_running", "skipped_limit", "failed"]),
                name="jobs_firing_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.due_at:%Y-%m-%d %H:%M}: {self.outcome}"


class Pipeline(models.Model):
    """Scripts run one after the other; each step's result is merged over the next
    step's input."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pipelines"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="jobs_pipeline_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class PipelineStep(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()  # 1, 2, ...
    script = models.ForeignKey(
        "scripts.Script", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    script_path = models.CharField(max_length=1300)  # kept when the script is deleted

    class Meta:
        ordering = ["pipeline", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "position"], name="jobs_pipeline_step_unique_position"
            ),
            models.CheckConstraint(condition=Q(position__gte=1), name="jobs_step_position_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.script_path}"


class PipelineRun(models.Model):
    """One run of a pipeline: its steps' runs, in order."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="runs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_runs",
    )
    source = models.CharField(max_length=16, default="api")  # api, admin, schedule
    schedule_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    inputs = models.JSONField(default=dict, blank=True)
    email_to = models.JSONField(default=list, blank=True)  # the last step reports
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "succeeded", "failed", "cancelled"]),
                name="jobs_pipeline_run_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.pipeline} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class PipelineRunStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"  # its run is queued or running
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    script = models.ForeignKey(
        "scripts.Script", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    script_path = models.CharField(max_length=1300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # The data the step was given (before keys its script does not take were dropped).
    inputs = models.JSONField(default=dict, blank=True)
    execution = models.OneToOneField(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_step",
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="jobs_run_step_unique"),
            models.CheckConstraint(
                condition=Q(
                    status__in=["pending", "running", "succeeded", "failed", "cancelled", "skipped"]
                ),
                name="jobs_run_step_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.script_path} ({self.status})"


class ReportCleanup(models.Model):
    """CLEANUP_FILES_AFTER_EMAIL: a run whose files go once the mail queue marked
    every row of its report sent (``mail_ids``). A report that failed for good keeps
    the files."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for the report to be sent"
        REMOVED = "removed", "Files removed"
        KEPT = "kept", "Files kept (the report was not sent)"

    execution = models.OneToOneField(
        "executions.Execution", on_delete=models.CASCADE, related_name="report_cleanup"
    )
    mail_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    files_removed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["waiting", "removed", "kept"]),
                name="jobs_report_cleanup_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"cleanup of run {self.execution_id}: {self.status}"

"""Runs of scripts: the Execution record and its log."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Execution(models.Model):
    """One run of one exact ScriptVersion. Rows outlive the script they ran (the path
    and version number are copied), so that history stays readable."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Lost"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED, Status.LOST)

    class Source(models.TextChoices):
        """Who started the run."""

        API = "api", "API"
        SYNC = "sync", "API (sync)"
        ADMIN = "admin", "Admin"
        PORTAL = "portal", "Portal"
        RERUN = "rerun", "Rerun"
        SCHEDULE = "schedule", "Schedule"
        PIPELINE = "pipeline", "Pipeline"

    script = models.ForeignKey(
        "scripts.Script",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    script_version = models.ForeignKey(
        "scripts.ScriptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    script_path = models.CharField(max_length=1300)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    inputs = models.JSONField(default=dict, blank=True)
    argv = models.JSONField(default=list, blank=True)
    input_files = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    # The jobs.Schedule that fired it: a plain id (no foreign key), so that the run keeps
    # it when the schedule is deleted and executions does not depend on the jobs app.
    schedule_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    options = models.JSONField(default=dict, blank=True)  # delivery (email_to...), timeout
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )

    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)

    exit_code = models.IntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    peak_memory_kb = models.BigIntegerField(null=True, blank=True)
    cpu_time_ms = models.BigIntegerField(null=True, blank=True)
    log_size = models.BigIntegerField(default=0)
    log_truncated = models.BooleanField(default=False)
    progress_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["status", "queued_at"]),
            models.Index(fields=["requested_by", "-queued_at"]),
            models.Index(fields=["script", "-queued_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "queued",
                        "running",
                        "succeeded",
                        "failed",
                        "timed_out",
                        "cancelled",
                        "lost",
                    ]
                ),
                name="executions_execution_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(progress_percent__isnull=True) | Q(progress_percent__lte=100),
                name="executions_execution_progress_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.script_path} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ExecutionLogChunk(models.Model):
    """A batch of the run's merged stdout/stderr, in order (``seq`` from 1)."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="log_chunks")
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="executions_log_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"log #{self.seq} of run {self.execution_id}"


class Artifact(models.Model):
    """A file a run left in its workspace, kept in storage under executions/<id>/."""

    class Category(models.TextChoices):
        DATA = "data", "Data"
        DOCUMENT = "document", "Document"
        IMAGE = "image", "Image"
        ARCHIVE = "archive", "Archive"
        CODE = "code", "Code"
        LOG = "log", "Log"
        OTHER = "other", "Other"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="artifacts")
    stored_file = models.OneToOneField(
        "storage.StoredFile", on_delete=models.CASCADE, related_name="artifact"
    )
    name = models.CharField(max_length=1024, help_text="Path inside the run's workspace")
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    size = models.BigIntegerField()

    class Meta:
        ordering = ["execution", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "name"], name="executions_artifact_unique_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (run {self.execution_id})"

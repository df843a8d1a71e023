"""Admin for runs: read-only records, a live log page, cancel and rerun actions, and the
warm templates page (admin_warm.py)."""

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from config.errors import ApplicationError
from executions import admin_run, admin_warm, services
from executions.logbook import log_tail
from executions.models import Artifact, Execution

LOG_PREVIEW_CHARS = 20000


class ArtifactInline(admin.TabularInline):
    model = Artifact
    fields = ["name", "category", "size", "download"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="download")
    def download(self, artifact):
        url = reverse("execution-file", kwargs={"pk": artifact.execution_id, "name": artifact.name})
        return format_html('<a href="{}">download</a>', url)


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "script_path",
        "version_number",
        "status",
        "requested_by",
        "source",
        "queued_at",
        "duration",
        "progress_percent",
    ]
    list_filter = ["status", "source", "queued_at"]
    list_select_related = ["requested_by"]
    search_fields = ["script_path", "=id", "requested_by__username"]
    date_hierarchy = "queued_at"
    actions = ["cancel", "rerun"]
    inlines = [ArtifactInline]
    readonly_fields = [
        "script",
        "script_version",
        "script_path",
        "version_number",
        "status",
        "inputs",
        "argv",
        "input_files",
        "options",
        "requested_by",
        "source",
        "rerun_of",
        "queued_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "worker",
        "exit_code",
        "result",
        "error_code",
        "error_message",
        "peak_memory_kb",
        "cpu_time_ms",
        "log_size",
        "log_truncated",
        "progress_percent",
        "progress_message",
        "cancel_requested_at",
        "live_log_link",
        "log_preview",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "script_path",
                    "version_number",
                    "status",
                    "live_log_link",
                    "requested_by",
                    "source",
                    "rerun_of",
                ]
            },
        ),
        ("Inputs", {"fields": ["inputs", "argv", "input_files", "options"]}),
        (
            "Outcome",
            {
                "fields": [
                    "exit_code",
                    "result",
                    "error_code",
                    "error_message",
                    "progress_percent",
                    "progress_message",
                ]
            },
        ),
        (
            "Timing and resources",
            {
                "fields": [
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "heartbeat_at",
                    "worker",
                    "peak_memory_kb",
                    "cpu_time_ms",
                    "log_size",
                    "log_truncated",
                    "cancel_requested_at",
                ]
            },
        ),
        ("Log", {"fields": ["log_preview"]}),
        ("Links", {"classes": ["collapse"], "fields": ["script", "script_version"]}),
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="duration")
    def duration(self, execution):
        seconds = execution.duration_seconds
        return f"{seconds:.2f} s" if seconds is not None else "-"

    @admin.display(description="live log")
    def live_log_link(self, execution):
        url = reverse("admin:executions_execution_live", args=[execution.pk])
        return format_html('<a href="{}">Follow the log live</a>', url)

    @admin.display(description="log")
    def log_preview(self, execution):
        text, cut = log_tail(execution_id=execution.pk, chars=LOG_PREVIEW_CHARS)
        if cut:
            text = "[... earlier output cut; the full log is in the API ...]\n" + text
        return format_html('<pre style="max-height:40em;overflow:auto">{}</pre>', text)

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/live/",
                self.admin_site.admin_view(self.live_view),
                name="executions_execution_live",
            ),
            path(
                "warm/",
                self.admin_site.admin_view(lambda request: admin_warm.warm_view(self, request)),
                name="executions_warm_templates",
            ),
        ]
        return extra + super().get_urls()

    def live_view(self, request, pk: int):
        execution = get_object_or_404(Execution, pk=pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "execution": execution,
            "title": f"Run #{execution.pk}: {execution.script_path}",
            "events_url": f"/api/v1/executions/{execution.pk}/events/",
        }
        return TemplateResponse(request, "admin/executions/live.html", context)

    @admin.action(description="Cancel selected runs")
    def cancel(self, request, queryset):
        for execution in queryset:
            try:
                services.execution_cancel(user=request.user, execution=execution)
            except ApplicationError as exc:
                self.message_user(request, f"#{execution.pk}: {exc.message}", messages.WARNING)

    @admin.action(description="Run selected again")
    def rerun(self, request, queryset):
        for execution in queryset.select_related("script_version", "script"):
            try:
                new = services.execution_rerun(user=request.user, execution=execution)
            except ApplicationError as exc:
                self.message_user(request, f"#{execution.pk}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"#{execution.pk} started again as #{new.pk}.")


admin_run.register(admin.site)  # the Run page and environment action on scripts' admin

"""Schedules, pipelines and their runs in the admin. Every write goes through
jobs.services (the admin is not a second door): the forms show the services' rules."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from config.errors import ApplicationError
from jobs import selectors, services
from jobs.models import (
    Pipeline,
    PipelineRun,
    ReportCleanup,
    Schedule,
    ScheduleFiring,
)


def _link(model: str, pk, label=None):
    if pk is None:
        return "-"
    return format_html(
        '<a href="{}">{}</a>', reverse(f"admin:{model}_change", args=[pk]), label or f"#{pk}"
    )


def _form_error(exc: ApplicationError, fields) -> ValidationError:
    field = next(iter(exc.details), None) if exc.details else None
    return ValidationError({field: exc.message} if field in fields else exc.message)


def _json_field(text: str, *, empty):
    text = (text or "").strip()
    if not text:
        return empty
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).")


class ScheduleForm(forms.ModelForm):
    data = forms.CharField(
        label="Inputs (JSON object)",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        required=False,
    )
    args = forms.CharField(
        label="Arguments (JSON list; command scripts without parameters)", required=False
    )
    email_to = forms.CharField(
        label="E-mail the report to", required=False, help_text="Comma-separated addresses"
    )

    class Meta:
        model = Schedule
        fields = ["name", "owner", "script", "pipeline", "cron", "every_minutes", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["data"] = json.dumps(self.instance.data, indent=2)
            self.initial["args"] = json.dumps(self.instance.args) if self.instance.args else ""
            self.initial["email_to"] = ", ".join(self.instance.email_to or [])

    def clean_data(self):
        return _json_field(self.cleaned_data["data"], empty={})

    def _post_clean(self):
        pass  # no model validation: the service decides (and saves) in clean()

    def clean_args(self):
        return _json_field(self.cleaned_data["args"], empty=None)

    def clean(self):
        """The service's rules, shown on the form: saved here, through the service."""
        data = super().clean()
        if self.errors:
            return data
        values = {
            "name": data.get("name", ""),
            "script_ref": data["script"].pk if data.get("script") else None,
            "pipeline_ref": data["pipeline"].pk if data.get("pipeline") else None,
            "data": data.get("data"),
            "args": data.get("args"),
            "cron": data.get("cron") or None,
            "every_minutes": data.get("every_minutes"),
            "enabled": data.get("enabled", True),
            "email_to": data.get("email_to"),
        }
        try:
            if self.instance.pk:
                self.saved = services.schedule_update(
                    user=self.request_user, schedule=self.instance, **values
                )
            else:
                self.saved = services.schedule_create(user=data["owner"], **values)
        except ApplicationError as exc:
            raise _form_error(exc, self.fields)
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = [
        "__str__",
        "owner",
        "target",
        "timing",
        "enabled",
        "next_firing",
        "last_fired_at",
        "last_outcome",
        "last_run",
        "skipped_firings",
    ]
    list_filter = ["enabled", "last_outcome"]
    search_fields = ["name", "owner__username", "script__logical_path", "pipeline__name"]
    readonly_fields = [
        "next_firing",
        "last_fired_at",
        "last_outcome",
        "last_run",
        "skipped_firings",
        "recent_firings",
        "created_at",
        "updated_at",
    ]
    actions = ["enable", "disable"]

    def get_queryset(self, request):
        return selectors.schedules_for_user(user=request.user).select_related(
            "last_execution", "last_pipeline_run"
        )

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        if "owner" in form.base_fields:
            form.base_fields["owner"].initial = request.user.pk
        return form

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields + (["owner"] if obj else [])

    @admin.display(description="Runs")
    def target(self, obj):
        return obj.target_label

    @admin.display(description="When")
    def timing(self, obj):
        return obj.timing_label

    @admin.display(description="Next firing")
    def next_firing(self, obj):
        if not obj.enabled or obj.q_schedule is None:
            return "-"
        return obj.q_schedule.next_run

    @admin.display(description="Last run")
    def last_run(self, obj):
        if obj.last_pipeline_run_id:
            return _link("jobs_pipelinerun", obj.last_pipeline_run_id)
        if obj.last_execution_id:
            return _link("executions_execution", obj.last_execution_id, obj.last_execution)
        return "-"

    @admin.display(description="Skipped firings")
    def skipped_firings(self, obj):
        count = getattr(obj, "skipped_count", None)
        if not count:
            return 0
        url = reverse("admin:jobs_schedulefiring_changelist")
        return format_html(
            '<a href="{}?schedule__id__exact={}&outcome__startswith=skipped">{}</a>',
            url,
            obj.pk,
            count,
        )

    @admin.display(description="Latest firings")
    def recent_firings(self, obj):
        firings = selectors.schedule_firings(schedule=obj) if obj.pk else []
        if not firings:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f.due_at,
                    f.get_outcome_display(),
                    _link("executions_execution", f.execution_id)
                    if f.execution_id
                    else _link("jobs_pipelinerun", f.pipeline_run_id),
                    f.message,
                )
                for f in firings
            ),
        )
        return format_html(
            "<table><tr><th>Due</th><th>Outcome</th><th>Run</th><th>Message</th></tr>{}</table>",
            rows,
        )

    def save_model(self, request, obj, form, change):
        """Saved in the form's clean() through the services."""
        obj.pk = form.saved.pk

    def save_related(self, request, form, formsets, change):
        pass

    def delete_model(self, request, obj):
        services.schedule_delete(user=request.user, schedule=obj)

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            services.schedule_delete(user=request.user, schedule=schedule)

    def _set_enabled(self, request, queryset, enabled: bool):
        for schedule in queryset:
            try:
                services.schedule_update(user=request.user, schedule=schedule, enabled=enabled)
            except ApplicationError as exc:
                self.message_user(request, f"{schedule}: {exc.message}", messages.ERROR)

    @admin.action(description="Enable the selected schedules")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected schedules (no more firings)")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)


@admin.register(ScheduleFiring)
class ScheduleFiringAdmin(admin.ModelAdmin):
    list_display = ["schedule", "due_at", "fired_at", "outcome", "execution", "pipeline_run"]
    list_filter = ["outcome", "schedule"]
    list_select_related = ["schedule", "execution", "pipeline_run__pipeline"]
    date_hierarchy = "due_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PipelineForm(forms.ModelForm):
    steps_text = forms.CharField(
        label="Steps",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text="One script per line, in order: its id or logical path (folder/a.py).",
    )

    class Meta:
        model = Pipeline
        fields = ["name", "owner", "description"]

    def _post_clean(self):
        pass  # no model validation: the service decides (and saves) in clean()

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        steps = [line.strip() for line in data["steps_text"].splitlines() if line.strip()]
        try:
            self.saved = services.pipeline_create(
                user=data["owner"],
                name=data["name"],
                steps=[{"script": step} for step in steps],
                description=data.get("description", ""),
            )
        except ApplicationError as exc:
            if exc.details and any(k.startswith("steps") for k in exc.details):
                raise ValidationError({"steps_text": exc.message})
            raise _form_error(exc, self.fields)
        return data


class PipelineRunForm(forms.Form):
    data = forms.CharField(
        label="Input of the first step (JSON object)",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        required=False,
    )

    def clean_data(self):
        return _json_field(self.cleaned_data["data"], empty={})


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "step_count", "run_button", "updated_at"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["step_list", "recent_runs", "run_button", "created_at", "updated_at"]

    def get_queryset(self, request):
        return selectors.pipelines_for_user(user=request.user)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = PipelineForm
        form = super().get_form(request, obj, **kwargs)
        if obj is None and "owner" in form.base_fields:
            form.base_fields["owner"].initial = request.user.pk
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "owner", "description", "steps_text"]
        return ["name", "owner", "description", "step_list", "run_button", "recent_runs"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["name", "owner", "description", "step_list", "recent_runs", "run_button"]

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="Steps")
    def step_count(self, obj):
        return len(obj.steps.all())

    @admin.display(description="Steps")
    def step_list(self, obj):
        return format_html(
            "<ol>{}</ol>",
            format_html_join("", "<li>{}</li>", ((s.script_path,) for s in obj.steps.all())),
        )

    @admin.display(description="Latest runs")
    def recent_runs(self, obj):
        runs = obj.runs.order_by("-created_at", "-id")[:10]
        return (
            format_html_join(
                "",
                "<div>{} {} {}</div>",
                (
                    (_link("jobs_pipelinerun", r.pk), r.get_status_display(), r.created_at)
                    for r in runs
                ),
            )
            or "-"
        )

    @admin.display(description="Run")
    def run_button(self, obj):
        url = reverse("admin:jobs_pipeline_run", args=[obj.pk])
        return format_html('<a class="button" href="{}">Run…</a>', url)

    def save_model(self, request, obj, form, change):
        obj.pk = form.saved.pk

    def save_related(self, request, form, formsets, change):
        pass

    def delete_model(self, request, obj):
        services.pipeline_delete(user=request.user, pipeline=obj)

    def delete_queryset(self, request, queryset):
        for pipeline in queryset:
            services.pipeline_delete(user=request.user, pipeline=pipeline)

    def get_urls(self):
        return [
            path(
                "<int:pk>/run/",
                self.admin_site.admin_view(self.run_view),
                name="jobs_pipeline_run",
            ),
            *super().get_urls(),
        ]

    def run_view(self, request, pk: int):
        """GET: a form for the first step's input. POST: start a run through
        pipeline_run_start and open it."""
        pipeline = get_object_or_404(self.get_queryset(request), pk=pk)
        form = PipelineRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = services.pipeline_run_start(
                    user=request.user,
                    pipeline=pipeline,
                    data=form.cleaned_data["data"],
                    source="admin",
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Pipeline run #{run.pk} started.", messages.SUCCESS)
                return redirect("admin:jobs_pipelinerun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run pipeline {pipeline.name}",
            "opts": self.model._meta,
            "pipeline": pipeline,
            "form": form,
        }
        return TemplateResponse(request, "admin/jobs/pipeline_run.html", context)


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "pipeline", "status", "requested_by", "source", "created_at"]
    list_filter = ["status", "source"]
    list_select_related = ["pipeline", "requested_by"]
    fields = [
        "pipeline",
        "status",
        "requested_by",
        "source",
        "schedule_id",
        "inputs",
        "result",
        "error_code",
        "error_message",
        "step_table",
        "created_at",
        "finished_at",
    ]
    readonly_fields = fields
    actions = ["cancel"]

    def get_queryset(self, request):
        return selectors.pipeline_runs_for_user(user=request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Steps")
    def step_table(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    s.position,
                    s.script_path,
                    s.get_status_display(),
                    _link("executions_execution", s.execution_id),
                )
                for s in obj.steps.all()
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>Script</th><th>Status</th><th>Run</th></tr>{}</table>",
            rows,
        )

    @admin.action(description="Cancel the selected pipeline runs")
    def cancel(self, request, queryset):
        for run in queryset:
            try:
                services.pipeline_run_cancel(user=request.user, run=run)
            except ApplicationError as exc:
                self.message_user(request, f"#{run.pk}: {exc.message}", messages.WARNING)


@admin.register(ReportCleanup)
class ReportCleanupAdmin(admin.ModelAdmin):
    list_display = ["execution", "status", "files_removed", "created_at", "done_at"]
    list_filter = ["status"]
    readonly_fields = ["execution", "mail_ids", "status", "files_removed", "created_at", "done_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

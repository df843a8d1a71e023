"""What runs add to the script library's admin (scripts never imports runs): the
"Run" page of a script (a form for inputs, handed to execution_start), its button on
the script's page, and the "Prepare environment" action. ``ScriptRunAdmin`` replaces
scripts' ScriptAdmin on the admin site (executions/admin.py)."""

import json
import shlex

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from config.errors import ApplicationError
from executions.services import environment_prepare, execution_start
from scripts import selectors
from scripts.admin import ScriptAdmin
from scripts.models import Script


class RunForm(forms.Form):
    data = forms.CharField(
        label="Inputs (JSON object)",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        required=False,
    )
    args = forms.CharField(
        label="Arguments (command scripts without declared parameters)",
        required=False,
        help_text='Split like a shell does: --limit 5 "two words"',
    )
    email_to = forms.CharField(
        label="E-mail the report to", required=False, help_text="Comma-separated addresses"
    )
    timeout = forms.IntegerField(label="Timeout (seconds)", required=False, min_value=1)

    def clean_data(self):
        text = self.cleaned_data["data"].strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).")

    def clean_args(self):
        text = self.cleaned_data["args"].strip()
        try:
            return shlex.split(text) if text else None
        except ValueError as exc:
            raise forms.ValidationError(str(exc))


def _initial_inputs(schema: dict) -> str:
    defaults = {
        name: prop["default"]
        for name, prop in (schema.get("properties") or {}).items()
        if "default" in prop
    }
    return json.dumps(defaults, indent=2)


def run_view(model_admin, request, pk: int):
    """GET: the form (inputs pre-filled with the schema's defaults). POST: start the run
    through executions.services.execution_start and open its live log."""
    script = get_object_or_404(Script.objects.select_related("current_version"), pk=pk)
    version = script.current_version
    schema = selectors.script_version_schema(version=version) if version else {}
    form = RunForm(request.POST or None, initial={"data": _initial_inputs(schema)})
    if request.method == "POST" and form.is_valid():
        try:
            execution = execution_start(
                user=request.user,
                script_ref=script.pk,
                inputs=form.cleaned_data["data"],
                args=form.cleaned_data["args"],
                email_to=form.cleaned_data["email_to"],
                timeout=form.cleaned_data["timeout"],
                source="admin",
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            for field, problems in exc.details.items():
                target = field if field in form.fields else None
                prefix = "" if target else f"{field}: "
                form.add_error(target, [f"{prefix}{p}" for p in problems])
        else:
            messages.success(request, f"Run #{execution.pk} queued.")
            return redirect("admin:executions_execution_live", execution.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "original": script,
        "title": f"Run {script.logical_path}",
        "form": form,
        "schema": json.dumps(schema, indent=2),
        "version": version,
    }
    return TemplateResponse(request, "admin/scripts/script/run.html", context)


class ScriptRunAdmin(ScriptAdmin):
    """The script library's admin with what runs add: the Run page and its button,
    and the environment action."""

    actions = [*(ScriptAdmin.actions or []), "prepare_environment"]

    def get_urls(self):
        run = self.admin_site.admin_view(lambda request, pk: run_view(self, request, pk))
        return [path("<int:pk>/run/", run, name="scripts_script_run"), *super().get_urls()]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return ["run_link", *fields] if obj else fields

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None or "run_link" in fields:
            return fields
        at = fields.index("logical_path") + 1 if "logical_path" in fields else len(fields)
        return [*fields[:at], "run_link", *fields[at:]]

    @admin.display(description="Run")
    def run_link(self, script):
        url = reverse("admin:scripts_script_run", args=[script.pk])
        return format_html('<a class="button" href="{}">Run this script</a>', url)

    @admin.action(description="Prepare environment (install requirements now)")
    def prepare_environment(self, request, queryset):
        for script in queryset.select_related("current_version"):
            try:
                python = environment_prepare(script=script)
            except ApplicationError as exc:
                output = exc.details.get("output", "")
                self.message_user(request, f"{exc.message} {output[-500:]}", messages.ERROR)
            else:
                self.message_user(request, f"{script.logical_path}: environment ready ({python}).")


def register(site: admin.AdminSite) -> None:
    """Put ScriptRunAdmin in place of ScriptAdmin on ``site`` (once)."""
    if site.is_registered(Script) and not isinstance(site._registry[Script], ScriptRunAdmin):
        site.unregister(Script)
    if not site.is_registered(Script):
        site.register(Script, ScriptRunAdmin)

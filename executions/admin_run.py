"""The admin's "Run" page for a script: a form for inputs, handed to execution_start."""

import json
import shlex

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from config.errors import ApplicationError
from scripts import selectors
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
    from executions.services import execution_start

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

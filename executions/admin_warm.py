"""The admin's "Warm templates" page (Runs → Warm templates, and the link on the admin
index's panel): each warm template of this instance with its environment, state, pid,
age, runs served, memory, idle time, preloaded modules and why it failed, and a
"Stop all warm templates" button. Read-only for staff; stopping needs the change
permission on runs (or a superuser). The figures are what the sandboxed templates say
of themselves: the page shows them escaped, as text."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from audit.services import audit_record
from executions.health import duration_text, memory_text, warm_problem, warm_templates
from executions.runner import templates


def may_stop(user) -> bool:
    return user.is_active and (user.is_superuser or user.has_perm("executions.change_execution"))


def warm_view(model_admin, request):
    """GET: the templates. POST: stop them all (they finish their runs in flight; the
    next runs go cold and start new ones), then back to the page with a message."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if request.method == "POST":
        if not may_stop(request.user):
            raise PermissionDenied
        try:
            count = templates.stop_all()
        except OSError as exc:
            messages.error(request, f"Could not stop the warm templates: {exc.strerror or exc}.")
        else:
            audit_record(
                action="warm.stopped", target_type="warm templates", details={"count": count}
            )
            messages.success(
                request,
                f"Stopped {count} warm template(s). The next runs start cold and warm them again."
                if count
                else "No warm template was running.",
            )
        return redirect("admin:executions_warm_templates")
    problem = warm_problem()
    rows = [
        {
            **row,
            "age": duration_text(row["age_seconds"]),
            "idle": duration_text(row["idle_seconds"]),
            "memory": memory_text(row["memory_kb"]),
        }
        for row in warm_templates()
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Warm templates",
        "problem": problem,
        "rows": rows,
        "may_stop": may_stop(request.user),
    }
    return TemplateResponse(request, "admin/executions/warm.html", context)

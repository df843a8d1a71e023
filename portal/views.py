"""The portal's pages: thin views over the apps' selectors and services.

Every page needs a signed-in user (a stranger is sent to the login page); a script or
run the user may not see answers 404, as in the API.
"""

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from config.errors import ApplicationError, NotFoundError
from executions import services as execution_services
from executions.models import Execution
from portal import selectors, services
from portal.forms import EMAIL_FIELD, RunForm
from scripts import selectors as script_selectors
from scripts.models import ScriptParameter
from storage.services import file_open

HISTORY_PAGE_SIZE = 20
INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _visible_or_404(fn, **kwargs):
    try:
        return fn(**kwargs)
    except NotFoundError as exc:
        raise Http404(exc.message)


@login_required
def home(request):
    """The scripts the user may run, by folder, with a search box and their last run."""
    search = request.GET.get("q", "")
    scripts = selectors.runnable_scripts(user=request.user, search=search)
    return render(
        request,
        "portal/home.html",
        {"folders": selectors.scripts_by_folder(scripts), "search": search},
    )


def _run_form(request, script, version, rerun_of: Execution | None = None) -> RunForm:
    takes_args = version.kind == "command" and not script.parameters.exists()
    file_params = set(
        script.parameters.filter(type=ScriptParameter.Type.FILE).values_list("name", flat=True)
    )
    return RunForm(
        request.POST or None,
        request.FILES or None,
        schema=script_selectors.script_version_schema(version=version),
        takes_args=takes_args,
        file_params=file_params if version.kind == "command" else set(),
        initial_inputs=rerun_of.inputs if rerun_of else None,
        initial_args=rerun_of.argv if rerun_of and takes_args else None,
    )


@login_required
def script_detail(request, pk: int):
    """GET: the script and its run form (``?from=<run id>`` fills it with that run's
    inputs). POST: start the run through execution_start and open its page; the
    service's errors are shown beside the fields."""
    script = _visible_or_404(script_selectors.script_get, user=request.user, ref=pk)
    version = script.current_version
    rerun_of = None
    if request.method == "GET" and request.GET.get("from"):
        rerun_of = _visible_or_404(selectors.run_get, user=request.user, pk=request.GET["from"])
    form = _run_form(request, script, version, rerun_of) if version else None
    if request.method == "POST" and form is not None:
        if form.is_valid():
            try:
                execution = services.portal_run_start(
                    user=request.user,
                    script=script,
                    inputs=form.cleaned_data["inputs"],
                    args=form.cleaned_data["args"],
                    uploads=form.cleaned_data["uploads"],
                    email_me=form.cleaned_data[EMAIL_FIELD],
                )
            except ApplicationError as exc:
                details = exc.details if exc.code == "VALIDATION_ERROR" else {}
                form.add_service_errors(exc.message, details if isinstance(details, dict) else {})
            else:
                return redirect("portal:run", pk=execution.pk)
    # A form shown again with its errors answers 200 (a 4xx is a console error).
    return render(
        request,
        "portal/script.html",
        {"script": script, "version": version, "form": form, "rerun_of": rerun_of},
    )


@login_required
def run_detail(request, pk: int):
    """A run: status, progress, log (live through SSE while it runs), result and files."""
    execution = _visible_or_404(selectors.run_get, user=request.user, pk=pk)
    return render(request, "portal/run.html", {"execution": execution})


@login_required
@require_POST
def run_cancel(request, pk: int):
    """Cancel the run (its owner or staff) and go back to its page."""
    execution = _visible_or_404(selectors.run_get, user=request.user, pk=pk)
    try:
        execution_services.execution_cancel(user=request.user, execution=execution)
    except ApplicationError as exc:
        messages.warning(request, exc.message)
    else:
        messages.info(request, "Cancel requested.")
    return redirect("portal:run", pk=execution.pk)


@login_required
@require_POST
def run_rerun(request, pk: int):
    """Start the same script again with the same inputs, files and options."""
    execution = _visible_or_404(selectors.run_get, user=request.user, pk=pk)
    try:
        new = execution_services.execution_rerun(user=request.user, execution=execution)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("portal:run", pk=execution.pk)
    messages.success(request, f"Started again as run #{new.pk}.")
    return redirect("portal:run", pk=new.pk)


@login_required
def run_file(request, pk: int, name: str):
    """Download one of the run's files (``?inline=1`` shows an image in the page)."""
    execution = _visible_or_404(selectors.run_get, user=request.user, pk=pk)
    artifact = selectors.run_artifact_get(execution=execution, name=name)
    if artifact is None:
        raise Http404("The run has no file by that name.")
    stored = artifact.stored_file
    inline = request.GET.get("inline") == "1" and stored.content_type in INLINE_TYPES
    try:
        reader = file_open(stored_file=stored)
    except ApplicationError as exc:
        raise Http404(exc.message)
    return FileResponse(
        reader,
        as_attachment=not inline,
        filename=name.rsplit("/", 1)[-1],
        content_type=stored.content_type,
    )


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@login_required
def history(request):
    """The user's runs, filtered by script, status and dates, 20 a page."""
    filters = {
        "script": request.GET.get("script", ""),
        "status": request.GET.get("status", ""),
        "since": _date(request.GET.get("since")),
        "until": _date(request.GET.get("until")),
        "everyone": request.GET.get("everyone") == "1",
    }
    if filters["status"] not in Execution.Status.values:
        filters["status"] = ""
    runs = selectors.run_history(user=request.user, **filters)
    page = Paginator(runs, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/history.html",
        {
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "statuses": Execution.Status.choices,
            "script_choices": selectors.history_script_choices(user=request.user),
        },
    )

"""Queries of the script library: what a run needs, the tree, one script.

Who sees what is decided in scripts.permissions (hidden things are "not found").
"""

from django.db.models import Q, QuerySet

from accounts.permissions import user_is_active
from config.errors import ApplicationError, NotFoundError
from scripts import parameters as params
from scripts import permissions
from scripts.hooks import run_count
from scripts.inspection.requirements import merge_requirements
from scripts.models import Script, ScriptParameter, ScriptVersion


def _script_find(*, user, ref: int | str, related: tuple[str, ...]) -> Script:
    """The script with id or logical path ``ref`` if ``user`` may see it, with the
    ``related`` rows loaded; else NotFoundError (404). One query for the script, then
    the folder rule of scripts.permissions on that script alone: no query for a
    top-level script or for staff, one over the folder's ancestors otherwise."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        lookup = Q(pk=int(ref))
        if isinstance(ref, str):
            lookup |= Q(logical_path=ref)
    else:
        path = str(ref).strip("/")
        lookup = Q(logical_path=path)
        if not path.endswith(".py"):  # "samples/hello" names samples/hello.py
            lookup |= Q(logical_path=f"{path}.py")
    if user_is_active(user):
        # At most two rows (an id and a path, or a path with and without ".py"): the
        # lowest id the user may see wins, ordered here rather than in SQL.
        rows = Script.objects.select_related(*related).filter(lookup).order_by()
        for script in sorted(rows, key=lambda row: row.pk):
            if permissions.script_can_run(user=user, script=script):
                return script
    raise NotFoundError(f"No script {ref!r}.", {"script": ref})


def script_get(*, user, ref: int | str) -> Script:
    """The script with id or logical path ``ref`` if ``user`` may see it, with its
    folder, current version and owner; else NotFoundError (404). A query for the
    script, and one for its folder's access unless it is at the top level."""
    return _script_find(user=user, ref=ref, related=("folder", "current_version", "owner"))


def script_get_for_run(*, user, ref: int | str) -> Script:
    """The script to run: ``ref`` is an id or a logical path ("samples/hello.py").
    NotFoundError (404) when missing or hidden from ``user``; SCRIPT_DISABLED (409)
    when disabled; SCRIPT_HAS_NO_VERSION (409) without a version. Folder and
    current_version are loaded (not the owner: a run does not need it)."""
    script = _script_find(user=user, ref=ref, related=("folder", "current_version"))
    if not script.enabled:
        raise ApplicationError(
            "SCRIPT_DISABLED",
            f"{script.logical_path} is disabled.",
            {"script": script.pk},
            status=409,
        )
    if script.current_version_id is None:
        raise ApplicationError(
            "SCRIPT_HAS_NO_VERSION",
            f"{script.logical_path} has no uploaded source.",
            {"script": script.pk},
            status=409,
        )
    return script


def _current_parameters(version: ScriptVersion) -> list[ScriptParameter]:
    return list(ScriptParameter.objects.filter(script_id=version.script_id))


def script_version_schema(*, version: ScriptVersion) -> dict:
    """The JSON Schema of a run's inputs: the version's inferred schema for function
    scripts; for command scripts, built from the script's CURRENT declared parameters."""
    if version.kind == ScriptVersion.Kind.FUNCTION:
        return version.input_schema or {"type": "object"}
    return params.parameters_schema(_current_parameters(version))


def script_version_argv(*, version: ScriptVersion, inputs: dict) -> list[str]:
    """argv for a command script from validated inputs ([] for function scripts)."""
    if version.kind != ScriptVersion.Kind.COMMAND:
        return []
    return params.parameters_argv(_current_parameters(version), inputs or {})


def script_version_requirements(*, version: ScriptVersion) -> list[str]:
    """The version's requirements then the script's extra_requirements, de-duplicated by
    distribution name (first form kept), specifiers kept."""
    extra = version.script.extra_requirements or []
    return merge_requirements(list(version.requirements or []), list(extra))


def script_version_secrets(*, version: ScriptVersion) -> list[str]:
    """The secret names the version declares (``# Secrets: A, B``), read by the
    inspector from its source."""
    from scripts.inspection.secrets import declared_secrets

    return declared_secrets(version.source)[0]


def script_version_imports(*, version: ScriptVersion) -> tuple[str, ...]:
    """The top-level modules the version imports (what a warm template preloads),
    read by the inspector from its source."""
    from scripts.inspection.imports import imported_modules

    return imported_modules(version.source, filename=version.script.name)


def script_versions(*, script: Script) -> QuerySet[ScriptVersion]:
    """The script's versions, newest first, with the uploader loaded (source deferred)."""
    return (
        ScriptVersion.objects.filter(script=script)
        .select_related("uploaded_by")
        .defer("source")
        .order_by("-number")
    )


def script_version_get(*, script: Script, number: int | None = None) -> ScriptVersion:
    """Version ``number`` of ``script`` (its current one when None); NotFoundError."""
    if number is None:
        version = script.current_version
    else:
        version = ScriptVersion.objects.filter(script=script, number=number).first()
    if version is None:
        raise NotFoundError(
            f"{script.logical_path} has no version {number or ''}".strip() + ".",
            {"version": number},
        )
    return version


def script_run_count(*, script) -> int:
    """How many runs a script (or a queryset of scripts) has on record (counted by the
    app that keeps runs, through scripts.hooks; 0 when none is installed)."""
    return run_count(script)


def library_tree(*, user) -> dict:
    """The visible hierarchy: ``{"folders": [folder...], "scripts": [script...]}`` where
        each folder is ``{id, name, path, children, scripts}`` and each script
        ``{id, name, display_name, logical_path, enabled, kind, version}`` (root-level
        scripts at the top). Two queries whatever the size (folders with the user's access,
    scripts); assembled in Python."""
    if not user_is_active(user):
        return {"folders": [], "scripts": []}
    nodes = {
        row["id"]: {
            "id": row["id"],
            "name": row["name"],
            "path": row["path"],
            "parent": row["parent_id"],
            "children": [],
            "scripts": [],
        }
        for row, _ in permissions.folders_with_access(user=user)
    }
    top: dict = {"folders": [], "scripts": []}
    for node in nodes.values():  # by depth, then path: parents come before children
        parent = nodes.get(node["parent"])
        (parent["children"] if parent else top["folders"]).append(node)
    scripts = Script.objects.order_by("logical_path").values(
        "id",
        "name",
        "display_name",
        "logical_path",
        "enabled",
        "folder_id",
        "current_version__number",
        "current_version__kind",
    )
    for s in scripts:
        folder_id = s["folder_id"]
        if folder_id is not None and folder_id not in nodes:
            continue  # hidden
        item = {
            "id": s["id"],
            "name": s["name"],
            "display_name": s["display_name"],
            "logical_path": s["logical_path"],
            "enabled": s["enabled"],
            "kind": s["current_version__kind"],
            "version": s["current_version__number"],
        }
        (nodes[folder_id]["scripts"] if folder_id is not None else top["scripts"]).append(item)
    return top

"""Queries of the script library: who sees what, what a run needs, the tree.

Visibility: staff see everything; inactive or anonymous users see nothing; everyone
else sees folders (and the scripts in them) unless the folder or one of its ancestors
is restricted to groups the user belongs to none of. Hidden things are "not found".
"""

from django.db.models import Exists, OuterRef, Q, QuerySet

from config.errors import ApplicationError, NotFoundError
from scripts import parameters as params
from scripts.inspection.requirements import merge_requirements
from scripts.models import Folder, Script, ScriptParameter, ScriptVersion

_FolderGroups = Folder.allowed_groups.through


def _is_active(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _forbidden_folders(user) -> list[tuple[int, str]]:
    """(id, path) of restricted folders the user is in none of the groups of."""
    restricted = Exists(_FolderGroups.objects.filter(folder_id=OuterRef("pk")))
    allowed = Exists(_FolderGroups.objects.filter(folder_id=OuterRef("pk"), group__user=user))
    return list(Folder.objects.filter(restricted).exclude(allowed).values_list("id", "path"))


def hidden_folder_ids(*, user) -> set[int] | None:
    """ids of folders hidden from ``user`` (a restricted folder and all below it);
    None means "everything is hidden" (inactive or anonymous users)."""
    if not _is_active(user):
        return None
    if user.is_staff:
        return set()
    forbidden = _forbidden_folders(user)
    if not forbidden:
        return set()
    below = Q()
    for _, path in forbidden:
        below |= Q(path__startswith=path + "/")
    hidden = {pk for pk, _ in forbidden}
    prefixes = tuple(path + "/" for _, path in forbidden)
    # startswith may be case-insensitive (SQLite LIKE): check again exactly in Python.
    for pk, path in Folder.objects.filter(below).values_list("id", "path"):
        if path.startswith(prefixes):
            hidden.add(pk)
    return hidden


def folders_visible_to(*, user) -> QuerySet[Folder]:
    """Folders ``user`` may see."""
    hidden = hidden_folder_ids(user=user)
    if hidden is None:
        return Folder.objects.none()
    return Folder.objects.exclude(pk__in=hidden) if hidden else Folder.objects.all()


def scripts_visible_to(*, user) -> QuerySet[Script]:
    """Scripts ``user`` may see and run (the folders' allowed_groups rule; staff see
    all; inactive users nothing). Disabled scripts are included (they are visible)."""
    hidden = hidden_folder_ids(user=user)
    if hidden is None:
        return Script.objects.none()
    return Script.objects.exclude(folder_id__in=hidden) if hidden else Script.objects.all()


def user_can_edit_script(*, user, script: Script) -> bool:
    """Staff and the script's owner (active users only) may change or delete it."""
    if not _is_active(user):
        return False
    return bool(user.is_staff or (script.owner_id is not None and script.owner_id == user.pk))


def user_can_edit_folder(*, user, folder: Folder) -> bool:
    """Staff and the folder's owner (active users only) may rename, move or delete it."""
    if not _is_active(user):
        return False
    return bool(user.is_staff or (folder.owner_id is not None and folder.owner_id == user.pk))


def script_get(*, user, ref: int | str) -> Script:
    """The script with id or logical path ``ref`` if ``user`` may see it; else
    NotFoundError (404)."""
    queryset = scripts_visible_to(user=user).select_related("folder", "current_version", "owner")
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        lookup = Q(pk=int(ref))
        if isinstance(ref, str):
            lookup |= Q(logical_path=ref)
    else:
        path = str(ref).strip("/")
        lookup = Q(logical_path=path)
        if not path.endswith(".py"):  # "samples/hello" names samples/hello.py
            lookup |= Q(logical_path=f"{path}.py")
    script = queryset.filter(lookup).order_by("pk").first()
    if script is None:
        raise NotFoundError(f"No script {ref!r}.", {"script": ref})
    return script


def script_get_for_run(*, user, ref: int | str) -> Script:
    """The script to run: ``ref`` is an id or a logical path ("samples/hello.py").
    NotFoundError (404) when missing or hidden from ``user``; SCRIPT_DISABLED (409)
    when disabled; SCRIPT_HAS_NO_VERSION (409) without a version. Folder and
    current_version are loaded."""
    script = script_get(user=user, ref=ref)
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
    """How many runs a script (or a queryset of scripts) has on record."""
    from executions.models import Execution

    if isinstance(script, Script):
        return Execution.objects.filter(script=script).count()
    return Execution.objects.filter(script__in=script).count()


def library_tree(*, user) -> dict:
    """The visible hierarchy: ``{"folders": [folder...], "scripts": [script...]}`` where
    each folder is ``{id, name, path, children, scripts}`` and each script
    ``{id, name, display_name, logical_path, enabled, kind, version}`` (root-level
    scripts at the top). Three queries whatever the size; assembled in Python."""
    if not _is_active(user):
        return {"folders": [], "scripts": []}
    forbidden = [] if user.is_staff else _forbidden_folders(user)
    rows = list(Folder.objects.order_by("path").values("id", "name", "path", "parent_id"))
    prefixes = tuple(path + "/" for _, path in forbidden)
    hidden = {pk for pk, _ in forbidden}
    if prefixes:
        hidden |= {r["id"] for r in rows if r["path"].startswith(prefixes)}
    nodes = {
        r["id"]: {
            "id": r["id"],
            "name": r["name"],
            "path": r["path"],
            "parent": r["parent_id"],
            "children": [],
            "scripts": [],
        }
        for r in rows
        if r["id"] not in hidden
    }
    top: dict = {"folders": [], "scripts": []}
    for node in nodes.values():  # ordered by path: parents come before children
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

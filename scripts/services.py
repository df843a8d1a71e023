"""Every write of the script library: uploads and versions, script metadata, folders.

Logical paths (``folder/sub/name.py``) and folder paths are kept here: they are
recomputed whenever a folder is renamed or moved, or a script renamed or moved.
"""

import hashlib

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from config.errors import ApplicationError, ConflictError, NotFoundError, PermissionDeniedError
from scripts import selectors
from scripts.hooks import version_guards_run
from scripts.inspection import inspect_source
from scripts.inspection.requirements import requirement_name
from scripts.models import ExampleResult, Folder, Script, ScriptExample, ScriptVersion

_UNSET = object()
EDITABLE_SCRIPT_FIELDS = (
    "name",
    "folder",
    "display_name",
    "description",
    "enabled",
    "output_kind",
    "timeout_seconds",
    "memory_mb",
    "network_allowed",
    "extra_requirements",
)


def _invalid(field: str, message: str, code: str = "VALIDATION_ERROR", status: int = 400):
    return ApplicationError(code, message, {field: [message]}, status=status)


def _require_active(user) -> None:
    if not selectors._is_active(user):
        raise PermissionDeniedError("Only active users may change the script library.")


def _require_visible_folder(user, folder: Folder | None) -> None:
    if (
        folder is not None
        and not selectors.folders_visible_to(user=user).filter(pk=folder.pk).exists()
    ):
        raise NotFoundError(f"No folder {folder.pk}.", {"folder": folder.pk})


def _logical_path(folder: Folder | None, name: str) -> str:
    return f"{folder.path}/{name}" if folder is not None else name


def validate_file_name(file_name: str) -> str:
    """A bare ``*.py`` file name, or SCRIPT_NOT_PYTHON / VALIDATION_ERROR (400)."""
    name = (file_name or "").strip()
    if not name.endswith(".py"):
        raise _invalid("file", f"{name or 'The file'} is not a .py file.", "SCRIPT_NOT_PYTHON")
    bad = any(c in name for c in "/\\\x00") or name.startswith(".") or len(name) > 255
    if bad or name == ".py":
        raise _invalid("file", f"{name!r} is not a valid script file name.")
    return name


def _decode(content: bytes, name: str) -> str:
    limit = settings.SCRIPT_MAX_UPLOAD_BYTES
    if len(content) > limit:
        raise ApplicationError(
            "SCRIPT_TOO_LARGE",
            f"{name} is larger than the limit of {limit} bytes.",
            {"file": [f"At most {limit} bytes."], "limit": limit},
            status=413,
        )
    if not content.strip():
        raise _invalid("file", f"{name} is empty.", "SCRIPT_EMPTY")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApplicationError(
            "SCRIPT_NOT_UTF8",
            f"{name} is not UTF-8 (invalid byte at offset {exc.start}).",
            {"file": ["The file must be UTF-8 text."], "offset": exc.start},
        ) from None


def _new_version(*, script: Script, user, source: str, sha256: str, size: int, inspection):
    number = (script.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = ScriptVersion.objects.create(
        script=script,
        number=number,
        source=source,
        sha256=sha256,
        size=size,
        uploaded_by=user,
        kind=inspection.kind,
        call_style=inspection.call_style,
        input_schema=inspection.input_schema,
        requirements=inspection.requirements,
    )
    script.current_version = version
    script.save(update_fields=["current_version", "updated_at"])
    version.is_new = True  # tells callers something was added
    return version


def script_upload(
    *,
    user,
    file_name: str,
    content: bytes,
    folder: Folder | None,
    display_name: str = "",
    description: str = "",
    replace: bool = False,
    force: bool = False,
) -> ScriptVersion:
    """Upload a script's source. Checks, in order: an active user, a visible folder
    (404), a ``.py`` name (SCRIPT_NOT_PYTHON), the size limit (SCRIPT_TOO_LARGE, 413),
    UTF-8 (SCRIPT_NOT_UTF8), that it parses (SCRIPT_SYNTAX_ERROR with line and column).
    A new name creates the Script (owner = user) and version 1. An existing name needs
    ``replace=True`` (else 409 SCRIPT_EXISTS_REPLACE_REQUIRED) and edit rights (403);
    it adds version N+1 and makes it current, unless the bytes equal the current
    version's: then nothing is added and the current version is returned. Nothing is
    written when any check fails. The returned version's ``is_new`` says whether it was
    added by this call, and its ``warnings`` what inspection noticed.

    A new version of a script that carries examples runs them first (in the sandbox,
    before anything is written): one that fails refuses the version with 409
    EXAMPLE_FAILED naming it, unless ``force``; either way the outcomes are kept with
    the version (``example_results``)."""
    _require_active(user)
    _require_visible_folder(user, folder)
    name = validate_file_name(file_name)
    source = _decode(content, name)
    inspection = inspect_source(source, filename=name)
    sha256 = hashlib.sha256(content).hexdigest()
    outcomes = _examples_check(
        user=user, folder=folder, name=name, source=source, sha256=sha256,
        inspection=inspection, replace=replace, force=force,
    )  # fmt: skip
    exists = ConflictError(
        "SCRIPT_EXISTS_REPLACE_REQUIRED",
        f"{_logical_path(folder, name)} exists; send replace=true to add a new version.",
        {"logical_path": _logical_path(folder, name)},
    )
    try:
        with transaction.atomic():
            script = (
                Script.objects.select_for_update(of=("self",))
                .select_related("current_version")
                .filter(folder=folder, name=name)
                .first()
            )
            if script is None:
                script = Script.objects.create(
                    folder=folder,
                    name=name,
                    logical_path=_logical_path(folder, name),
                    display_name=display_name or name.removesuffix(".py"),
                    description=description or inspection.description,
                    owner=user,
                )
            else:
                if not replace:
                    raise exists
                if not selectors.user_can_edit_script(user=user, script=script):
                    raise PermissionDeniedError("Only the owner or staff may replace this script.")
                changed = {"display_name": display_name, "description": description}
                changed = {k: v for k, v in changed.items() if v}
                if changed:
                    Script.objects.filter(pk=script.pk).update(**changed)
                current = script.current_version
                if current is not None and current.sha256 == sha256:
                    current.is_new = False
                    current.warnings = inspection.warnings
                    return current
            version = _new_version(
                script=script,
                user=user,
                source=source,
                sha256=sha256,
                size=len(content),
                inspection=inspection,
            )
            _record_example_outcomes(version=version, outcomes=outcomes)
            version.warnings = inspection.warnings
            return version
    except IntegrityError:  # a concurrent upload of the same name won
        raise exists from None


def _examples_check(*, user, folder, name, source, sha256, inspection, replace, force):
    """The example outcomes for a new version of an existing script with examples
    ([] when there is nothing to check). Raises 409 EXAMPLE_FAILED when one fails and
    the upload is not forced. Runs before any lock is taken or row written: examples
    may take seconds."""
    script = (
        Script.objects.select_related("current_version").filter(folder=folder, name=name).first()
    )
    if script is None or not replace:
        return []
    if script.current_version is not None and script.current_version.sha256 == sha256:
        return []
    examples = list(script.examples.all())
    if not examples or not selectors.user_can_edit_script(user=user, script=script):
        return []  # (no rights: the upload itself answers 403)
    outcomes = version_guards_run(
        script=script, source=source, filename=name, inspection=inspection, examples=examples
    )
    failed = [o for o in outcomes if not o.passed]
    if failed and not force:
        first = failed[0]
        raise ConflictError(
            "EXAMPLE_FAILED",
            f"The new version fails the example {first.name!r}: {first.detail[:300]} "
            "(send force=true to accept it anyway).",
            {
                "example": first.name,
                "expected": first.expected,
                "got": first.got,
                "failed": [o.name for o in failed],
            },
        )
    return outcomes


def _record_example_outcomes(*, version: ScriptVersion, outcomes) -> None:
    by_name = {e.name: e for e in version.script.examples.all()} if outcomes else {}
    ExampleResult.objects.bulk_create(
        ExampleResult(
            version=version,
            example=by_name.get(o.name),
            example_name=o.name,
            passed=o.passed,
            detail=o.detail[:5000],
        )
        for o in outcomes
    )


def example_create(
    *, user, script: Script, name: str, inputs=None, args=None, expected_result=None,
    expected_exit_code=None,
) -> ScriptExample:  # fmt: skip
    """Add an example to ``script`` (owner or staff). It must expect a result (function
    scripts) or an exit code; names are unique per script (409 EXAMPLE_EXISTS)."""
    if not selectors.user_can_edit_script(user=user, script=script):
        raise PermissionDeniedError("Only the owner or staff may change this script.")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise _invalid("name", "A name of 1 to 100 characters.")
    if inputs is not None and not isinstance(inputs, dict):
        raise _invalid("inputs", "An object (the run's data).")
    if args is not None and not (
        isinstance(args, list) and all(isinstance(a, str) and "\x00" not in a for a in args)
    ):
        raise _invalid("args", "A list of strings (the command line).")
    if expected_exit_code is not None and (
        not isinstance(expected_exit_code, int) or not -255 <= expected_exit_code <= 255
    ):
        raise _invalid("expected_exit_code", "An integer from -255 to 255.")
    if expected_result is None and expected_exit_code is None:
        raise _invalid("expected_result", "Give an expected result or an expected exit code.")
    try:
        with transaction.atomic():
            return ScriptExample.objects.create(
                script=script,
                name=name.strip(),
                inputs=inputs or {},
                args=args or [],
                expected_result=expected_result,
                expected_exit_code=expected_exit_code,
            )
    except IntegrityError:
        raise ConflictError("EXAMPLE_EXISTS", f"The script has an example named {name}.") from None


def example_delete(*, user, example: ScriptExample) -> None:
    """Remove an example (owner or staff of its script)."""
    if not selectors.user_can_edit_script(user=user, script=example.script):
        raise PermissionDeniedError("Only the owner or staff may change this script.")
    example.delete()


def _check_script_name_free(folder: Folder | None, name: str, exclude_pk: int) -> None:
    taken = Script.objects.filter(folder=folder, name=name).exclude(pk=exclude_pk).exists()
    if taken:
        path = _logical_path(folder, name)
        raise ConflictError("SCRIPT_EXISTS", f"{path} exists.", {"logical_path": path})


def script_update(*, user, script: Script, **fields) -> Script:
    """Change a script's metadata (owner or staff, else 403). Accepts the fields in
    EDITABLE_SCRIPT_FIELDS; a new ``name`` or ``folder`` recomputes the logical path
    (409 SCRIPT_EXISTS when taken); extra_requirements must be requirement strings."""
    if not selectors.user_can_edit_script(user=user, script=script):
        raise PermissionDeniedError("Only the owner or staff may change this script.")
    unknown = set(fields) - set(EDITABLE_SCRIPT_FIELDS)
    if unknown:
        raise _invalid(sorted(unknown)[0], f"Cannot change {', '.join(sorted(unknown))}.")
    if "name" in fields:
        fields["name"] = validate_file_name(fields["name"])
    if "folder" in fields:
        _require_visible_folder(user, fields["folder"])
    if "extra_requirements" in fields:
        extra = fields["extra_requirements"] or []
        if not isinstance(extra, list) or not all(
            isinstance(r, str) and requirement_name(r) for r in extra
        ):
            raise _invalid("extra_requirements", "A list of requirements like 'requests>=2'.")
        fields["extra_requirements"] = [" ".join(r.split()) for r in extra]
    for limit in ("timeout_seconds", "memory_mb"):
        if fields.get(limit) is not None and fields[limit] <= 0:
            raise _invalid(limit, "Must be a positive number (or null for the default).")
    if "output_kind" in fields and fields["output_kind"] not in Script.OutputKind.values:
        raise _invalid("output_kind", f"One of {', '.join(Script.OutputKind.values)}.")
    with transaction.atomic():
        for key, value in fields.items():
            setattr(script, key, value)
        if {"name", "folder"} & set(fields):
            _check_script_name_free(script.folder, script.name, script.pk)
            script.logical_path = _logical_path(script.folder, script.name)
        try:
            with transaction.atomic():
                script.save()
        except IntegrityError:
            raise ConflictError("SCRIPT_EXISTS", f"{script.logical_path} exists.") from None
    return script


def script_delete(*, user, script: Script) -> int:
    """Delete a script and its versions (owner or staff, else 403). Its runs are kept
    (they lose the link); returns how many runs were kept."""
    if not selectors.user_can_edit_script(user=user, script=script):
        raise PermissionDeniedError("Only the owner or staff may delete this script.")
    runs = selectors.script_run_count(script=script)
    script.delete()
    return runs


# --- Folders --------------------------------------------------------------------------


def _clean_folder_name(name: str) -> str:
    name = (name or "").strip()
    if not name or "/" in name or "\\" in name or len(name) > 100 or name in (".", ".."):
        raise _invalid("name", "A folder name: 1-100 characters, no slashes.")
    return name


def _check_folder_name_free(parent: Folder | None, name: str, exclude_pk=None) -> None:
    if Folder.objects.filter(parent=parent, name=name).exclude(pk=exclude_pk).exists():
        path = f"{parent.path}/{name}" if parent else name
        raise ConflictError("FOLDER_EXISTS", f"The folder {path} exists.", {"path": path})


def folder_create(*, user, name: str, parent: Folder | None = None) -> Folder:
    """Create a folder (any active user, in a folder they can see). 409 FOLDER_EXISTS
    when a sibling has the name."""
    _require_active(user)
    _require_visible_folder(user, parent)
    name = _clean_folder_name(name)
    _check_folder_name_free(parent, name)
    path = f"{parent.path}/{name}" if parent else name
    try:
        with transaction.atomic():
            return Folder.objects.create(name=name, parent=parent, path=path, owner=user)
    except IntegrityError:
        raise ConflictError("FOLDER_EXISTS", f"The folder {path} exists.") from None


def _subtree(folder: Folder) -> list[Folder]:
    """The folder's descendants (not itself)."""
    candidates = Folder.objects.filter(path__startswith=folder.path + "/")
    return [f for f in candidates if f.path.startswith(folder.path + "/")]


def _recompute_paths(folder: Folder, old_path: str) -> None:
    descendants = _subtree(Folder(path=old_path))
    for child in descendants:
        child.path = folder.path + child.path[len(old_path) :]
    Folder.objects.bulk_update(descendants, ["path"], batch_size=500)
    folder_paths = {f.pk: f.path for f in [folder, *descendants]}
    scripts = list(Script.objects.filter(folder_id__in=folder_paths).only("pk", "name", "folder"))
    for script in scripts:
        script.logical_path = f"{folder_paths[script.folder_id]}/{script.name}"
    Script.objects.bulk_update(scripts, ["logical_path"], batch_size=500)


def folder_update(*, user, folder: Folder, name: str | None = None, parent=_UNSET) -> Folder:
    """Rename and/or move a folder (owner or staff, else 403). Moving into itself or
    below itself is FOLDER_CYCLE (400); a taken name is 409 FOLDER_EXISTS. The paths of
    everything below and the logical paths of its scripts are recomputed."""
    if not selectors.user_can_edit_folder(user=user, folder=folder):
        raise PermissionDeniedError("Only the owner or staff may change this folder.")
    new_name = _clean_folder_name(name) if name is not None else folder.name
    new_parent = folder.parent if parent is _UNSET else parent
    if new_parent is not None:
        _require_visible_folder(user, new_parent)
        if new_parent.pk == folder.pk or new_parent.path.startswith(folder.path + "/"):
            raise _invalid("parent", "A folder cannot move into itself.", "FOLDER_CYCLE")
    if new_name == folder.name and getattr(new_parent, "pk", None) == folder.parent_id:
        return folder
    _check_folder_name_free(new_parent, new_name, exclude_pk=folder.pk)
    old_path = folder.path
    with transaction.atomic():
        folder.name, folder.parent = new_name, new_parent
        folder.path = f"{new_parent.path}/{new_name}" if new_parent else new_name
        try:
            with transaction.atomic():
                folder.save()
        except IntegrityError:
            raise ConflictError("FOLDER_EXISTS", f"The folder {folder.path} exists.") from None
        _recompute_paths(folder, old_path)
    return folder


def folder_contents(*, folder: Folder) -> dict[str, int]:
    """How much a folder holds: {"folders", "scripts", "runs"} counted over its subtree."""
    ids = [folder.pk, *(f.pk for f in _subtree(folder))]
    scripts = Script.objects.filter(folder_id__in=ids)
    return {
        "folders": len(ids) - 1,
        "scripts": scripts.count(),
        "runs": selectors.script_run_count(script=scripts),
    }


def folder_delete(*, user, folder: Folder, recursive: bool = False) -> dict[str, int]:
    """Delete a folder (owner or staff, else 403). A non-empty folder needs
    ``recursive=True`` (else 409 FOLDER_NOT_EMPTY with the counts); then every script
    inside must be editable by the user (else 403) and everything inside goes. Runs
    are kept. Returns the counts of what was inside."""
    if not selectors.user_can_edit_folder(user=user, folder=folder):
        raise PermissionDeniedError("Only the owner or staff may delete this folder.")
    contents = folder_contents(folder=folder)
    if (contents["folders"] or contents["scripts"]) and not recursive:
        raise ConflictError(
            "FOLDER_NOT_EMPTY",
            f"{folder.path} holds {contents['folders']} folder(s) and {contents['scripts']} "
            "script(s); send recursive=true to delete everything inside.",
            contents,
        )
    if not user.is_staff:
        ids = [folder.pk, *(f.pk for f in _subtree(folder))]
        foreign = Script.objects.filter(folder_id__in=ids).exclude(owner=user)
        foreign_folders = Folder.objects.filter(pk__in=ids).exclude(Q(owner=user))
        if foreign.exists() or foreign_folders.exists():
            raise PermissionDeniedError(
                "The folder holds scripts or folders of other users; only staff may delete it."
            )
    with transaction.atomic():
        folder.delete()
    return contents

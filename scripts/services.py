"""Every write of the script library: uploads and versions, script metadata, folders.

Logical paths (``folder/sub/name.py``) and folder paths are kept here: they are
recomputed whenever a folder is renamed or moved, or a script renamed or moved.
"""

import hashlib

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import Max

from accounts.permissions import user_is_active, user_is_staff
from config.errors import ApplicationError, ConflictError, NotFoundError, PermissionDeniedError
from scripts import permissions, selectors
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
    if not user_is_active(user):
        raise PermissionDeniedError("Only active users may change the script library.")


def _folder_access(user, folder: Folder | None, field: str = "folder"):
    """``user``'s access to ``folder`` (None: the top level); NotFoundError (404) when
    they may not even see it."""
    access = permissions.folder_access(user=user, folder=folder)
    if not access.read:
        raise NotFoundError(f"No folder {folder.pk}.", {field: folder.pk})
    return access


def _no_write(folder: Folder, field: str = "folder") -> PermissionDeniedError:
    message = f"You may not write into {folder.path}."
    return PermissionDeniedError(message, {field: [message]})


def _require_writable_folder(user, folder: Folder | None, field: str = "folder") -> None:
    """``folder`` (None: the top level) must be one ``user`` may write into: a folder
    they cannot see is 404, one they may only read is 403."""
    if not _folder_access(user, folder, field).write:
        raise _no_write(folder, field)


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
    """Upload a script's source. Checks, in order: an active user, a folder they may
    see (404), a ``.py`` name (SCRIPT_NOT_PYTHON), the size limit (SCRIPT_TOO_LARGE, 413),
    UTF-8 (SCRIPT_NOT_UTF8), that it parses (SCRIPT_SYNTAX_ERROR with line and column).
    A new name needs write permission on the folder (403) and creates the Script
    (owner = user) and version 1. An existing name needs ``replace=True`` (else 409
    SCRIPT_EXISTS_REPLACE_REQUIRED) and edit rights (scripts.permissions; 403);
    it adds version N+1 and makes it current, unless the bytes equal the current
    version's: then nothing is added and the current version is returned. Nothing is
    written when any check fails. The returned version's ``is_new`` says whether it was
    added by this call, and its ``warnings`` what inspection noticed.

    A new version of a script that carries examples runs them first (in the sandbox,
    before anything is written): one that fails refuses the version with 409
    EXAMPLE_FAILED naming it, unless ``force``; either way the outcomes are kept with
    the version (``example_results``)."""
    _require_active(user)
    access = _folder_access(user, folder)
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
                if not access.write:
                    raise _no_write(folder)
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
                if not permissions.script_can_edit(user=user, script=script):
                    raise PermissionDeniedError("You may not change this script.")
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
    if not examples or not permissions.script_can_edit(user=user, script=script):
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
    """Add an example to ``script`` (those who may edit it). It must expect a result (function
    scripts) or an exit code; names are unique per script (409 EXAMPLE_EXISTS)."""
    if not permissions.script_can_edit(user=user, script=script):
        raise PermissionDeniedError("You may not change this script.")
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
    """Remove an example (those who may edit its script)."""
    if not permissions.script_can_edit(user=user, script=example.script):
        raise PermissionDeniedError("You may not change this script.")
    example.delete()


def _check_script_name_free(folder: Folder | None, name: str, exclude_pk: int) -> None:
    taken = Script.objects.filter(folder=folder, name=name).exclude(pk=exclude_pk).exists()
    if taken:
        path = _logical_path(folder, name)
        raise ConflictError("SCRIPT_EXISTS", f"{path} exists.", {"logical_path": path})


def script_update(*, user, script: Script, **fields) -> Script:
    """Change a script's metadata (scripts.permissions.script_can_edit, else 403); a
    move needs write permission on the target folder (403; 404 when hidden). Accepts the fields in
    EDITABLE_SCRIPT_FIELDS; a new ``name`` or ``folder`` recomputes the logical path
    (409 SCRIPT_EXISTS when taken); extra_requirements must be requirement strings."""
    if not permissions.script_can_edit(user=user, script=script):
        raise PermissionDeniedError("You may not change this script.")
    unknown = set(fields) - set(EDITABLE_SCRIPT_FIELDS)
    if unknown:
        raise _invalid(sorted(unknown)[0], f"Cannot change {', '.join(sorted(unknown))}.")
    if "name" in fields:
        fields["name"] = validate_file_name(fields["name"])
    if "folder" in fields:
        if fields["folder"] != script.folder:  # moving a script into a folder writes it
            _require_writable_folder(user, fields["folder"])
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
    """Delete a script and its versions (scripts.permissions.script_can_edit, else
    403). Its runs are kept (they lose the link); returns how many runs were kept."""
    if not permissions.script_can_edit(user=user, script=script):
        raise PermissionDeniedError("You may not delete this script.")
    runs = selectors.script_run_count(script=script)
    script.delete()
    return runs


def script_owner_set(*, user, script: Script, owner) -> Script:
    """Hand ``script`` to ``owner`` (an active user, or None: nobody). Staff, or the
    current owner handing it on (403 otherwise); VALIDATION_ERROR for an inactive new
    owner, or for None asked by a non-staff user."""
    is_owner = script.owner_id is not None and script.owner_id == getattr(user, "pk", None)
    if not (user_is_staff(user) or (is_owner and user_is_active(user))):
        raise PermissionDeniedError("Only the script's owner or staff may hand it on.")
    if owner is None and not user_is_staff(user):
        raise _invalid("owner", "Only staff may leave a script without owner.")
    if owner is not None and not owner.is_active:
        raise _invalid("owner", f"{owner} is not an active user.")
    Script.objects.filter(pk=script.pk).update(owner=owner)
    script.owner = owner
    return script


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
    """Create a folder owned by ``user``: at the top level (any active user; private to
    them until shared) or in a folder they may write into (403; 404 when hidden), where
    it inherits the parent's permissions. 409 FOLDER_EXISTS when a sibling has the name."""
    _require_active(user)
    _require_writable_folder(user, parent, "parent")
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
    """Rename and/or move a folder: needs write permission on it (403) and, for a move,
    on the folder it leaves and the one it goes into (403; 404 when hidden). Moving into
    itself or below itself is FOLDER_CYCLE (400); a taken name is 409 FOLDER_EXISTS. The
    paths of everything below and the logical paths of its scripts are recomputed."""
    if not permissions.folder_can_write(user=user, folder=folder):
        raise PermissionDeniedError(f"You may not change {folder.path}.")
    new_name = _clean_folder_name(name) if name is not None else folder.name
    new_parent = folder.parent if parent is _UNSET else parent
    if getattr(new_parent, "pk", None) != folder.parent_id:
        _require_writable_folder(user, folder.parent, "parent")
        _require_writable_folder(user, new_parent, "parent")
    if new_parent is not None:
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


def _groups_named(names, field: str) -> list[Group]:
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise _invalid(field, "A list of group names.")
    wanted = set(names)
    groups = list(Group.objects.filter(name__in=wanted))
    unknown = sorted(wanted - {g.name for g in groups})
    if unknown:
        message = f"No such group: {', '.join(unknown)}."
        raise ApplicationError("VALIDATION_ERROR", message, {field: [message]})
    return groups


def folder_share(
    *,
    user,
    folder: Folder,
    read_groups: list[str] | None = None,
    write_groups: list[str] | None = None,
    public: bool | None = None,
    inherit_permissions: bool | None = None,
) -> Folder:
    """Say who may use ``folder`` (the rules: scripts.permissions). Only its owner, the
    owner of a folder above it, or staff (403 otherwise). ``read_groups`` and
    ``write_groups`` are group names (400 VALIDATION_ERROR naming the unknown ones) and
    replace the current ones; None leaves a setting as it is. Setting groups or
    ``public`` on a subfolder stops it inheriting its parent's, unless
    ``inherit_permissions`` is given."""
    if not permissions.folder_can_share(user=user, folder=folder):
        raise PermissionDeniedError(f"Only the owner of {folder.path} or staff may share it.")
    readers = None if read_groups is None else _groups_named(read_groups, "read_groups")
    writers = None if write_groups is None else _groups_named(write_groups, "write_groups")
    if public is not None and not isinstance(public, bool):
        raise _invalid("public", "true or false.")
    if inherit_permissions is not None and not isinstance(inherit_permissions, bool):
        raise _invalid("inherit_permissions", "true or false.")
    if inherit_permissions is None and (readers, writers, public) != (None, None, None):
        inherit_permissions = False if folder.parent_id is not None else None
    with transaction.atomic():
        fields = {"public": public, "inherit_permissions": inherit_permissions}
        fields = {key: value for key, value in fields.items() if value is not None}
        for key, value in fields.items():
            setattr(folder, key, value)
        if fields:
            folder.save(update_fields=[*fields, "updated_at"])
        if readers is not None:
            folder.read_groups.set(readers)
        if writers is not None:
            folder.write_groups.set(writers)
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
    """Delete a folder: needs write permission on it (403). A non-empty folder needs
    ``recursive=True`` (else 409 FOLDER_NOT_EMPTY with the counts); then the user must
    be able to write into every folder inside too (else 403) and everything inside goes.
    Runs are kept. Returns the counts of what was inside."""
    if not permissions.folder_can_write(user=user, folder=folder):
        raise PermissionDeniedError(f"You may not delete {folder.path}.")
    contents = folder_contents(folder=folder)
    if (contents["folders"] or contents["scripts"]) and not recursive:
        raise ConflictError(
            "FOLDER_NOT_EMPTY",
            f"{folder.path} holds {contents['folders']} folder(s) and {contents['scripts']} "
            "script(s); send recursive=true to delete everything inside.",
            contents,
        )
    if not user_is_staff(user) and contents["folders"]:
        writable = permissions.folders_writable_by(user=user)
        inside = [f.pk for f in _subtree(folder)]
        if writable.filter(pk__in=inside).count() != len(inside):
            raise PermissionDeniedError(
                f"{folder.path} holds folders you may not write into; only their owners "
                "or staff may delete it."
            )
    with transaction.atomic():
        folder.delete()
    return contents

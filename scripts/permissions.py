"""Who may do what in the script library: the one home of the folder permission rules.
Selectors, services, the admin, the API, the portal and the runs all ask here.

A folder has an ``owner`` and says who else may use it:

- ``read_groups``: may see the folder and the scripts inside, and run them;
- ``write_groups``: may also write into it: create subfolders, upload scripts or move
  scripts into it, change the scripts inside, rename, move or delete it;
- ``public``: every active user may read it;
- ``inherit_permissions`` (the default): a subfolder takes its parent's effective
  groups and ``public`` instead of its own (a top-level folder always uses its own).

Whatever the groups say:

- inactive and anonymous users may do nothing and see nothing;
- staff (and superusers) may do everything;
- the owner of a folder, or of any folder above it, may read, write and share it;
- sharing (``read_groups``, ``write_groups``, ``public``, ``inherit_permissions``) is
  for that owner chain and staff only; group members may not re-share.

So a new folder of an ordinary user is private to them until shared, and a subfolder
created in a shared folder is shared like it.

The top level (``folder=None``) is the common shelf: every active user may see and run
the top-level scripts, add a top-level script and create a top-level folder (which is
private to them). A script is read/run by whoever may read its folder; it is changed
(metadata, new versions, examples, deletion) by staff, by its owner while they may
still read its folder, and by the writers of its folder.

Effective permissions are computed from one query over the folder rows (with two
``EXISTS`` for the user's group memberships), in Python; one folder's check reads only
its ancestors.
"""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.permissions import user_is_active, user_is_staff
from scripts.models import Folder, Script

_ReadRows = Folder.read_groups.through
_WriteRows = Folder.write_groups.through


@dataclass(frozen=True)
class FolderAccess:
    """What one user may do with one folder."""

    read: bool = False
    write: bool = False
    share: bool = False


NO_ACCESS = FolderAccess()
FULL_ACCESS = FolderAccess(read=True, write=True, share=True)


def _rows(user, folders: QuerySet[Folder]) -> list[dict]:
    """The rows the computation needs, parents before children: by depth (database
    collations may not sort a path before its extensions), then by path."""
    rows = list(
        folders.order_by("path")
        .annotate(
            in_read=Exists(_ReadRows.objects.filter(folder_id=OuterRef("pk"), group__user=user)),
            in_write=Exists(_WriteRows.objects.filter(folder_id=OuterRef("pk"), group__user=user)),
        )
        .values(
            "id",
            "name",
            "parent_id",
            "path",
            "owner_id",
            "inherit_permissions",
            "public",
            "in_read",
            "in_write",
        )  # fmt: skip
    )
    rows.sort(key=lambda row: row["path"].count("/"))
    return rows


def _compute(user, rows: list[dict]) -> dict[int, FolderAccess]:
    """FolderAccess per folder id. ``rows`` must hold every ancestor of every folder
    in it, parents first."""
    state: dict[int, tuple[bool, bool, bool]] = {}  # id -> (owned, group_read, group_write)
    for row in rows:
        parent = state.get(row["parent_id"]) if row["parent_id"] is not None else None
        owned = row["owner_id"] == user.pk or bool(parent and parent[0])
        if parent is not None and row["inherit_permissions"]:
            group_read, group_write = parent[1], parent[2]
        else:
            group_write = bool(row["in_write"])
            group_read = bool(row["public"] or row["in_read"] or group_write)
        state[row["id"]] = (owned, group_read, group_write)
    return {
        pk: FolderAccess(read=owned or read, write=owned or write, share=owned)
        for pk, (owned, read, write) in state.items()
    }


def folder_access_map(*, user) -> dict[int, FolderAccess] | None:
    """FolderAccess of ``user`` for every folder (one query). None means "full access
    to every folder" (staff, no query); inactive users get an empty map (no access)."""
    if user_is_staff(user):
        return None
    if not user_is_active(user):
        return {}
    return _compute(user, _rows(user, Folder.objects.all()))


def folders_with_access(*, user) -> list[tuple[dict, FolderAccess]]:
    """Every folder ``user`` may read, as ``({id, name, path, parent_id, ...}, access)``,
    parents first, in one query (the tree is built from it)."""
    if not user_is_active(user):
        return []
    if user_is_staff(user):
        rows = Folder.objects.order_by("path").values("id", "name", "parent_id", "path")
        return sorted(
            ((row, FULL_ACCESS) for row in rows), key=lambda pair: pair[0]["path"].count("/")
        )
    rows = _rows(user, Folder.objects.all())
    access = _compute(user, rows)
    return [(row, access[row["id"]]) for row in rows if access[row["id"]].read]


def folder_access(*, user, folder: Folder | None) -> FolderAccess:
    """What ``user`` may do with ``folder`` (None: the top level, which every active
    user may read and write but nobody shares). One query over its ancestors."""
    if not user_is_active(user):
        return NO_ACCESS
    if user_is_staff(user):
        return FULL_ACCESS
    if folder is None:
        return FolderAccess(read=True, write=True, share=False)
    parts = folder.path.split("/")
    paths = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    access = _compute(user, _rows(user, Folder.objects.filter(path__in=paths)))
    return access.get(folder.pk, NO_ACCESS)


def folder_can_read(*, user, folder: Folder | None) -> bool:
    """May ``user`` see ``folder`` and run the scripts inside?"""
    return folder_access(user=user, folder=folder).read


def folder_can_write(*, user, folder: Folder | None) -> bool:
    """May ``user`` write into ``folder`` (create subfolders, upload or move scripts
    into it, change its scripts, rename, move or delete it)? None: the top level."""
    return folder_access(user=user, folder=folder).write


def folder_can_share(*, user, folder: Folder) -> bool:
    """May ``user`` change who may use ``folder`` (owner chain and staff only)?"""
    return folder is not None and folder_access(user=user, folder=folder).share


def _ids_filter(field: str, access: dict[int, FolderAccess], wanted) -> Q:
    """``field`` in the folders whose access passes ``wanted``, written with the
    shorter of the two id lists."""
    yes = [pk for pk, a in access.items() if wanted(a)]
    no = [pk for pk, a in access.items() if not wanted(a)]
    if len(no) < len(yes):
        return ~Q(**{f"{field}__in": no})
    return Q(**{f"{field}__in": yes})


def folders_readable_by(*, user, access_map=False) -> QuerySet[Folder]:
    """The folders ``user`` may see (staff: all; inactive or anonymous: none). A caller
    holding ``access_map`` (folder_access_map of the same user) passes it on."""
    access = folder_access_map(user=user) if access_map is False else access_map
    if access is None:
        return Folder.objects.all()
    if not access:
        return Folder.objects.none()
    return Folder.objects.filter(_ids_filter("pk", access, lambda a: a.read))


def folders_writable_by(*, user) -> QuerySet[Folder]:
    """The folders ``user`` may write into (staff: all; inactive or anonymous: none)."""
    access = folder_access_map(user=user)
    if access is None:
        return Folder.objects.all()
    if not access:
        return Folder.objects.none()
    return Folder.objects.filter(_ids_filter("pk", access, lambda a: a.write))


def scripts_runnable_by(*, user, access_map=False) -> QuerySet[Script]:
    """The scripts ``user`` may see and run: the top-level ones and those in folders
    they may read (staff: all; inactive or anonymous: none). Disabled scripts are
    included (they are visible; starting a run refuses them). A caller holding
    ``access_map`` (folder_access_map of the same user) passes it on."""
    access = folder_access_map(user=user) if access_map is False else access_map
    if access is None:
        return Script.objects.all()
    if not user_is_active(user):
        return Script.objects.none()
    return Script.objects.filter(
        Q(folder__isnull=True) | _ids_filter("folder_id", access, lambda a: a.read)
    )


def script_can_run(*, user, script: Script) -> bool:
    """May ``user`` see and run ``script`` (may they read its folder)?"""
    if script.folder_id is None:
        return user_is_active(user)
    return folder_can_read(user=user, folder=script.folder)


def script_can_edit(*, user, script: Script, access_map=False) -> bool:
    """May ``user`` change ``script`` (metadata, new versions, examples, delete)? Staff;
    its owner while they may read its folder; the writers of its folder. A list may
    pass ``access_map`` (from folder_access_map) to spare a query per script."""
    if not user_is_active(user):
        return False
    if user_is_staff(user):
        return True
    owner = script.owner_id is not None and script.owner_id == user.pk
    if script.folder_id is None:
        return owner
    if access_map is False or access_map is None:
        access = folder_access(user=user, folder=script.folder)
    else:
        access = access_map.get(script.folder_id, NO_ACCESS)
    return access.write or (owner and access.read)

"""The folder permission matrix, through the API: per role x action, the status (and
what happened). The rules live in scripts.permissions; this pins them from outside.

Alice (an ordinary user) owns the folder "alice", shared with the group "readers"
(read) and "writers" (write); it holds her script "alice/job.py". Every signed-in
role also owns a top-level script of their own (to move into the folder).
"""

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from scripts import permissions, services
from scripts.models import Folder, Script
from tests.helpers import assert_error

JOB = b"def main(n: int = 1):\n    return {'n': n}\n"
ROLES = ["anonymous", "inactive", "owner", "other", "reader", "writer", "staff", "superuser"]


def _client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def world(make_user):
    """Alice's shared folder and one user per role."""
    readers = Group.objects.create(name="readers")
    writers = Group.objects.create(name="writers")
    users = {
        "owner": make_user(username="alice"),
        "other": make_user(username="bob"),
        "reader": make_user(username="rita"),
        "writer": make_user(username="walt"),
        "staff": make_user(username="stan", is_staff=True),
        "superuser": make_user(username="root", is_staff=True, is_superuser=True),
        "inactive": make_user(username="ghost"),
    }
    users["reader"].groups.add(readers)
    users["writer"].groups.add(writers)
    alice = users["owner"]
    folder = services.folder_create(user=alice, name="alice")
    services.folder_share(user=alice, folder=folder, read_groups=["readers"])
    services.folder_share(user=alice, folder=folder, write_groups=["writers"])
    job = services.script_upload(user=alice, file_name="job.py", content=JOB, folder=folder)
    own = {}
    for role, user in users.items():
        own[role] = services.script_upload(
            user=user, file_name=f"{user.username}.py", content=JOB, folder=None
        ).script
    users["inactive"].is_active = False
    users["inactive"].save()
    users["anonymous"] = None
    return {"users": users, "folder": folder, "job": job.script, "own": own}


def _see(client, w, role):
    return client.get(f"/api/v1/folders/{w['folder'].pk}/")


def _list(client, w, role):
    return client.get(f"/api/v1/scripts/?folder={w['folder'].pk}")


def _run(client, w, role):
    return client.post("/api/v1/executions/", {"script": w["job"].pk, "data": {}}, format="json")


def _upload(client, w, role):
    upload = SimpleUploadedFile("new.py", JOB, content_type="text/x-python")
    return client.post(
        "/api/v1/scripts/", {"file": upload, "folder": w["folder"].pk}, format="multipart"
    )


def _subfolder(client, w, role):
    body = {"name": "sub", "parent": w["folder"].pk}
    return client.post("/api/v1/folders/", body, format="json")


def _move_in(client, w, role):
    own = w["own"].get(role) or w["own"]["owner"]
    return client.patch(f"/api/v1/scripts/{own.pk}/", {"folder": w["folder"].pk}, format="json")


def _rename(client, w, role):
    return client.patch(f"/api/v1/folders/{w['folder'].pk}/", {"name": "renamed"}, format="json")


def _delete(client, w, role):
    return client.delete(f"/api/v1/folders/{w['folder'].pk}/?recursive=true")


def _share(client, w, role):
    body = {"read_groups": ["readers", "writers"]}
    return client.patch(f"/api/v1/folders/{w['folder'].pk}/", body, format="json")


ACTIONS = {
    "see folder": _see,
    "list its scripts": _list,
    "run a script": _run,
    "upload into it": _upload,
    "create a subfolder": _subfolder,
    "move a script into it": _move_in,
    "rename it": _rename,
    "delete it": _delete,
    "share it": _share,
}

# role -> action -> expected HTTP status. A folder one may not see is "not found" (404;
# 400 VALIDATION_ERROR when it is named in a request body); one may see but not write
# into is 403. Inactive users cannot sign in (their token is refused: 401).
MATRIX = {
    #            see  list run  upl  sub  move ren  del  share
    "anonymous": [401, 401, 401, 401, 401, 401, 401, 401, 401],
    "inactive": [401, 401, 401, 401, 401, 401, 401, 401, 401],
    "owner": [200, 200, 202, 201, 201, 200, 200, 204, 200],
    "other": [404, 200, 404, 400, 400, 400, 404, 404, 404],
    "reader": [200, 200, 202, 403, 403, 403, 403, 403, 403],
    "writer": [200, 200, 202, 201, 201, 200, 200, 204, 403],
    "staff": [200, 200, 202, 201, 201, 200, 200, 204, 200],
    "superuser": [200, 200, 202, 201, 201, 200, 200, 204, 200],
}
# How many scripts "list its scripts" shows.
LISTED = {"other": 0, "owner": 1, "reader": 1, "writer": 1, "staff": 1, "superuser": 1}


def test_matrix_covers_every_role_and_action():
    assert list(MATRIX) == ROLES
    assert all(len(row) == len(ACTIONS) for row in MATRIX.values())


@pytest.mark.django_db
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(world, role, action):
    expected = MATRIX[role][list(ACTIONS).index(action)]
    folder = world["folder"]
    before = (Folder.objects.count(), Script.objects.filter(folder=folder).count())
    response = ACTIONS[action](_client(world["users"][role]), world, role)
    assert response.status_code == expected, (role, action, response.content[:300])
    if expected >= 400:
        assert_error(response, expected)
        # refused: nothing changed
        folder.refresh_from_db()
        assert folder.name == "alice"
        assert (Folder.objects.count(), Script.objects.filter(folder=folder).count()) == before
        assert sorted(g.name for g in folder.read_groups.all()) == ["readers"]
    if action == "list its scripts" and expected == 200:
        assert response.json()["count"] == LISTED[role]


@pytest.mark.django_db
class TestTheAttacksSeen:
    """An ordinary user and another user's own (unshared) folder."""

    def test_no_folder_inside_anothers_folder_and_no_script_moved_into_it(
        self, user, other_user, client_for
    ):
        private = services.folder_create(user=user, name="mine")
        bob = client_for(other_user)
        theirs = services.script_upload(
            user=other_user, file_name="b.py", content=JOB, folder=None
        ).script
        assert_error(bob.post("/api/v1/folders/", {"name": "x", "parent": private.pk}), 400)
        assert_error(bob.patch(f"/api/v1/scripts/{theirs.pk}/", {"folder": private.pk}), 400)
        assert not Folder.objects.filter(parent=private).exists()
        assert Script.objects.get(pk=theirs.pk).folder_id is None

    def test_no_reading_or_running_in_anothers_folder(self, user, other_user, client_for):
        private = services.folder_create(user=user, name="mine")
        script = services.script_upload(
            user=user, file_name="a.py", content=JOB, folder=private
        ).script
        bob = client_for(other_user)
        assert_error(bob.get(f"/api/v1/folders/{private.pk}/"), 404)
        assert_error(bob.get(f"/api/v1/scripts/{script.pk}/content/"), 404)
        assert_error(bob.post("/api/v1/executions/", {"script": script.pk}, format="json"), 404)
        assert_error(bob.post("/api/v1/run/mine/a.py", {"data": {}}, format="json"), 404)
        assert bob.get("/api/v1/scripts/").json()["count"] == 0
        assert bob.get("/api/v1/tree/").json() == {"folders": [], "scripts": []}


@pytest.mark.django_db
class TestRules:
    def test_a_new_folder_of_an_ordinary_user_is_private_until_shared(
        self, user, other_user, client_for, api
    ):
        created = api.post("/api/v1/folders/", {"name": "mine"}, format="json").json()
        assert created["public"] is False and created["read_groups"] == []
        assert created["can_share"] is True
        bob = client_for(other_user)
        assert_error(bob.get(f"/api/v1/folders/{created['id']}/"), 404)
        shared = api.patch(f"/api/v1/folders/{created['id']}/", {"public": True}, format="json")
        assert shared.status_code == 200 and shared.json()["public"] is True
        seen = bob.get(f"/api/v1/folders/{created['id']}/").json()
        assert seen["can_read"] and not seen["can_write"] and not seen["can_share"]

    def test_unknown_group_names_are_400_and_change_nothing(self, api, user, folder):
        Group.objects.create(name="known")
        url = f"/api/v1/folders/{folder.pk}/"
        error = assert_error(
            api.patch(url, {"name": "x", "write_groups": ["known", "nope"]}, format="json"), 400
        )
        assert "write_groups" in error["details"] and "nope" in error["message"]
        folder.refresh_from_db()
        assert folder.name == "reports" and not folder.write_groups.exists()
        assert_error(api.patch(url, {"read_groups": "known"}, format="json"), 400)

    def test_subfolders_inherit_unless_they_set_their_own(self, user, make_user):
        readers = Group.objects.create(name="readers")
        rita = make_user(username="rita")
        rita.groups.add(readers)
        top = services.folder_create(user=user, name="top")
        sub = services.folder_create(user=user, name="sub", parent=top)
        deep = services.folder_create(user=user, name="deep", parent=sub)
        assert not permissions.folder_can_read(user=rita, folder=deep)
        services.folder_share(user=user, folder=top, read_groups=["readers"])
        assert permissions.folder_can_read(user=rita, folder=deep)  # through two levels
        assert not permissions.folder_can_write(user=rita, folder=deep)
        services.folder_share(user=user, folder=sub, read_groups=[])  # its own: nobody
        sub.refresh_from_db()
        assert sub.inherit_permissions is False
        assert permissions.folder_can_read(user=rita, folder=top)
        assert not permissions.folder_can_read(user=rita, folder=sub)
        assert not permissions.folder_can_read(user=rita, folder=deep)  # inherits sub's
        assert set(permissions.folders_readable_by(user=rita)) == {top}
        services.folder_share(user=user, folder=sub, inherit_permissions=True)
        assert set(permissions.folders_readable_by(user=rita)) == {top, sub, deep}

    def test_the_owner_of_a_folder_above_keeps_every_right(self, user, other_user):
        writers = Group.objects.create(name="writers")
        other_user.groups.add(writers)
        top = services.folder_create(user=user, name="top")
        services.folder_share(user=user, folder=top, write_groups=["writers"])
        bobs = services.folder_create(user=other_user, name="bobs", parent=top)
        services.folder_share(user=other_user, folder=bobs, write_groups=[])  # private
        assert permissions.folder_access(user=user, folder=bobs) == permissions.FULL_ACCESS
        # group members may write but not re-share
        assert not permissions.folder_can_share(user=other_user, folder=top)

    def test_top_level_scripts_are_the_common_shelf(self, user, other_user):
        shelf = services.script_upload(user=user, file_name="s.py", content=JOB, folder=None)
        assert permissions.script_can_run(user=other_user, script=shelf.script)
        assert not permissions.script_can_edit(user=other_user, script=shelf.script)
        assert permissions.script_can_edit(user=user, script=shelf.script)

    def test_folder_list_and_tree_stay_constant_in_queries(
        self, api, user, make_user, django_assert_num_queries
    ):
        group = Group.objects.create(name="g")
        user.groups.add(group)
        boss = make_user(username="boss")
        for i in range(3):
            top = services.folder_create(user=boss, name=f"t{i}")
            services.folder_share(user=boss, folder=top, read_groups=["g"])
            services.folder_create(user=boss, name="sub", parent=top)
        # the JWT user + access + count + page + 2 prefetches (read/write groups)
        with django_assert_num_queries(6):
            small = api.get("/api/v1/folders/?page_size=100").json()
        for i in range(3, 30):
            top = services.folder_create(user=boss, name=f"t{i}")
            services.folder_share(user=boss, folder=top, read_groups=["g"])
            services.folder_create(user=boss, name="sub", parent=top)
        with django_assert_num_queries(6):
            big = api.get("/api/v1/folders/?page_size=100").json()
        assert small["count"] == 6 and big["count"] == 60
        assert all(f["can_read"] and not f["can_write"] for f in big["results"])
        with django_assert_num_queries(3):
            tree = api.get("/api/v1/tree/").json()
        assert len(tree["folders"]) == 30 and all(len(f["children"]) == 1 for f in tree["folders"])

"""The scripts API: upload rules, permissions, hidden folders, content, versions, schema,
folders (move, recursive delete) and the tree's constant query count."""

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from scripts import services
from scripts.models import Folder, Script, ScriptVersion
from tests.helpers import assert_error

HELLO = b"def main(name: str = 'world'):\n    return {'greeting': name}\n"


def post_script(client, name="hello.py", content=HELLO, **fields):
    data = {"file": SimpleUploadedFile(name, content, "text/x-python"), **fields}
    return client.post("/api/v1/scripts/", data, format="multipart")


@pytest.mark.django_db
class TestUploadApi:
    def test_upload_then_409_then_replace(self, api, folder):
        response = post_script(api, folder=folder.pk, description="Greets")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["logical_path"] == "reports/hello.py" and body["can_edit"] is True
        assert body["current_version"]["number"] == 1
        assert body["current_version"]["kind"] == "function"
        conflict = post_script(api, folder=folder.pk, content=b"print(2)\n")
        assert_error(conflict, 409, "SCRIPT_EXISTS_REPLACE_REQUIRED")
        replaced = post_script(api, folder=folder.pk, content=b"print(2)\n", replace="true")
        assert replaced.status_code == 201
        assert replaced.json()["current_version"]["number"] == 2
        same = post_script(api, folder=folder.pk, content=b"print(2)\n", replace="true")
        assert same.status_code == 200 and same.json()["current_version"]["number"] == 2
        assert ScriptVersion.objects.count() == 2

    def test_bad_uploads_answer_in_the_error_shape(self, api, settings):
        assert_error(post_script(api, name="a.txt"), 400, "SCRIPT_NOT_PYTHON")
        assert_error(post_script(api, content=b"\xff\xfe"), 400, "SCRIPT_NOT_UTF8")
        error = assert_error(post_script(api, content=b"x = (\n"), 400, "SCRIPT_SYNTAX_ERROR")
        assert error["details"]["line"] == 1
        settings.SCRIPT_MAX_UPLOAD_BYTES = 10
        assert_error(post_script(api), 413, "SCRIPT_TOO_LARGE")
        assert_error(api.post("/api/v1/scripts/", {}, format="multipart"), 400, "VALIDATION_ERROR")
        assert not Script.objects.exists()

    def test_upload_into_hidden_or_missing_folder_is_refused(self, api, secret_folder):
        for folder_id in (secret_folder.pk, 99999):
            error = assert_error(post_script(api, folder=folder_id), 400, "VALIDATION_ERROR")
            assert "folder" in error["details"]

    def test_anonymous_is_401(self, anon_client):
        assert_error(post_script(anon_client), 401, "NOT_AUTHENTICATED")


@pytest.fixture
def script(user, upload, folder):
    return upload(user, "hello.py", HELLO, folder=folder).script


@pytest.mark.django_db
class TestPermissions:
    def test_owner_other_staff(self, script, api, client_for, other_user, staff_api, folder):
        url = f"/api/v1/scripts/{script.pk}/"
        other = client_for(other_user)
        assert_error(other.get(url), 404, "NOT_FOUND")  # alice's folder is private
        api.patch(f"/api/v1/folders/{folder.pk}/", {"public": True}, format="json")
        assert other.get(url).json()["can_edit"] is False
        assert_error(
            other.patch(url, {"description": "x"}, format="json"), 403, "PERMISSION_DENIED"
        )
        assert_error(other.delete(url), 403, "PERMISSION_DENIED")
        owner = api.patch(url, {"description": "mine", "timeout_seconds": 5}, format="json")
        assert owner.status_code == 200 and owner.json()["timeout_seconds"] == 5
        staff = staff_api.patch(url, {"enabled": False}, format="json")
        assert staff.status_code == 200 and staff.json()["enabled"] is False
        assert staff_api.delete(url).status_code == 204
        assert not Script.objects.exists()

    def test_hidden_folder_is_404(
        self, staff_user, other_user, client_for, secret_folder, secret_group, upload
    ):
        hidden = upload(staff_user, "h.py", b"print(1)\n", folder=secret_folder).script
        other = client_for(other_user)
        for suffix in ("", "content/", "versions/", "schema/"):
            assert_error(other.get(f"/api/v1/scripts/{hidden.pk}/{suffix}"), 404, "NOT_FOUND")
        assert_error(other.delete(f"/api/v1/scripts/{hidden.pk}/"), 404, "NOT_FOUND")
        assert_error(other.get(f"/api/v1/folders/{secret_folder.pk}/"), 404, "NOT_FOUND")
        assert other.get("/api/v1/scripts/").json()["count"] == 0
        other_user.groups.add(secret_group)
        assert other.get(f"/api/v1/scripts/{hidden.pk}/").status_code == 200

    def test_patch_validation_and_rename_conflict(self, api, script, upload, user, folder):
        url = f"/api/v1/scripts/{script.pk}/"
        assert_error(
            api.patch(url, {"extra_requirements": ["ok", "not a req!"]}, format="json"),
            400,
            "VALIDATION_ERROR",
        )
        assert_error(api.patch(url, {"memory_mb": 0}, format="json"), 400, "VALIDATION_ERROR")
        upload(user, "other.py", b"print(1)\n", folder=folder)
        assert_error(api.patch(url, {"name": "other.py"}, format="json"), 409, "SCRIPT_EXISTS")
        moved = api.patch(url, {"folder": None, "name": "greet.py"}, format="json")
        assert moved.json()["logical_path"] == "greet.py"


@pytest.mark.django_db
class TestReadEndpoints:
    def test_content_versions_schema(self, api, script, user, upload, folder):
        upload(user, "hello.py", b"import sys\nprint(sys.argv)\n", folder=folder, replace=True)
        base = f"/api/v1/scripts/{script.pk}/"
        current = api.get(base + "content/").json()
        assert current["number"] == 2 and current["source"].startswith("import sys")
        old = api.get(base + "content/?version=1").json()
        assert old["source"] == HELLO.decode()
        assert_error(api.get(base + "content/?version=9"), 404, "NOT_FOUND")
        assert_error(api.get(base + "content/?version=x"), 400, "VALIDATION_ERROR")
        versions = api.get(base + "versions/").json()["results"]
        assert [v["number"] for v in versions] == [2, 1] and "source" not in versions[0]
        schema = api.get(base + "schema/?version=1").json()
        assert schema["kind"] == "function"
        assert schema["input_schema"]["properties"]["name"]["default"] == "world"
        assert api.get(base + "schema/").json()["kind"] == "command"

    def test_list_filters_and_query_count(
        self, api, user, upload, folder, django_assert_max_num_queries
    ):
        for i in range(30):
            upload(
                user,
                f"s{i}.py",
                f"print({i})\n".encode(),
                folder=folder if i % 2 else None,
                description="monthly report" if i == 7 else "",
            )
        with django_assert_max_num_queries(4):
            body = api.get("/api/v1/scripts/?page_size=100").json()
        assert body["count"] == 30
        assert api.get(f"/api/v1/scripts/?folder={folder.pk}").json()["count"] == 15
        assert api.get("/api/v1/scripts/?folder=root").json()["count"] == 15
        found = api.get("/api/v1/scripts/?search=MONTHLY").json()["results"]
        assert [s["name"] for s in found] == ["s7.py"]
        assert_error(api.get("/api/v1/scripts/?folder=abc"), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
class TestFoldersApi:
    def test_create_rename_move_recomputes_paths(self, api, user, upload):
        a = api.post("/api/v1/folders/", {"name": "a"}, format="json").json()
        b = api.post("/api/v1/folders/", {"name": "b", "parent": a["id"]}, format="json").json()
        assert b["path"] == "a/b"
        assert_error(
            api.post("/api/v1/folders/", {"name": "b", "parent": a["id"]}, format="json"),
            409,
            "FOLDER_EXISTS",
        )
        assert_error(api.post("/api/v1/folders/", {"name": "x/y"}, format="json"), 400)
        upload(user, "deep.py", b"print(1)\n", folder=Folder.objects.get(pk=b["id"]))
        api.patch(f"/api/v1/folders/{a['id']}/", {"name": "top"}, format="json")
        assert Script.objects.get().logical_path == "top/b/deep.py"
        target = api.post("/api/v1/folders/", {"name": "other"}, format="json").json()
        moved = api.patch(f"/api/v1/folders/{b['id']}/", {"parent": target["id"]}, format="json")
        assert moved.json()["path"] == "other/b"
        assert Script.objects.get().logical_path == "other/b/deep.py"
        cycle = api.patch(f"/api/v1/folders/{target['id']}/", {"parent": b["id"]}, format="json")
        assert_error(cycle, 400, "FOLDER_CYCLE")

    def test_recursive_delete_rules(self, api, user, upload, client_for, other_user):
        top = services.folder_create(user=user, name="top")
        sub = services.folder_create(user=user, name="sub", parent=top)
        upload(user, "x.py", b"print(1)\n", folder=sub)
        url = f"/api/v1/folders/{top.pk}/"
        assert_error(client_for(other_user).delete(url + "?recursive=true"), 404)  # private
        error = assert_error(api.delete(url), 409, "FOLDER_NOT_EMPTY")
        assert error["details"] == {"folders": 1, "scripts": 1, "runs": 0}
        assert Folder.objects.count() == 2
        assert api.delete(url + "?recursive=true").status_code == 204
        assert not Folder.objects.exists() and not Script.objects.exists()
        empty = services.folder_create(user=user, name="empty")
        assert api.delete(f"/api/v1/folders/{empty.pk}/").status_code == 204

    def test_recursive_delete_refused_over_folders_not_writable(
        self, user, other_user, upload, client_for
    ):
        writers = Group.objects.create(name="writers")
        other_user.groups.add(writers)
        top = services.folder_create(user=user, name="top")
        services.folder_share(user=user, folder=top, write_groups=["writers"])
        upload(other_user, "theirs.py", b"print(1)\n", folder=top)
        mine = services.folder_create(user=user, name="mine", parent=top)
        services.folder_share(user=user, folder=mine, inherit_permissions=False)
        bob = client_for(other_user)
        assert_error(bob.delete(f"/api/v1/folders/{top.pk}/?recursive=true"), 403)
        assert Script.objects.count() == 1 and Folder.objects.count() == 2


def _populate(staff_user, folders: int, scripts: int):
    made = Folder.objects.bulk_create(
        Folder(name=f"f{i}", path=f"f{i}", owner=staff_user, public=True) for i in range(folders)
    )
    Script.objects.bulk_create(
        Script(
            name=f"s{i}.py",
            folder=made[i % folders],
            owner=staff_user,
            logical_path=f"f{i % folders}/s{i}.py",
        )
        for i in range(scripts)
    )


@pytest.mark.django_db
def test_tree_query_count_is_constant(api, staff_user, secret_folder, django_assert_num_queries):
    Script.objects.bulk_create(
        Script(name=f"t{i}.py", folder=secret_folder, logical_path=f"secret/t{i}.py")
        for i in range(10)
    )
    _populate(staff_user, 5, 10)
    # 3 = the JWT user + folders with the user's access + scripts
    with django_assert_num_queries(3):
        small = api.get("/api/v1/tree/").json()
    Folder.objects.filter(name__startswith="f").delete()
    _populate(staff_user, 50, 1000)
    with django_assert_num_queries(3):
        big = api.get("/api/v1/tree/").json()
    assert sum(len(f["scripts"]) for f in small["folders"]) == 10
    assert sum(len(f["scripts"]) for f in big["folders"]) == 1000
    assert "secret" not in {f["name"] for f in big["folders"]}  # hidden from alice


@pytest.mark.django_db
def test_tree_nests_folders_and_root_scripts(api, user, upload):
    a = services.folder_create(user=user, name="a")
    b = services.folder_create(user=user, name="b", parent=a)
    upload(user, "root.py", b"print(1)\n")
    upload(user, "in_b.py", b"def main(x: int): ...\n", folder=b)
    tree = api.get("/api/v1/tree/").json()
    assert [s["name"] for s in tree["scripts"]] == ["root.py"]
    (node_a,) = tree["folders"]
    (node_b,) = node_a["children"]
    assert node_b["path"] == "a/b"
    assert node_b["scripts"][0]["kind"] == "function"
    assert node_b["scripts"][0]["version"] == 1


@pytest.mark.django_db
def test_upload_answer_carries_inspection_warnings(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    source = b"class Foo: ...\ndef main(x: Foo) -> dict:\n    return {}\n"
    upload = SimpleUploadedFile("odd.py", source)
    response = api.post("/api/v1/scripts/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert any("Foo" in w for w in response.json()["warnings"]), response.json()

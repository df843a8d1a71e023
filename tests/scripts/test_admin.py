"""Admin smoke tests: changelists and change pages of folders, scripts and versions load;
upload, replace and delete go through the services."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from model_bakery import baker

from scripts import services
from scripts.models import Folder, Script, ScriptParameter, ScriptVersion

SOURCE = b"# Requirements: requests>=2\ndef main(name: str, n: int = 2):\n    return {}\n"


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def version(superuser, upload):
    parent = services.folder_create(user=superuser, name="tools")
    child = services.folder_create(user=superuser, name="inner", parent=parent)
    version = upload(superuser, "tool.py", SOURCE, folder=child)
    ScriptParameter.objects.create(script=version.script, name="x", flag="--x")
    return version


@pytest.mark.django_db
def test_changelists_and_change_pages_load(admin_client_, version, django_assert_max_num_queries):
    script = version.script
    for model, pk in (
        ("folder", script.folder_id),
        ("script", script.pk),
        ("scriptversion", version.pk),
    ):
        with django_assert_max_num_queries(20):
            page = admin_client_.get(reverse(f"admin:scripts_{model}_changelist"))
        assert page.status_code == 200, model
        change = admin_client_.get(reverse(f"admin:scripts_{model}_change", args=[pk]))
        assert change.status_code == 200, model
    page = admin_client_.get(reverse("admin:scripts_script_change", args=[script.pk]))
    html = page.content.decode()
    assert 'class="py-src"' in html and '<span class="k">def</span>' in html
    assert "requests&gt;=2" in html or "requests>=2" in html
    assert "Function (JSON in, JSON out)" in html
    tree = admin_client_.get(reverse("admin:scripts_folder_changelist")).content.decode()
    assert "\u2003\U0001f4c1 inner" in tree  # nested one level
    assert admin_client_.get(reverse("admin:scripts_script_add")).status_code == 200
    assert admin_client_.get(reverse("admin:scripts_folder_add")).status_code == 200


@pytest.mark.django_db
def test_upload_and_replace_from_the_admin(admin_client_, superuser):
    folder = services.folder_create(user=superuser, name="docs")
    response = admin_client_.post(
        reverse("admin:scripts_script_add"),
        {
            "source_file": SimpleUploadedFile("up.py", b"print(1)\n"),
            "folder": folder.pk,
            "display_name": "Up",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    script = Script.objects.get()
    assert script.logical_path == "docs/up.py" and script.owner == superuser
    bad = admin_client_.post(
        reverse("admin:scripts_script_add"),
        {"source_file": SimpleUploadedFile("bad.py", b"def (:\n"), "folder": folder.pk},
    )
    assert bad.status_code == 200 and b"does not parse" in bad.content
    change_url = reverse("admin:scripts_script_change", args=[script.pk])
    form = {
        "name": "up.py",
        "folder": folder.pk,
        "display_name": "Up",
        "description": "",
        "enabled": "on",
        "output_kind": "text",
        "timeout_seconds": "",
        "memory_mb": "",
        "network_allowed": "unknown",
        "extra_requirements": "[]",
        "owner": superuser.pk,
        "source_file": SimpleUploadedFile("whatever.py", b"print(2)\n"),
        "parameters-TOTAL_FORMS": "0",
        "parameters-INITIAL_FORMS": "0",
        "examples-TOTAL_FORMS": "0",
        "examples-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "1",
        "versions-INITIAL_FORMS": "1",
        "versions-0-id": script.current_version_id,
        "versions-0-script": script.pk,
    }
    response = admin_client_.post(change_url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    script.refresh_from_db()
    assert script.current_version.number == 2
    assert ScriptVersion.objects.get(number=1).source == "print(1)\n"


@pytest.mark.django_db
def test_folder_rename_in_admin_recomputes_paths(admin_client_, version):
    folder = Folder.objects.get(name="tools")
    response = admin_client_.post(
        reverse("admin:scripts_folder_change", args=[folder.pk]),
        {"name": "kit", "parent": "", "inherit_permissions": "on", "read_groups": []},
    )
    assert response.status_code == 302
    assert Script.objects.get().logical_path == "kit/inner/tool.py"
    dup = admin_client_.post(reverse("admin:scripts_folder_add"), {"name": "kit", "parent": ""})
    assert dup.status_code == 200 and b"exists" in dup.content


@pytest.mark.django_db
def test_delete_pages_say_what_goes_and_runs_are_kept(admin_client_, version):
    from executions.models import Execution

    script = version.script
    baker.make(Execution, script=script, script_version=version, script_path="x", _quantity=3)
    page = admin_client_.get(reverse("admin:scripts_script_delete", args=[script.pk]))
    assert b"3 runs of this script" in page.content
    top = Folder.objects.get(name="tools")
    confirm = admin_client_.get(reverse("admin:scripts_folder_delete", args=[top.pk]))
    assert b"inner" in confirm.content and b"tool.py" in confirm.content
    admin_client_.post(reverse("admin:scripts_folder_delete", args=[top.pk]), {"post": "yes"})
    assert not Folder.objects.exists() and not Script.objects.exists()
    assert Execution.objects.filter(script__isnull=True).count() == 3


def _change_form(script, **changes) -> dict:
    form = {
        "name": script.name,
        "folder": script.folder_id or "",
        "display_name": script.display_name,
        "description": script.description,
        "enabled": "on",
        "output_kind": script.output_kind,
        "timeout_seconds": "",
        "memory_mb": "",
        "network_allowed": "unknown",
        "extra_requirements": "[]",
        "owner": script.owner_id or "",
        "parameters-TOTAL_FORMS": "0",
        "parameters-INITIAL_FORMS": "0",
        "examples-TOTAL_FORMS": "0",
        "examples-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }
    form.update(changes)
    return form


@pytest.mark.django_db
def test_owner_change_in_the_admin_goes_through_the_service(
    admin_client_, superuser, user, make_user, upload, monkeypatch
):
    script = upload(superuser, "own.py", b"print(1)\n").script
    calls = []
    real = services.script_owner_set
    monkeypatch.setattr(services, "script_owner_set", lambda **kw: calls.append(kw) or real(**kw))
    url = reverse("admin:scripts_script_change", args=[script.pk])
    response = admin_client_.post(url, _change_form(script, owner=user.pk))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Script.objects.get(pk=script.pk).owner == user and len(calls) == 1
    ghost = make_user(username="ghost", is_active=False)  # the service's rule: active owners
    refused = admin_client_.post(url, _change_form(script, owner=ghost.pk))
    assert refused.status_code == 200 and Script.objects.get(pk=script.pk).owner == user


@pytest.mark.django_db
def test_owner_set_service_rules(user, other_user, staff_user, upload):
    from config.errors import ApplicationError

    script = upload(user, "mine.py", b"print(1)\n").script
    with pytest.raises(ApplicationError) as refused:
        services.script_owner_set(user=other_user, script=script, owner=other_user)
    assert refused.value.status == 403
    services.script_owner_set(user=user, script=script, owner=other_user)  # handing it on
    services.script_owner_set(user=staff_user, script=script, owner=user)
    assert Script.objects.get(pk=script.pk).owner == user


@pytest.mark.django_db
def test_delete_selected_reports_a_refusal_instead_of_a_500(
    admin_client_, superuser, upload, monkeypatch
):
    from config.errors import ApplicationError

    kept = upload(superuser, "kept.py", b"print(1)\n").script
    gone = upload(superuser, "gone.py", b"print(1)\n").script
    real = services.script_delete

    def refuse_kept(*, user, script):
        if script.pk == kept.pk:
            raise ApplicationError("SCRIPT_IN_USE", "kept.py is used by a schedule.", status=409)
        return real(user=user, script=script)

    monkeypatch.setattr(services, "script_delete", refuse_kept)
    page = admin_client_.post(
        reverse("admin:scripts_script_changelist"),
        {"action": "delete_selected", "_selected_action": [kept.pk, gone.pk], "post": "yes"},
        follow=True,
    )
    assert page.status_code == 200 and b"used by a schedule" in page.content
    assert list(Script.objects.values_list("name", flat=True)) == ["kept.py"]


@pytest.mark.django_db
def test_folder_sharing_in_the_admin_goes_through_folder_share(admin_client_, superuser):
    from django.contrib.auth.models import Group

    readers = Group.objects.create(name="readers")
    response = admin_client_.post(
        reverse("admin:scripts_folder_add"),
        {"name": "team", "parent": "", "public": "", "read_groups": [readers.pk]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    folder = Folder.objects.get(name="team")
    assert list(folder.read_groups.all()) == [readers] and folder.owner == superuser

"""Admin: the file list (owner, size, type, run, download), deletion through the service,
pending-deletion retry, and the storage-usage panel on the admin index (one query)."""

import io

import pytest
from django.test import Client
from model_bakery import baker

from storage import backend, services
from storage.hooks import usage_panel
from storage.models import PendingDeletion, StoredFile
from storage.selectors import storage_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def store(data: bytes, **kwargs) -> StoredFile:
    return services.file_store(
        fileobj=io.BytesIO(data), original_name="report.csv", prefix="uploads", **kwargs
    )


def test_changelist(store_fixture_local, admin_client, user, django_assert_max_num_queries):
    run = baker.make("executions.Execution", requested_by=user)
    for i in range(5):
        store(b"x" * i, owner=user, execution=run if i % 2 else None)
    with django_assert_max_num_queries(8):
        response = admin_client.get("/admin/storage/storedfile/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "alice" in page and f"#{run.pk}" in page
    assert "/api/v1/files/uploads/" in page and "download" in page


def test_admin_download_link_works_for_staff(store_fixture_local, admin_client, user):
    stored = store(b"via admin", owner=user)
    response = admin_client.get(f"/api/v1/files/{stored.key}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"via admin"


def test_delete_action_removes_objects(
    store_fixture_local, admin_client, user, django_capture_on_commit_callbacks
):
    files = [store(b"a", owner=user), store(b"b", owner=user)]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/storage/storedfile/",
            {
                "action": "delete_selected",
                "_selected_action": [f.pk for f in files],
                "post": "yes",
            },
        )
    assert response.status_code == 302
    assert not StoredFile.objects.exists()
    assert list(backend.iter_objects()) == []


def test_pending_retry_action(store_fixture_local, admin_client, monkeypatch):
    stored = store(b"x")
    monkeypatch.setattr(backend, "delete_object", lambda key: (_ for _ in ()).throw(OSError()))
    services.pending_deletion_process(key=stored.key)  # row still there: nothing to do
    PendingDeletion.objects.create(key="uploads/never-there.txt")
    services.pending_deletion_process(key="uploads/never-there.txt")
    assert PendingDeletion.objects.get().attempts == 1
    monkeypatch.undo()
    pending = PendingDeletion.objects.get()
    response = admin_client.post(
        "/admin/storage/pendingdeletion/", {"action": "retry", "_selected_action": [pending.pk]}
    )
    assert response.status_code == 302
    assert not PendingDeletion.objects.exists()


def test_usage_totals_in_one_query(
    store_fixture_local, user, rf, superuser, django_assert_num_queries
):
    run = baker.make("executions.Execution", requested_by=user)
    store(b"u" * 100, owner=user)
    store(b"r" * 300, execution=run)
    store(b"r" * 600, execution=run)
    with django_assert_num_queries(1):
        usage = storage_usage()
    assert usage == {
        "files": 3,
        "bytes": 1000,
        "run_files": 2,
        "run_bytes": 900,
        "uploaded_files": 1,
        "uploaded_bytes": 100,
    }
    request = rf.get("/admin/")
    request.user = superuser
    panel = usage_panel(request)
    rows = dict(panel["rows"])
    assert panel["title"] == "File storage"
    assert "2 files" in rows["Produced by runs"] and "(90%)" in rows["Produced by runs"]


def test_panel_on_admin_index(store_fixture_local, admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert "File storage" in response.content.decode()

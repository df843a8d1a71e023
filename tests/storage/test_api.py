"""The files API on local disk and on S3 (moto): round trip, Range, bad keys, limits,
visibility. Bytes are compared exactly; refused uploads leave nothing behind."""

import hashlib
import io
import os

import pytest
from model_bakery import baker

from storage.models import StoredFile
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name="data.bin", prefix=None):
    url = "/api/v1/files/upload" + (f"?prefix={prefix}" if prefix is not None else "")
    fh = io.BytesIO(data)
    fh.name = name
    return client.post(url, {"file": fh}, format="multipart")


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def temp_uploads(settings, tmp_path):
    """Where Django spools uploads: must be empty after every request."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def test_round_trip(store, api, objects, temp_uploads, django_capture_on_commit_callbacks):
    data = os.urandom(2 * 1024 * 1024 + 3)
    response = upload(api, data, name="Résumé final.pdf", prefix="reports/2024")
    assert response.status_code == 201, response.content
    info = response.json()
    key = info["key"]
    assert key.startswith("reports/2024/") and key.endswith(".pdf") and "sum" not in key
    assert info["size"] == len(data) and info["owner"] == "alice"
    assert info["sha256"] == hashlib.sha256(data).hexdigest()

    download = api.get(f"/api/v1/files/{key}")
    assert download.status_code == 200
    assert body(download) == data
    assert download["Content-Length"] == str(len(data))
    assert download["Accept-Ranges"] == "bytes"
    assert download["X-Content-Type-Options"] == "nosniff"
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment;") and "R%C3%A9sum%C3%A9%20final.pdf" in disposition

    meta = api.get(f"/api/v1/files/{key}/info")
    assert meta.status_code == 200
    assert meta.json()["original_name"] == "Résumé final.pdf"
    assert meta.json()["size"] == len(data)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/files/{key}").status_code == 204
    assert_error(api.get(f"/api/v1/files/{key}"), 404, "NOT_FOUND")
    assert objects() == set() and not StoredFile.objects.exists()
    assert list(temp_uploads.iterdir()) == []


def test_default_prefix(store, api):
    response = upload(api, b"hello", name="a.txt")
    assert response.json()["key"].startswith("uploads/")


@pytest.mark.parametrize(
    ("header", "expected_slice", "content_range"),
    [
        ("bytes=0-9", slice(0, 10), "bytes 0-9/1000"),
        ("bytes=990-", slice(990, 1000), "bytes 990-999/1000"),
        ("bytes=-5", slice(995, 1000), "bytes 995-999/1000"),
        ("bytes=500-5000", slice(500, 1000), "bytes 500-999/1000"),
        ("bytes=-5000", slice(0, 1000), "bytes 0-999/1000"),
    ],
)
def test_range_requests(store, api, header, expected_slice, content_range):
    data = bytes(range(250)) * 4
    key = upload(api, data).json()["key"]
    response = api.get(f"/api/v1/files/{key}", HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == content_range
    got = body(response)
    assert got == data[expected_slice]
    assert response["Content-Length"] == str(len(got))


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=2000-3000", "bytes=-0"])
def test_unsatisfiable_range_is_416(store, api, header):
    key = upload(api, b"x" * 1000).json()["key"]
    response = api.get(f"/api/v1/files/{key}", HTTP_RANGE=header)
    assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response["Content-Range"] == "bytes */1000"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=abc", "bytes=5-2"])
def test_unusable_range_serves_everything(store, api, header):
    key = upload(api, b"0123456789").json()["key"]
    response = api.get(f"/api/v1/files/{key}", HTTP_RANGE=header)
    assert response.status_code == 200 and body(response) == b"0123456789"


BAD_PREFIXES = {
    "parent": "../etc",
    "parent inside": "a/../../b",
    "absolute": "/etc",
    "backslash": "a%5Cb",
    "nul": "a%00b",
    "control": "a%0Ab",
    "empty segment": "a//b",
    "over-long": "a" * 600,
}


@pytest.mark.parametrize("prefix", BAD_PREFIXES.values(), ids=BAD_PREFIXES.keys())
def test_bad_prefix_is_refused(store, api, objects, prefix):
    assert_error(upload(api, b"data", prefix=prefix), 400, "INVALID_KEY")
    assert objects() == set() and not StoredFile.objects.exists()


BAD_KEYS = {
    "parent": "../../etc/passwd",
    "encoded parent": "%2e%2e/%2e%2e/etc/passwd",
    "dot": "uploads/./x",
    "backslash": "uploads%5C..%5Cx",
    "nul": "uploads/x%00.txt",
    "control": "uploads/x%07.txt",
    "empty segment": "uploads//x.txt",
    "hidden": "uploads/.x",
    "over-long": "a/" * 300 + "x",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
@pytest.mark.parametrize("suffix", ["", "/info"])
def test_bad_keys_are_refused(store, api, key, suffix):
    assert_error(api.get(f"/api/v1/files/{key}{suffix}"), 400, "INVALID_KEY")


@pytest.mark.parametrize("key", ["../../etc/passwd", "uploads%5C..%5Cx", "uploads//x.txt"])
def test_bad_keys_are_refused_on_delete(store, api, key):
    assert_error(api.delete(f"/api/v1/files/{key}"), 400, "INVALID_KEY")


def test_oversize_upload_is_refused_with_nothing_left(store, api, settings, objects, temp_uploads):
    settings.STORAGE_MAX_UPLOAD_BYTES = 100_000
    response = upload(api, b"z" * 100_001)
    error = assert_error(response, 413, "FILE_TOO_LARGE")
    assert error["details"] == {"max_bytes": 100_000}
    assert objects() == set() and not StoredFile.objects.exists()
    assert list(temp_uploads.iterdir()) == []
    assert upload(api, b"z" * 100_000).status_code == 201


def test_oversize_upload_refused_while_streaming(store, api, settings, objects, temp_uploads):
    """Content-Length is within the slack, so the handler must count the chunks."""
    settings.STORAGE_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    response = upload(api, b"z" * (10 * 1024 * 1024 + 1))
    assert_error(response, 413, "FILE_TOO_LARGE")
    assert objects() == set() and not StoredFile.objects.exists()
    assert list(temp_uploads.iterdir()) == []


def test_quota(store, api, settings):
    settings.STORAGE_USER_QUOTA_BYTES = 10
    assert upload(api, b"1234567890").status_code == 201
    assert_error(upload(api, b"1"), 413, "QUOTA_EXCEEDED")


def test_upload_needs_a_file(store, api):
    error = assert_error(api.post("/api/v1/files/upload", {}, format="multipart"), 400)
    assert "file" in error["details"]


def test_upload_needs_authentication(store, anon_client, objects):
    response = upload(anon_client, b"data")
    assert_error(response, 401)
    assert objects() == set()


def test_other_users_file_is_404(store, api, client_for, other_user, objects):
    key = upload(client_for(other_user), b"secret").json()["key"]
    for response in (
        api.get(f"/api/v1/files/{key}"),
        api.get(f"/api/v1/files/{key}/info"),
        api.delete(f"/api/v1/files/{key}"),
    ):
        assert_error(response, 404, "NOT_FOUND")
    assert objects() == {key}


def test_run_files_visible_to_requester_but_only_owner_or_staff_delete(
    store, api, user, other_user, client_for
):
    from storage import services

    run = baker.make("executions.Execution", requested_by=user)
    stored = services.file_store(
        fileobj=io.BytesIO(b"output"),
        original_name="out.txt",
        prefix=f"executions/{run.pk}",
        execution=run,
    )
    assert body(api.get(f"/api/v1/files/{stored.key}")) == b"output"
    assert_error(api.delete(f"/api/v1/files/{stored.key}"), 403, "PERMISSION_DENIED")
    assert_error(client_for(other_user).get(f"/api/v1/files/{stored.key}"), 404)


def test_staff_reach_every_file(store, api, staff_api, django_capture_on_commit_callbacks):
    key = upload(api, b"mine").json()["key"]
    assert body(staff_api.get(f"/api/v1/files/{key}")) == b"mine"
    assert staff_api.get(f"/api/v1/files/{key}/info").json()["owner"] == "alice"
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_api.delete(f"/api/v1/files/{key}").status_code == 204
    assert not StoredFile.objects.exists()


def test_missing_object_is_404_file_missing(store, api):
    from storage import backend

    key = upload(api, b"data").json()["key"]
    backend.delete_object(key)
    assert_error(api.get(f"/api/v1/files/{key}"), 404, "FILE_MISSING")


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["executions", "executions/12", ".health"])
def test_reserved_prefixes_are_refused_for_uploads(api, prefix):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from storage.models import StoredFile
    from tests.helpers import assert_error

    upload = SimpleUploadedFile("a.txt", b"hello")
    response = api.post(f"/api/v1/files/upload?prefix={prefix}", {"file": upload})
    assert_error(response, 400, "INVALID_KEY")
    assert not StoredFile.objects.exists()


@pytest.mark.django_db
def test_download_error_is_json_when_the_client_asks_for_bytes(api):
    response = api.get("/api/v1/files/uploads/missing.bin", HTTP_ACCEPT="application/octet-stream")
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404)

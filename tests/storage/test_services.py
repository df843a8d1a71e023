"""The contract the runner relies on: file_store / file_open / file_delete /
files_delete_for_execution / file_get_for_user, on local disk and on S3 (moto)."""

import hashlib
import io
import os
import re

import pytest
from django.db import transaction
from model_bakery import baker

from config.errors import ApplicationError
from storage import backend, services
from storage.models import PendingDeletion, StoredFile
from storage.selectors import file_get_for_user

pytestmark = pytest.mark.django_db


def store_bytes(data: bytes, name="report.csv", prefix="uploads", **kwargs) -> StoredFile:
    return services.file_store(
        fileobj=io.BytesIO(data), original_name=name, prefix=prefix, **kwargs
    )


def read_all(stored: StoredFile) -> bytes:
    fh = services.file_open(stored_file=stored)
    try:
        return fh.read()
    finally:
        fh.close()


def test_store_and_open_round_trip(store, user, objects):
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, odd size
    stored = store_bytes(data, name="Data Set.BIN", prefix="uploads/alice/", owner=user)
    assert re.fullmatch(r"uploads/alice/[0-9a-f]{32}\.bin", stored.key)
    assert stored.original_name == "Data Set.BIN"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.owner == user and stored.execution is None
    assert StoredFile.objects.get(pk=stored.pk).key == stored.key
    assert read_all(stored) == data
    assert objects() == {stored.key}


def test_store_reads_from_current_position_and_leaves_file_open(store):
    source = io.BytesIO(b"HEADERpayload")
    source.read(6)
    stored = services.file_store(fileobj=source, original_name="p.txt", prefix="x")
    assert read_all(stored) == b"payload" and not source.closed


def test_empty_file(store):
    stored = store_bytes(b"", name="empty")
    assert stored.size == 0 and read_all(stored) == b""
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert re.fullmatch(r"uploads/[0-9a-f]{32}", stored.key)


def test_open_a_range(store):
    data = bytes(range(256)) * 100
    stored = store_bytes(data)
    fh = services.file_open(stored_file=stored, start=1000, length=300)
    try:
        assert fh.read() == data[1000:1300]
    finally:
        fh.close()


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "image/png"),
        ("report.pdf", b"%PDF-1.7\n", "application/pdf"),
        (
            "sheet.xlsx",
            b"PK\x03\x04" + b"\0" * 50,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        ("archive.bin", b"PK\x03\x04" + b"\0" * 50, "application/zip"),
        ("data.csv", b"a,b\n1,2\n", "text/csv"),
        ("noext", "héllo wörld\n".encode(), "text/plain"),
        ("noext", b"\x00\x01\x02\xff\xfe", "application/octet-stream"),
    ],
)
def test_content_type_from_name_and_first_bytes(store, name, head, expected):
    assert store_bytes(head, name=name).content_type == expected


def test_given_content_type_wins_when_well_formed(store):
    assert store_bytes(
        b"{}", name="x", content_type="Application/JSON; charset=utf-8"
    ).content_type == ("application/json")
    assert store_bytes(b"{}", name="x.txt", content_type="not a type").content_type == "text/plain"


def test_too_large_is_refused_with_nothing_left(store, objects):
    class Source(io.RawIOBase):
        """Counts what was read: the refusal must come before the whole stream is read."""

        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), 64 * 1024)
            buffer[:n] = b"x" * n
            Source.read_bytes += n
            return n  # endless

    with pytest.raises(ApplicationError) as info:
        services.file_store(
            fileobj=Source(), original_name="big.txt", prefix="uploads", max_bytes=2_000_000
        )
    assert info.value.code == "FILE_TOO_LARGE" and info.value.status == 413
    assert Source.read_bytes < 2_000_000 + 10 * 1024 * 1024
    assert StoredFile.objects.count() == 0
    assert objects() == set()


def test_exactly_the_limit_is_accepted(store, settings):
    settings.STORAGE_MAX_UPLOAD_BYTES = 1000
    assert store_bytes(b"y" * 1000).size == 1000
    with pytest.raises(ApplicationError, match="limit of 1000 bytes"):
        store_bytes(b"y" * 1001)


def test_bad_prefix_is_refused_before_reading(store, objects):
    source = io.BytesIO(b"data")
    with pytest.raises(ApplicationError) as info:
        services.file_store(fileobj=source, original_name="a.txt", prefix="../etc")
    assert info.value.code == "INVALID_KEY"
    assert source.tell() == 0 and StoredFile.objects.count() == 0 and objects() == set()


def test_row_that_cannot_be_saved_takes_its_object_away(store, objects, django_user_model):
    unsaved_owner = django_user_model(username="ghost")
    with pytest.raises(ValueError):
        store_bytes(b"data", owner=unsaved_owner)
    assert StoredFile.objects.count() == 0
    assert objects() == set()


def test_quota_counts_uploads_not_run_outputs(store, settings, user):
    settings.STORAGE_USER_QUOTA_BYTES = 100
    store_bytes(b"a" * 60, owner=user)
    with pytest.raises(ApplicationError) as info:
        store_bytes(b"b" * 41, owner=user)
    assert info.value.code == "FILE_TOO_LARGE"
    store_bytes(b"b" * 40, owner=user)
    with pytest.raises(ApplicationError) as info:
        store_bytes(b"c", owner=user)
    assert info.value.code == "QUOTA_EXCEEDED" and info.value.status == 413
    run = baker.make("executions.Execution", requested_by=user)
    assert store_bytes(b"d" * 500, owner=user, execution=run).size == 500


def test_delete_removes_row_then_object(store, objects, django_capture_on_commit_callbacks):
    keep = store_bytes(b"keep")
    stored = store_bytes(b"gone")
    pk = stored.pk
    with django_capture_on_commit_callbacks(execute=True):
        services.file_delete(stored_file=stored)
    assert not StoredFile.objects.filter(pk=pk).exists()
    assert objects() == {keep.key}
    assert PendingDeletion.objects.count() == 0


def test_delete_rolled_back_keeps_row_and_object(store, objects):
    stored = store_bytes(b"stays")
    pk = stored.pk
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.file_delete(stored_file=stored)
            raise RuntimeError("the caller's transaction fails")
    assert PendingDeletion.objects.count() == 0
    assert read_all(StoredFile.objects.get(pk=pk)) == b"stays"


def test_failed_object_delete_is_logged_and_left_for_cleanup(
    store, objects, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    stored = store_bytes(b"stubborn")
    pk = stored.pk

    def refuse(key):
        raise OSError("storage is read-only")

    monkeypatch.setattr(backend, "delete_object", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        services.file_delete(stored_file=stored)
    assert not StoredFile.objects.filter(pk=pk).exists()  # never a row without object
    pending = PendingDeletion.objects.get()
    assert pending.key == stored.key and pending.attempts == 1
    assert "read-only" in pending.last_error
    assert "could not delete object" in caplog.text
    assert objects() == {stored.key}
    monkeypatch.undo()
    assert services.pending_deletion_process(key=stored.key) is True
    assert objects() == set() and PendingDeletion.objects.count() == 0


def test_queryset_delete_also_removes_objects(store, objects, django_capture_on_commit_callbacks):
    for i in range(3):
        store_bytes(b"x" * i)
    with django_capture_on_commit_callbacks(execute=True):
        StoredFile.objects.all().delete()
    assert objects() == set() and PendingDeletion.objects.count() == 0


def test_files_delete_for_execution(store, objects, user, django_capture_on_commit_callbacks):
    run, other_run = baker.make("executions.Execution", requested_by=user, _quantity=2)
    a = store_bytes(b"a", prefix=f"executions/{run.pk}", execution=run)
    b = store_bytes(b"b", prefix=f"executions/{run.pk}", execution=run)
    other = store_bytes(b"c", prefix=f"executions/{other_run.pk}", execution=other_run)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.files_delete_for_execution(execution_id=run.pk) == 2
    assert objects() == {other.key}
    assert not StoredFile.objects.filter(key__in=[a.key, b.key]).exists()
    assert services.files_delete_for_execution(execution_id=run.pk) == 0


def test_deleting_a_run_deletes_its_files(store, objects, user, django_capture_on_commit_callbacks):
    run = baker.make("executions.Execution", requested_by=user)
    store_bytes(b"out", execution=run)
    upload = store_bytes(b"mine", owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        run.delete()
    assert list(StoredFile.objects.all()) == [upload]
    assert objects() == {upload.key}


def test_open_missing_object_is_404(store):
    stored = store_bytes(b"soon gone")
    backend.delete_object(stored.key)
    with pytest.raises(ApplicationError) as info:
        services.file_open(stored_file=stored)
    assert info.value.code == "FILE_MISSING" and info.value.status == 404


def test_visibility(store, user, other_user, staff_user):
    mine = store_bytes(b"1", owner=user)
    theirs = store_bytes(b"2", owner=other_user)
    run = baker.make("executions.Execution", requested_by=user)
    from_my_run = store_bytes(b"3", execution=run)
    assert file_get_for_user(user=user, key=mine.key) == mine
    assert file_get_for_user(user=user, key=from_my_run.key) == from_my_run
    for hidden in (theirs.key, "uploads/doesnotexist.txt"):
        with pytest.raises(ApplicationError) as info:
            file_get_for_user(user=user, key=hidden)
        assert info.value.status == 404 and info.value.code == "NOT_FOUND"
    with pytest.raises(ApplicationError) as info:
        file_get_for_user(user=other_user, key=from_my_run.key)
    assert info.value.status == 404
    for key in (mine.key, theirs.key, from_my_run.key):
        assert file_get_for_user(user=staff_user, key=key).key == key
    with pytest.raises(ApplicationError) as info:
        file_get_for_user(user=user, key="../x")
    assert info.value.code == "INVALID_KEY"

"""storage_cleanup: orphans both ways, pending deletions, retention, dry run; the schedule."""

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from storage import backend, services
from storage.hooks import SCHEDULE_NAME, ensure_cleanup_schedule
from storage.models import PendingDeletion, StoredFile

pytestmark = pytest.mark.django_db


def store_bytes(data=b"data", **kwargs):
    return services.file_store(
        fileobj=io.BytesIO(data), original_name="f.txt", prefix="uploads", **kwargs
    )


def run(*args) -> str:
    out = io.StringIO()
    call_command("storage_cleanup", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def mess(store, monkeypatch, django_capture_on_commit_callbacks):
    """A healthy file, a row without object, an object without row, a failed deletion."""
    healthy = store_bytes(b"healthy")
    lost = store_bytes(b"lost")
    backend.delete_object(lost.key)
    orphan = backend.storage().save("uploads/orphan.txt", ContentFile(b"orphan"))
    stubborn = store_bytes(b"stubborn")
    with monkeypatch.context() as patch:
        patch.setattr(backend, "delete_object", lambda key: (_ for _ in ()).throw(OSError("down")))
        with django_capture_on_commit_callbacks(execute=True):
            services.file_delete(stored_file=stubborn)
    return {"healthy": healthy.key, "lost": lost.key, "orphan": orphan, "stubborn": stubborn.key}


def state(objects):
    return (
        objects(),
        set(StoredFile.objects.values_list("key", flat=True)),
        set(PendingDeletion.objects.values_list("key", flat=True)),
    )


def test_dry_run_changes_nothing(mess, objects):
    before = state(objects)
    assert before[0] == {mess["healthy"], mess["orphan"], mess["stubborn"]}
    output = run("--dry-run", "--grace-seconds", "0", "--older-than-days", "1", "--list")
    assert "1 rows without an object would be deleted" in output
    assert "1 objects without a row would be deleted" in output
    assert "1 pending deletions would be retried" in output
    assert mess["orphan"] in output and "Dry run: nothing was changed." in output
    assert state(objects) == before


def test_cleanup_both_ways_and_pending(mess, objects):
    output = run("--grace-seconds", "0")
    assert "1 rows without an object were deleted" in output
    assert "1 objects without a row were deleted" in output
    assert "1 pending deletions were retried" in output
    assert state(objects) == ({mess["healthy"]}, {mess["healthy"]}, set())
    assert "0 rows" in run("--grace-seconds", "0")  # a second run has nothing to do


def test_fresh_orphans_are_left_alone(mess, objects):
    run()  # default grace: an upload may be writing its object right now
    assert mess["orphan"] in objects()
    assert not StoredFile.objects.filter(key=mess["lost"]).exists()


def test_retention(store, objects, django_capture_on_commit_callbacks):
    old, new = store_bytes(b"old"), store_bytes(b"new")
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    assert "1 files past the retention age would be deleted" in run(
        "--older-than-days", "7", "--dry-run"
    )
    assert objects() == {old.key, new.key}
    with django_capture_on_commit_callbacks(execute=True):
        run("--older-than-days", "7")
    assert objects() == {new.key}
    assert list(StoredFile.objects.values_list("key", flat=True)) == [new.key]


def test_retention_off_by_default(store, settings):
    settings.STORAGE_RETENTION_DAYS = 0
    old = store_bytes()
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=999))
    assert "0 files past the retention age" in run()
    assert StoredFile.objects.filter(pk=old.pk).exists()


def test_still_failing_deletion_is_an_error(mess, monkeypatch):
    monkeypatch.setattr(backend, "delete_object", lambda key: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(CommandError, match="could not be deleted"):
        run()
    assert PendingDeletion.objects.get().attempts == 2


def test_negative_arguments_are_refused(store):
    with pytest.raises(CommandError):
        run("--older-than-days", "-1")


def test_task_returns_counts(store):
    from storage.tasks import storage_cleanup_task

    assert storage_cleanup_task() == {
        "pending_retried": 0,
        "pending_failed": 0,
        "rows_without_object": 0,
        "objects_without_row": 0,
        "expired": 0,
    }


def test_schedule_is_created_once(settings):
    from django_q.models import Schedule

    assert Schedule.objects.filter(name=SCHEDULE_NAME).count() == 1  # by migrate
    settings.STORAGE_CLEANUP_MINUTES = 15
    ensure_cleanup_schedule()
    ensure_cleanup_schedule()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.func == "storage.tasks.storage_cleanup_task" and schedule.minutes == 15
    settings.STORAGE_CLEANUP_MINUTES = 0
    ensure_cleanup_schedule()
    assert not Schedule.objects.filter(name=SCHEDULE_NAME).exists()

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from executions import services
from executions.models import Execution
from storage.models import StoredFile

FILES = "def main(data: dict):\n    open('out.txt', 'w').write('x')\n    return {}\n"


def _finished_run(user, script, *, days_ago: float):
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    services.execution_run(execution_id=execution.pk)
    Execution.objects.filter(pk=execution.pk).update(
        finished_at=timezone.now() - timedelta(days=days_ago)
    )
    return execution


@pytest.mark.django_db
def test_prune_deletes_old_runs_with_their_files_and_keeps_recent_ones(
    user, upload, django_capture_on_commit_callbacks
):
    script = upload(FILES)
    old = _finished_run(user, script, days_ago=40)
    recent = _finished_run(user, script, days_ago=2)
    running = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    Execution.objects.filter(pk=running.pk).update(status="running")
    old_key = old.artifacts.get().stored_file.key
    out = StringIO()
    call_command("prune_runs", "--days", "30", "--dry-run", stdout=out)
    assert "would delete 1 run" in out.getvalue() and Execution.objects.count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        call_command("prune_runs", "--days", "30", stdout=StringIO())
    assert set(Execution.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not StoredFile.objects.filter(key=old_key).exists()
    from django.core.files.storage import default_storage

    assert not default_storage.exists(old_key)


@pytest.mark.django_db
def test_prune_needs_a_positive_age(settings):
    settings.RUN_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="--days"):
        call_command("prune_runs")


@pytest.mark.django_db
def test_retention_task_does_nothing_when_off(settings, user, upload):
    from executions.tasks import prune_old_executions

    script = upload(FILES)
    _finished_run(user, script, days_ago=400)
    settings.RUN_RETENTION_DAYS = 0
    assert prune_old_executions() == 0 and Execution.objects.count() == 1
    settings.RUN_RETENTION_DAYS = 30
    assert prune_old_executions() == 1 and Execution.objects.count() == 0


@pytest.mark.django_db
def test_migrate_leaves_the_reaper_and_retention_schedules():
    from django_q.models import Schedule

    from executions.signals import REAPER_SCHEDULE, RETENTION_SCHEDULE

    names = set(Schedule.objects.values_list("name", flat=True))
    assert {REAPER_SCHEDULE, RETENTION_SCHEDULE} <= names

"""One way for apps to set things up after migrate (issue 14: three styles of
post-migrate setup), and EMAIL_BACKEND defined once."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django_q.models import Schedule

from config.registry import after_migrate_steps

ROOT = Path(settings.BASE_DIR)


def test_no_app_connects_post_migrate_itself():
    """Only config connects post_migrate; apps register steps in config.registry."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("*/**/*.py")
        if ".venv" not in path.parts
        and "tests" not in path.parts
        and path.parts[len(ROOT.parts)] != "config"
        and re.search(r"post_migrate", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_every_app_with_setup_registers_it():
    assert {"audit", "storage", "jobs", "executions", "mailqueue"} <= set(after_migrate_steps)


@pytest.mark.django_db(transaction=True)
def test_migrate_creates_the_apps_schedules_once():
    Schedule.objects.all().delete()
    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)  # idempotent: nothing twice
    names = list(Schedule.objects.values_list("name", flat=True))
    for expected in (
        "executions: mark lost runs",
        "executions: delete runs past RUN_RETENTION_DAYS",
        "audit: delete events past AUDIT_RETENTION_DAYS",
    ):
        assert names.count(expected) == 1, names


def test_email_backend_is_defined_in_one_place():
    settings_dir = ROOT / "config" / "settings"
    defining = [
        p.name
        for p in settings_dir.glob("*.py")
        if p.name != "test.py" and re.search(r"^EMAIL_BACKEND\s*=", p.read_text(), re.M)
    ]
    assert defining == ["mailqueue.py"]

"""Warm templates as operators see them: the "warm_templates" check of /health/, the
admin's panel and page (with "Stop all warm templates") and ``manage.py warm``. Real
templates, real runs (they need what warm runs need: root, ns, cgroups; else skipped)."""

import os
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent
from executions.runner import run_script, templates, warm_up
from executions.runner.environments import ensure_environment, site_packages
from tests.executions.runner.conftest import _use_backend, base_spec

PAGE = "admin:executions_warm_templates"


@pytest.fixture
def warm(settings, tmp_path):
    """Warm runs on (ns backend), in a data dir (so a set of templates) of the test's own;
    every template of it killed at the end."""
    _use_backend(settings, "ns-warm")
    os.chmod(tmp_path, 0o711)
    settings.DATA_DIR = tmp_path
    settings.ENVS_DIR = tmp_path / "envs"
    settings.WORKSPACES_DIR = tmp_path / "workspaces"
    yield tmp_path
    templates.stop_all(now=True)


@pytest.fixture
def ready(warm):
    """The base environment's template, ready, after one warm run: its status row."""
    assert warm_up([]), "the template never got ready"
    spec = base_spec("def main():\n    return {'ok': True}\n")
    with run_script(spec, on_log=lambda _text: None) as outcome:
        assert outcome.status == "succeeded" and outcome.warm
    # the template hears that the run's sandbox ended a moment after the server heard
    # from the run (its PID 1 reports first): it counts the run as running until then
    deadline = time.monotonic() + 5
    while _only()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return _only()


def _only(state="ready"):
    found = [t for t in templates.status() if t["state"] == state]
    assert len(found) == 1, templates.status()
    return found[0]


def _gone(pid, seconds=10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _warm_check(client) -> tuple[int, dict]:
    response = client.get("/health/")
    return response.status_code, response.json()["checks"]["warm_templates"]


# --- /health/ -------------------------------------------------------------------------


@pytest.mark.django_db
def test_health_shows_a_ready_template_with_its_runs_and_memory(client, ready):
    status, check = _warm_check(client)
    assert status == 200
    assert check["ok"] is True and check["enabled"] is True and check["problem"] == ""
    [shown] = check["templates"]
    assert shown["environment"] == ensure_environment([]).parent.parent.name
    assert shown["state"] == "ready"
    assert shown["pid"] == ready["pid"]
    assert shown["runs"] >= 1 and shown["running"] == 0
    assert shown["memory_kb"] > 1000
    assert shown["age_seconds"] >= 0 and shown["idle_seconds"] is not None
    assert shown["preloaded_count"] == len(ready["preloaded"])
    assert "preloaded" not in shown and "key" not in shown  # /health/ is public: kept short


@pytest.mark.django_db
def test_health_says_why_warm_runs_are_off(client, settings):
    settings.RUN_WARM = False
    status, check = _warm_check(client)
    assert check == {
        "ok": True,
        "enabled": False,
        "problem": "off (RUN_WARM=false)",
        "templates": [],
        "ms": check["ms"],
    }
    assert status == 200


@pytest.mark.django_db
def test_a_failed_template_is_shown_and_health_stays_healthy(client, warm, settings):
    python = ensure_environment([])
    env_dir = python.parent.parent
    (site_packages(env_dir)[0] / "scriptorium_chatty.py").write_text("print('hello')\n")
    settings.RUN_WARM_PRELOAD = ["scriptorium_chatty"]
    from executions.runner.run import template_layout
    from executions.runner.support import support_dir

    layout = template_layout(python, env_dir, support_dir(str(settings.DATA_DIR)))
    assert templates.template_for(env_dir=env_dir, python=python, layout=layout) is None
    deadline = time.monotonic() + 30
    while not [t for t in templates.status() if t["state"] == "failed"]:
        assert time.monotonic() < deadline, templates.status()
        time.sleep(0.05)
    status, check = _warm_check(client)
    assert status == 200 and check["ok"] is True and check["enabled"] is True
    [shown] = check["templates"]
    assert shown["state"] == "failed"
    assert "scriptorium_chatty" in shown["reason"] and "prints" in shown["reason"]


# --- the admin ------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_page_and_panel_list_the_template_for_staff(client, staff_user, ready):
    client.force_login(staff_user)
    page = client.get(reverse(PAGE))
    assert page.status_code == 200
    html = page.content.decode()
    assert ready["environment"] in html and ">ready<" in html
    assert str(ready["pid"]) in html
    assert "Stop all warm templates" not in html  # staff without the change permission
    index = client.get(reverse("admin:index")).content.decode()
    assert "Warm templates" in index and ready["environment"][:12] in index
    assert reverse(PAGE) in index


@pytest.mark.django_db
def test_admin_page_is_refused_to_others(client, user, anon_client):
    client.force_login(user)
    for who in (client, anon_client):
        response = who.get(reverse(PAGE))
        assert response.status_code == 302 and "/login/" in response["Location"]
    assert "Warm templates" not in client.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_stop_all_needs_the_change_permission(client, staff_user, ready):
    client.force_login(staff_user)
    assert client.post(reverse(PAGE)).status_code == 403
    assert not _gone(ready["pid"], seconds=0.3)
    assert _only()["pid"] == ready["pid"]


@pytest.mark.django_db
def test_stop_all_button_stops_the_template(client, superuser, ready):
    client.force_login(superuser)
    page = client.get(reverse(PAGE)).content.decode()
    assert "Stop all warm templates" in page and "csrfmiddlewaretoken" in page
    response = client.post(reverse(PAGE), follow=True)
    assert response.status_code == 200
    assert "Stopped 1 warm template(s)" in response.content.decode()
    assert _gone(ready["pid"])
    assert templates.status() == []
    event = AuditEvent.objects.get(action="warm.stopped")
    assert event.actor == superuser and event.details == {"count": 1}


@pytest.mark.django_db
def test_stop_all_refuses_a_post_without_csrf(superuser, ready):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(reverse(PAGE)).status_code == 403
    assert _only()["pid"] == ready["pid"]


# --- manage.py warm -------------------------------------------------------------------


def _warm_command(*args) -> str:
    out = StringIO()
    call_command("warm", *args, stdout=out)
    return out.getvalue()


def test_command_starts_lists_and_stops(warm):
    assert "No warm template is running." in _warm_command()
    assert "is ready" in _warm_command("--start")
    template = _only()
    listing = _warm_command()
    header, line = listing.splitlines()[-2:]
    assert header.split()[:3] == ["ENVIRONMENT", "STATE", "PID"]
    assert line.split()[:3] == [template["environment"], "ready", str(template["pid"])]
    assert _warm_command("--stop") == "Stopped 1 warm template(s).\n"
    assert _gone(template["pid"])
    assert "No warm template is running." in _warm_command()


def test_command_stop_now_kills_at_once(warm):
    assert warm_up([])
    pid = _only()["pid"]
    assert _warm_command("--stop", "--now") == "Killed 1 warm template(s).\n"
    assert _gone(pid, seconds=2)


def test_command_says_why_it_cannot_start(settings):
    settings.RUN_WARM = False
    with pytest.raises(CommandError, match="off \\(RUN_WARM=false\\)"):
        _warm_command("--start")
    assert "No warm runs here: off (RUN_WARM=false)." in _warm_command()
    with pytest.raises(CommandError, match="--now goes with --stop"):
        _warm_command("--now")


def test_command_shows_reported_text_without_control_characters():
    from executions.management.commands.warm import plain

    assert plain("ready\x1b[2J\x1b]0;owned\x07") == "ready?[2J?]0;owned?"
    assert plain(None) == "-"

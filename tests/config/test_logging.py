"""Management commands log for people (readable, WARNING and up); the long-running
processes keep the configured JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from config.logging import build_logging, running_command

ROOT = Path(__file__).resolve().parents[2]


def _renderer(logging_dict):
    return logging_dict["formatters"]["structured"]["processors"][-1]


@pytest.mark.parametrize(
    "argv, command",
    [
        (["manage.py", "worker_ping"], "worker_ping"),
        (["/srv/app/manage.py", "process_mail_queue", "--until-empty"], "process_mail_queue"),
        (["/usr/bin/django-admin", "migrate"], "migrate"),
        (["/venv/bin/gunicorn", "config.wsgi"], None),
        (["/venv/bin/pytest", "tests"], None),
        (["manage.py"], None),
    ],
)
def test_running_command(argv, command):
    assert running_command(argv) == command


def test_commands_log_readable_lines_from_warning():
    config = build_logging(level="INFO", fmt="json", command="process_mail_queue")
    assert isinstance(_renderer(config), structlog.dev.ConsoleRenderer)
    assert config["root"]["level"] == "WARNING"


@pytest.mark.parametrize("command", [None, "runserver", "qcluster", "run_worker"])
def test_servers_and_workers_keep_the_configured_format(command):
    config = build_logging(level="INFO", fmt="json", command=command)
    assert isinstance(_renderer(config), structlog.processors.JSONRenderer)
    assert config["root"]["level"] == "INFO"


def test_a_command_prints_no_json_lines(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATA_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    code = (
        "import logging; log = logging.getLogger('scriptorium.demo'); "
        "log.info('chatter'); log.warning('careful'); print('own output')"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "own output" in done.stdout
    assert "chatter" not in done.stderr and "careful" in done.stderr
    for line in done.stderr.splitlines():
        with pytest.raises(ValueError):
            json.loads(line)

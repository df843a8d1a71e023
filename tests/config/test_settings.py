"""Production settings refuse unsafe values; with safe ones `check --deploy` is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "-Zq8#u2!vR0pLm4xN7w@e9Ts1yB6cHjK3fD5gA"


def _run(args, **env_overrides):
    unset = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "overrides,complaint",
    [
        ({"DEBUG": "true", "SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "example.com"}, "DEBUG"),
        ({"DEBUG": "false", "ALLOWED_HOSTS": "example.com"}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": "short", "ALLOWED_HOSTS": "example.com"}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": GOOD_KEY}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_unsafe_values(overrides, complaint):
    result = _run(["check"], **overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and complaint in result.stderr


def test_production_check_deploy_is_clean(tmp_path):
    result = _run(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="false",
        SECRET_KEY=GOOD_KEY,
        ALLOWED_HOSTS="scripts.example.com",
        DATA_DIR=str(tmp_path),
        SECRETS_KEYS="mJ0V3mJ4dFq1oI9G2Yk0b3sVQ0x1dW5rbm93bi1rZXk=",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

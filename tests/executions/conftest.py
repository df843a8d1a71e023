import textwrap

import pytest

from executions import heartbeat
from scripts import services as script_services


@pytest.fixture
def upload(user):
    """``upload(source, name="job.py", owner=user)`` -> the Script, stored through the
    real script_upload service (so inspection decides kind and schema)."""

    def make(source: str, name: str = "job.py", owner=None, **kwargs):
        version = script_services.script_upload(
            user=owner or user,
            file_name=name,
            content=textwrap.dedent(source).encode(),
            folder=None,
            **kwargs,
        )
        return version.script

    return make


@pytest.fixture
def run_now(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (the enqueued task runs inline in test settings)."""

    def call(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return call


@pytest.fixture
def fast_heartbeat(monkeypatch):
    """A heartbeat of the test's own, beating every 0.1 s (the process's thread may be
    in the middle of its usual 5 s sleep, started by an earlier test's run)."""
    beat = heartbeat._Heartbeat()
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(heartbeat, "start", beat.start)
    monkeypatch.setattr(heartbeat, "stop", beat.stop)
    return beat

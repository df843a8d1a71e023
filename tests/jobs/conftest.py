import textwrap

import pytest

from scripts import services as script_services

# Tiny scripts the jobs tests chain and schedule.
DOUBLE = """
def main(data: dict) -> dict:
    return {"x": data.get("x", 1) * 2, "seen": sorted(data)}
"""
ADD_TEN = """
def main(data: dict) -> dict:
    return {"y": data["x"] + 10}
"""
TYPED_SUM = """
def main(x: int, y: int) -> dict:
    return {"sum": x + y}
"""
FAILS = """
def main(data: dict) -> dict:
    raise RuntimeError("step two broke")
"""
HELLO = """
def main(name: str = "world") -> dict:
    print("hello", name)
    return {"greeting": "hi " + name}
"""


@pytest.fixture
def upload(user):
    """``upload(source, name="job.py", owner=user)`` -> the Script, through script_upload."""

    def make(source: str, name: str = "job.py", owner=None):
        version = script_services.script_upload(
            user=owner or user,
            file_name=name,
            content=textwrap.dedent(source).encode(),
            folder=None,
        )
        return version.script

    return make


@pytest.fixture
def run_now(django_capture_on_commit_callbacks):
    """Call ``fn`` and run the on-commit callbacks (the enqueued runs run inline:
    test settings run django-q2 tasks synchronously)."""

    def call(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return call

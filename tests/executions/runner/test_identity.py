"""A run's uid: handed out once at a time, and never with a process of an earlier
holder still running as it. The search for such leftovers (a scan of /proc) is
skipped only where none can exist: a uid never handed out, or one whose last holder
released it clean."""

import os
import subprocess
import time

import pytest

from executions.runner import cgroups, identity, run_script, sandbox
from tests.executions.runner.conftest import base_spec, require_ns

UID = 1_900_999_001  # inside the default RUN_UID_RANGE, far from the uids tests draw


@pytest.fixture
def one_uid(settings, tmp_path):
    """RUN_UID_RANGE of one uid, so every acquire hands out the same one."""
    if os.geteuid() != 0:
        pytest.skip("the server is not root: runs have no uid of their own")
    settings.RUN_UID_RANGE = f"{UID}-{UID}"
    settings.RUN_UID_LOCK_DIR = tmp_path / "uids"
    return tmp_path / "uids" / str(UID)


def _sleeper_as(uid: int) -> subprocess.Popen:
    proc = subprocess.Popen(["sleep", "60"], user=uid, group=uid, start_new_session=True)
    deadline = time.monotonic() + 5
    while proc.pid not in identity.processes_of(uid):
        assert time.monotonic() < deadline, "the sleeper never showed up"
        time.sleep(0.01)
    return proc


def test_a_crashed_holders_leftover_dies_before_its_uid_is_handed_out_again(one_uid):
    first = identity.acquire("crashed")
    leftover = _sleeper_as(first.uid)
    os.close(first._lock_fd)  # the worker died: its lock went, no release was written
    assert one_uid.read_bytes() == identity.BUSY
    second = identity.acquire("next")
    try:
        assert second.uid == first.uid
        assert leftover.wait(5) == -9
        assert identity.processes_of(second.uid) == []
    finally:
        second.release()


def test_a_release_kills_what_is_left_and_marks_the_uid_clean(one_uid):
    ident = identity.acquire("left-something")
    leftover = _sleeper_as(ident.uid)
    ident.release()
    assert leftover.wait(5) == -9
    assert one_uid.read_bytes() == identity.CLEAN
    again = identity.acquire("again")
    try:
        assert one_uid.read_bytes() == identity.BUSY  # held: not clean until released
    finally:
        again.release()


def test_a_sealed_run_releases_its_uid_clean_without_a_search(one_uid, settings, monkeypatch):
    """Under ns every process of the run joined its cgroup before it took the uid:
    once the group is emptied and removed, nothing of the uid can be left."""
    require_ns()
    if not cgroups.version():
        pytest.skip("no cgroups here: the release looks for leftovers by uid")
    settings.SANDBOX_BACKEND = "ns"
    settings.RUN_WARM = False
    searched = []
    real = identity.processes_of
    monkeypatch.setattr(identity, "processes_of", lambda uid: searched.append(uid) or real(uid))
    source = "def main(data):\n    return {'uid': __import__('os').getuid()}\n"
    spec = base_spec(source, run_id="clean", filename="s.py", call_style="data")
    log = []
    with run_script(spec, on_log=log.append) as outcome:
        assert outcome.status == "succeeded", "".join(log)
        assert outcome.result == {"uid": UID}
    assert sandbox.backend_name() == "ns"
    assert searched == []  # a new uid, released clean: no scan of /proc either way
    assert one_uid.read_bytes() == identity.CLEAN


def test_a_uid_whose_leftover_will_not_die_is_passed_over(settings, tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the server is not root: runs have no uid of their own")
    settings.RUN_UID_RANGE = f"{UID}-{UID + 1}"
    settings.RUN_UID_LOCK_DIR = tmp_path / "uids"
    (tmp_path / "uids").mkdir()
    (tmp_path / "uids" / str(UID)).write_bytes(identity.BUSY)  # a crashed holder's
    stuck = _sleeper_as(UID)
    kills = []

    def kill_that_fails(uid, **_):  # as for a process stuck in the kernel: it survives
        kills.append(uid)
        return 1

    monkeypatch.setattr(identity, "kill_uid", kill_that_fails)
    monkeypatch.setattr(identity, "_stuck", {})
    try:
        for n in range(8):
            ident = identity.acquire(f"run-{n}")
            ident.release()
            assert ident.uid == UID + 1
        assert (tmp_path / "uids" / str(UID)).read_bytes() == identity.BUSY
        assert kills.count(UID) == 1, "the stuck uid was tried again, not passed over"
    finally:
        stuck.kill()
        stuck.wait()

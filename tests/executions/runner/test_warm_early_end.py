"""A warm run ends at its harness's last record (the exit of a process forked from a
large template takes milliseconds that are not the script's): only when the script's
process is the run's only task, killed first; its groups and uid are released once
its exit is over, by the janitor thread."""

import time

import pytest

from executions.runner import cgroups
from executions.runner import run as run_module
from tests.executions.runner.conftest import WHO, _use_backend, assert_released


@pytest.fixture
def warm(settings):
    if not cgroups.version():
        pytest.skip("no cgroups here: warm runs are cold")
    return _use_backend(settings, "ns-warm")


@pytest.fixture
def ended_early(monkeypatch):
    """Whether each run of the test was taken as ended at its last record."""
    seen = []
    real = run_module.watch

    def watch(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(result.ended_early)
        return result

    monkeypatch.setattr(run_module, "watch", watch)
    return seen


# Memory the script holds to its end: its exit (the teardown) then takes long enough
# that the run is always taken as ended before it is over (a small script's exit may
# be over first: then the run waits for the exit report, as it may).
HELD = "HELD = bytearray(256 << 20)\nHELD[::4096] = b'x' * (len(HELD) // 4096)\n"


def test_a_run_ends_at_its_last_record_and_its_leftovers_go_after(run, warm, ended_early, settings):
    r = run(WHO + HELD + "def main():\n    who()\n    return {'n': 1}\n")
    assert r.status == "succeeded" and r.result == {"n": 1} and r.exit_code == 0, r.log
    assert ended_early == [True]
    assert r.cpu_time_ms is not None and r.peak_memory_kb
    assert_released(r.log, settings)


def test_a_command_scripts_exit_code_is_kept_when_it_ends_early(run, warm, ended_early):
    r = run(HELD + "import sys\nprint('bye')\nsys.exit(3)\n", call_style="argv")
    assert r.status == "failed" and r.exit_code == 3 and r.log == "bye\n", r.log
    assert ended_early == [True]


RECORD_THEN_WAIT = """
import os, time
def main():
    os.write(3, b'{record}')
    os.close(3)
    time.sleep(30)  # killed at its record: the SIGKILL lands before any exit
"""


@pytest.mark.parametrize(
    ("record", "status", "code"),
    [
        ('{"ok": true, "result": {"n": 1}, "exit": 0}', "succeeded", 0),
        ('{"ok": false, "code": "SCRIPT_ERROR", "message": "no", "exit": 3}', "failed", 3),
    ],
)
def test_a_script_killed_at_its_record_keeps_the_records_exit_code(
    run, warm, ended_early, monkeypatch, record, status, code
):
    # the script's process is killed at its record, but the run cannot end there (its
    # figures were gone before they were read: say it had exited, and PID 1 reaped
    # it): the exit report's SIGKILL is the runner's, the run's exit code the record's
    from executions.runner import templates

    monkeypatch.setattr(templates, "_usage_of", lambda pid, seen: None)  # (gone)
    started = time.monotonic()
    r = run(RECORD_THEN_WAIT.format(record=record.replace('"', '\\"')))
    assert time.monotonic() - started < 10, "the script was not killed at its record"
    assert (r.status, r.exit_code) == (status, code), (r.error_code, r.error_message)
    assert ended_early == [False]


# The last record written while another task of the run lives (the script writes it
# itself: the harness writes it only after waiting for the script's threads, and a
# process that exits takes its threads with it), then the script ends by itself.
WHILE_ANOTHER_LIVES = (
    WHO
    + """
import os, subprocess, threading, time
def main():
    who()
    {other}
    os.write(3, b'{{"ok": true, "result": {{"n": 2}}, "exit": 0}}')
    os.close(3)
    time.sleep(0.3)
    os._exit(0)
"""
)


@pytest.mark.parametrize(
    "other",
    [
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
        "subprocess.Popen(['sleep', '30'])",
    ],
    ids=["thread", "child"],
)
def test_another_task_of_the_run_makes_it_wait_for_the_exit(
    run, warm, ended_early, settings, other
):
    started = time.monotonic()
    r = run(WHILE_ANOTHER_LIVES.format(other=other))
    assert time.monotonic() - started >= 0.3, "the run did not wait for the script's exit"
    assert r.status == "succeeded" and r.result == {"n": 2}, r.log
    assert ended_early == [False]
    assert_released(r.log, settings)


@pytest.mark.parametrize("exit_value", ["256", "-1", "true", '"0"', "0.0", "null"])
def test_a_record_whose_exit_is_not_a_status_makes_the_run_wait_for_the_exit(
    run, warm, ended_early, exit_value
):
    script = (
        "import os, time\n"
        "def main():\n"
        f'    os.write(3, b\'{{"ok": true, "result": {{}}, "exit": {exit_value}}}\')\n'
        "    os.close(3)\n"
        "    time.sleep(0.3)\n"
        "    os._exit(0)\n"
    )
    started = time.monotonic()
    r = run(script)
    assert time.monotonic() - started >= 0.3, "the run did not wait for the script's exit"
    assert r.status == "succeeded" and r.exit_code == 0, r.log
    assert ended_early == [False]


FORGED = (
    WHO
    + """
import os, time
def main():
    who()
    spin = time.process_time() + 0.4
    while time.process_time() < spin:
        pass
    os.write(3, b'{"ok": true, "result": {"forged": 1}, "exit": 0, "cpu_ms": 99999999, '
                b'"peak_kb": 1}')
    os.close(3)
    while True:
        pass
"""
)


def test_a_forged_last_record_ends_the_run_there_and_kills_the_script(
    run, warm, ended_early, settings
):
    """A script that writes the harness's last record itself and goes on only ends
    its own run early: killed there (it would spin until its time limit), and its
    CPU time and peak memory are the kernel's count, not the record's claims."""
    started = time.monotonic()
    r = run(FORGED, timeout_seconds=20)
    assert time.monotonic() - started < 5, "the run went on after its record"
    assert ended_early == [True]
    assert r.status == "succeeded" and r.result == {"forged": 1}, r.log
    assert 300 <= r.cpu_time_ms < 20_000, r.cpu_time_ms
    assert r.peak_memory_kb > 1000, r.peak_memory_kb  # an interpreter's, at least
    assert_released(r.log, settings)


def test_a_failed_release_of_a_runs_groups_still_frees_its_uid(
    run, warm, ended_early, settings, monkeypatch
):
    """The janitor releases the uid of a run that ended early even when releasing its
    groups raised (a group pruned meanwhile, say): the uid is not left locked."""
    real = run_module._release_groups

    def failing(*args, **kwargs):
        real(*args, **kwargs)
        raise FileNotFoundError("the group was pruned meanwhile")

    monkeypatch.setattr(run_module, "_release_groups", failing)
    r = run(WHO + HELD + "def main():\n    who()\n    return {}\n")
    assert r.status == "succeeded" and ended_early == [True], r.log
    assert_released(r.log, settings)


def test_a_cold_run_never_ends_early(run, settings, ended_early):
    _use_backend(settings, "ns")
    r = run("def main():\n    return {}\n")
    assert r.status == "succeeded" and ended_early == [False]

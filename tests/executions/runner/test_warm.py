"""Warm runs: forked from a sealed template per environment, each run a fresh
process; a template that crashes, idles, or whose environment changes is survived.
(The containment and fidelity tests run on the warm path too: backend "ns-warm".)"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from executions.runner import templates, warm_up
from executions.runner.environments import READY, ensure_environment
from tests.executions.runner.conftest import _use_backend, base_spec
from tests.executions.runner.test_environments import _wheel

FRESH = """
import json, os, random, sys

def main():
    seen = {
        "json_marked": hasattr(json, "_left_by_an_earlier_run"),
        "tmp_file": os.path.exists("/tmp/left.txt"),
        "home_file": os.path.exists(os.path.expanduser("~/left.txt")),
        "env": os.environ.get("LEFT_BY_AN_EARLIER_RUN"),
        "work": sorted(os.listdir(".")),
        "preloaded": "json" in sys.modules,
        "pid": os.getpid(),
        "random": random.random(),
    }
    json._left_by_an_earlier_run = True
    for path in ("/tmp/left.txt", os.path.expanduser("~/left.txt")):
        with open(path, "w") as fh:
            fh.write("x")
    os.environ["LEFT_BY_AN_EARLIER_RUN"] = "yes"
    return seen
"""


@pytest.fixture
def warm(settings):
    return _use_backend(settings, "ns-warm")


@pytest.fixture
def own_data_dir(settings, tmp_path):
    """A data dir (and so a set of templates) of the test's own."""
    os.chmod(tmp_path, 0o711)
    settings.DATA_DIR = tmp_path
    settings.ENVS_DIR = tmp_path / "envs"
    settings.WORKSPACES_DIR = tmp_path / "workspaces"
    yield tmp_path
    templates.stop_all(now=True)


def _only(state="ready"):
    found = [t for t in templates.status() if t["state"] == state]
    assert len(found) == 1, templates.status()
    return found[0]


def _spec(run_id, source):
    """A base-environment run of ``source`` started without waiting for a template."""
    return base_spec(source, run_id=run_id)


def _gone(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_each_warm_run_is_a_fresh_process(run, warm):
    first = run(FRESH, imports=("json", "os", "random", "sys"))
    second = run(FRESH, imports=("json", "os", "random", "sys"))
    for outcome in (first, second):
        assert outcome.status == "succeeded", outcome.log
        assert outcome.warm
        seen = outcome.result
        assert seen["preloaded"] is True  # imported by the template, not by the run
        assert not seen["json_marked"], "a module global of an earlier run survived"
        assert not seen["tmp_file"] and not seen["home_file"], "files of an earlier run survived"
        assert seen["env"] is None, "the environment of an earlier run survived"
        assert seen["work"] == ["script.py"]
        assert seen["pid"] == 2  # PID 2 of a new PID namespace, as a cold run
    assert first.result["random"] != second.result["random"], "runs share random state"


def test_runs_of_a_numpy_template_draw_their_own_numbers(run, warm):
    # numpy's global generator is made when numpy.random is imported: here in the
    # template (pandas imports it). Each run's process reseeds it (while it waits for
    # its request), else every run would draw the same numbers.
    source = "import numpy as np\n\ndef main():\n    return {'n': float(np.random.random())}\n"
    analysis = ["matplotlib", "pandas"]  # the environment of the fidelity tests
    draws = [run(source, requirements=analysis, imports=("pandas",)) for _ in range(2)]
    assert all(d.status == "succeeded" and d.warm for d in draws), draws[0].log
    assert draws[0].result["n"] != draws[1].result["n"], "runs share numpy's random state"


def test_template_is_shown_with_its_runs_memory_and_modules(run, warm, own_data_dir):
    run("def main():\n    return {}\n", imports=("json",))
    run("def main():\n    return {}\n", imports=("json",))
    # the template writes its status after it has answered a request: a run may be
    # over before the status shows it
    deadline = time.monotonic() + 5
    while (template := _only())["runs"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert template["runs"] >= 2
    assert template["memory_kb"] > 1000
    assert "json" in template["preloaded"]
    assert template["environment"] == ensure_environment([]).parent.parent.name
    assert template["age_seconds"] >= 0


def test_a_run_outlives_the_launchers_first_checks(run, warm, own_data_dir):
    """The launcher looks every second whether its data still exists: from the host's
    view (a launcher that shared the template's pivoted root saw nothing and killed
    the template, and its runs, after a second)."""
    outcome = run("import time\ndef main():\n    time.sleep(2.5)\n    return {'ok': True}\n")
    assert outcome.status == "succeeded", outcome.log
    assert outcome.result == {"ok": True}
    assert _only()["runs"] >= 1


def test_runs_at_once_fork_from_one_template(run, warm):
    results, errors = [], []

    def go():
        try:
            results.append(run("import time\ndef main():\n    time.sleep(0.3)\n    return {}\n"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [r.status for r in results] == ["succeeded"] * 4
    assert all(r.warm for r in results)


def test_a_crashed_template_is_replaced_and_the_run_in_flight_fails_clearly(
    run, warm, own_data_dir
):
    from executions.runner import run_script

    assert warm_up([])
    template = _only()
    spec = _spec("crash", "import time\ndef main():\n    time.sleep(30)\n")
    killer = threading.Timer(0.8, os.killpg, (template["pid"], signal.SIGKILL))
    killer.start()
    started = time.monotonic()
    with run_script(spec, on_log=lambda _text: None) as outcome:
        assert outcome.warm
        assert outcome.status == "failed"
        assert outcome.error_code == "KILLED"
    assert time.monotonic() - started < 10  # not the 30 s of the script, nor the timeout
    killer.join()
    assert _gone(template["pid"])
    # the next run goes cold while a new template starts, then runs are warm again
    after = run("def main():\n    return {'ok': True}\n")
    assert after.status == "succeeded" and after.warm
    assert _only()["pid"] != template["pid"]


def test_an_environment_change_retires_its_template(run, warm, own_data_dir):
    from executions.runner import run_script

    assert warm_up([])
    old = _only()
    env_dir = ensure_environment([]).parent.parent
    marker = env_dir / READY
    marker.unlink()  # the environment is rebuilt: a new ready marker (a new inode)
    marker.write_text("rebuilt\n")
    spec = _spec("changed", "def main():\n    return {}\n")
    with run_script(spec, on_log=lambda _text: None) as outcome:
        assert outcome.status == "succeeded"
        assert not outcome.warm  # the old template no longer serves this environment
    assert _gone(old["pid"])
    after = run("def main():\n    return {}\n")
    assert after.warm
    assert _only()["pid"] != old["pid"]


def test_an_idle_template_ends_by_itself(warm, own_data_dir, settings):
    settings.RUN_WARM_IDLE_SECONDS = 1
    assert warm_up([])
    pid = _only()["pid"]
    assert _gone(pid, seconds=10)
    assert templates.status() == []


def test_a_template_ends_when_its_data_dir_is_removed(warm, settings, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(tmp_path, 0o711)
    settings.DATA_DIR = data
    settings.ENVS_DIR = data / "envs"
    settings.WORKSPACES_DIR = data / "workspaces"
    assert warm_up([])
    pid = _only()["pid"]
    import shutil

    shutil.rmtree(data)
    assert _gone(pid, seconds=10)


@pytest.fixture
def unfit_index(tmp_path, settings):
    """Local wheels: one prints when imported, one starts a thread, one is quiet."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    os.chmod(tmp_path, 0o755)
    _wheel(wheels, "scriptorium-noisy", "1.0", {"scriptorium_noisy/__init__.py": (
        "print('hello from noisy')\n")})  # fmt: skip
    _wheel(wheels, "scriptorium-threaded", "1.0", {"scriptorium_threaded/__init__.py": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")})  # fmt: skip
    _wheel(wheels, "scriptorium-quiet", "1.0", {"scriptorium_quiet/__init__.py": "VALUE = 7\n"})
    settings.ENVS_INSTALL_ARGS = ["--no-index", "--find-links", str(wheels)]
    return wheels


@pytest.mark.slow
def test_modules_that_print_or_start_threads_are_not_preloaded(run, warm, unfit_index):
    source = (
        "import scriptorium_noisy, scriptorium_threaded, scriptorium_quiet, threading\n"
        "def main():\n"
        "    return {'value': scriptorium_quiet.VALUE, 'threads': threading.active_count()}\n"
    )
    reqs = ["scriptorium-noisy==1.0", "scriptorium-threaded==1.0", "scriptorium-quiet==1.0"]
    imports = ("scriptorium_noisy", "scriptorium_threaded", "scriptorium_quiet", "threading")
    outcome = run(source, requirements=reqs, imports=imports)
    assert outcome.status == "succeeded", outcome.log
    assert outcome.warm
    assert "hello from noisy" in outcome.log  # the run imported it itself, as a cold run
    assert outcome.result == {"value": 7, "threads": 2}
    env_name = ensure_environment(reqs).parent.parent.name
    serving = [t for t in templates.status() if t["environment"] == env_name]
    assert [t["state"] for t in serving] == ["ready"]
    assert "scriptorium_quiet" in serving[0]["preloaded"]
    assert "scriptorium_noisy" not in serving[0]["preloaded"]
    assert "scriptorium_threaded" not in serving[0]["preloaded"]


ALLOCATE = """
def main(mb: int):
    block = bytearray(mb * 1024 * 1024)
    return {"held": len(block) // (1024 * 1024)}
"""


TOGETHER = """
import os, time
def main(children: int, mb: int):
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            block = bytearray(mb * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(1)
            os._exit(0)
        pids.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    killed = sum(1 for status in statuses if os.WIFSIGNALED(status))
    return {"killed": killed, "held": (children - killed) * mb}
"""


def _groups_of(template_key: str) -> set[str]:
    from executions.runner import cgroups

    prefix = f"warm-{template_key}-"
    base = cgroups._dirs_named("x")[0].parent
    return {p.name for p in base.iterdir() if p.is_dir() and p.name.startswith(prefix)}


def test_a_run_sits_in_a_group_made_ahead_yet_always_has_its_own_limits(run, warm, own_data_dir):
    """A spare's PID 2 moves into a run group while idle (a move waits for the kernel:
    up to milliseconds under load); a run takes a spare whose group has its limits,
    else its own group as before. Either way its limits are its own."""
    runs = [run(ALLOCATE, inputs={"mb": 1}) for _ in range(2)]  # spares get groups
    assert all(r.status == "succeeded" for r in runs), [r.log for r in runs]
    deadline = time.monotonic() + 5
    while _status()["spares_in_groups"] < 2:
        assert time.monotonic() < deadline, _status()
        time.sleep(0.02)
    # not the spares' limits; each process under RLIMIT_AS, together over the group's
    small = run(TOGETHER, inputs={"children": 4, "mb": 24}, memory_mb=64)
    assert small.status == "succeeded", small.log
    assert small.result["killed"] >= 1, small.result  # the group's limit: 64 MB
    usual = run(TOGETHER, inputs={"children": 4, "mb": 24})
    assert usual.status == "succeeded", usual.log
    assert usual.result == {"killed": 0, "held": 4 * 24}
    usual = run(ALLOCATE, inputs={"mb": 200})  # the default limit: 512 MB
    assert usual.status == "succeeded", usual.log
    assert usual.result == {"held": 200}


def _status() -> dict:
    """The template's own status file (what /health/ shows is a selection of it)."""
    record = next(r for r in templates._records() if r["state"] == "ready")
    return record["status"]


def test_a_stopped_template_leaves_no_run_group(run, warm, own_data_dir):
    for _ in range(3):
        assert run("def main():\n    return {}\n").status == "succeeded"
    key = _only()["key"]
    assert _groups_of(key)
    templates.stop_all(now=True)
    deadline = time.monotonic() + 5
    while _groups_of(key) and time.monotonic() < deadline:
        templates._prune_groups()
        time.sleep(0.05)
    assert not _groups_of(key)


def test_learned_imports_of_an_instance_whose_data_dir_is_gone_are_pruned(
    settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(templates, "_prune_groups", lambda: 0)  # other tests' cgroups
    settings.RUN_WARM_DIR = tmp_path / "warm"
    gone, kept = tmp_path / "gone", tmp_path / "kept"
    for data_dir in (gone, kept):
        data_dir.mkdir()
        settings.DATA_DIR = data_dir
        templates._learn(Path("/envs/e1"), seen=["json"])
    learned = sorted(settings.RUN_WARM_DIR.glob("*.imports"))
    assert len(learned) == 2
    gone.rmdir()
    templates._prune_ended()  # too recent yet: kept
    assert sorted(settings.RUN_WARM_DIR.glob("*.imports")) == learned
    for path in learned:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    templates._prune_ended()
    left = [json.loads(p.read_text())["data_dir"] for p in settings.RUN_WARM_DIR.glob("*.imports")]
    assert left == [str(kept.resolve())]
    assert templates._learned(Path("/envs/e1")) == (["json"], [])  # DATA_DIR is kept's

"""Fixtures for the runner's tests: real processes in the real sandbox backends.

``backend`` runs a test once per available backend. bwrap tests skip when bubblewrap
is missing, unless SCRIPTORIUM_REQUIRE_SERVICES=1 (CI), which makes them fail.
"""

import dataclasses
import shutil
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from executions.runner import RunSpec, limits_for, run_script, sandbox, warm_up
from tests.conftest import REQUIRE_SERVICES


@pytest.fixture(scope="session")
def runner_data_dir():
    """One data folder for the runner per test process (environments are reused
    across tests, workspaces never are), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="scriptorium-runner-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _runner_dirs(settings, runner_data_dir):
    settings.DATA_DIR = runner_data_dir
    settings.ENVS_DIR = runner_data_dir / "envs"
    settings.WORKSPACES_DIR = runner_data_dir / "workspaces"


def base_spec(source, *, run_id=None, filename="script.py", call_style="kwargs", **fields):
    """A RunSpec of ``source`` in the base environment, no inputs, the default limits
    (``fields``: any other RunSpec field, ``inputs`` and ``limits`` among them)."""
    return RunSpec(
        run_id=run_id or f"t{uuid.uuid4().hex[:10]}",
        source=source,
        filename=filename,
        call_style=call_style,
        inputs=fields.pop("inputs", None) or {},
        argv=[],
        requirements=[],
        input_files=[],
        limits=fields.pop("limits", None) or limits_for(),
        **fields,
    )


def require_bwrap():
    problem = sandbox.bwrap_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"bwrap unusable ({problem}), but SCRIPTORIUM_REQUIRE_SERVICES=1")
        pytest.skip(f"needs bubblewrap: {problem}")


def require_ns():
    problem = sandbox.ns_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"the ns sandbox is unusable ({problem}), but SCRIPTORIUM_REQUIRE_SERVICES=1"
            )
        pytest.skip(f"needs user/mount/PID/network namespaces: {problem}")


def require_warm():
    from executions.runner import templates

    require_ns()
    problem = templates.problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"warm runs are unusable ({problem}), but SCRIPTORIUM_REQUIRE_SERVICES=1")
        pytest.skip(f"needs warm templates: {problem}")


def _use_backend(settings, name: str) -> str:
    """Set SANDBOX_BACKEND for ``name``: "ns" is the cold ns path (RUN_WARM off),
    "ns-warm" the ns backend with every run forked from a warm template."""
    if name == "bwrap":
        require_bwrap()
    if name == "ns":
        require_ns()
    if name == "ns-warm":
        require_warm()
    settings.SANDBOX_BACKEND = "ns" if name == "ns-warm" else name
    settings.RUN_WARM = name == "ns-warm"
    return name


@pytest.fixture(params=["ns", "ns-warm", "bwrap", "rlimit"])
def backend(request, settings):
    """The sandbox backend under test (set as SANDBOX_BACKEND): ns (the built-in
    default) cold and warm, bwrap, and rlimit named by the operator."""
    _use_backend(settings, request.param)
    if request.param == "rlimit":
        require_rlimit_reachable()
    return request.param


def require_rlimit_reachable():
    """rlimit starts scripts as their own uid straight from the host's folders: under a
    private (0700) parent it refuses every run (clearly, tested elsewhere)."""
    blocked = sandbox.unreachable_dir("rlimit")
    if blocked:
        pytest.skip(f"rlimit cannot reach the data dir under {blocked} (a private parent)")


@pytest.fixture(params=["ns", "ns-warm", "bwrap"])
def isolating_backend(request, settings):
    """The backends that promise isolation (the containment tests of issue 9)."""
    return _use_backend(settings, request.param)


@pytest.fixture
def bwrap(settings):
    require_bwrap()
    settings.SANDBOX_BACKEND = "bwrap"
    return "bwrap"


class Run:
    """The outcome of one run plus everything the callbacks saw."""

    def __init__(self, outcome, log, progress, files):
        self.outcome, self.log, self.progress, self.files = outcome, log, progress, files

    def __getattr__(self, name):
        return getattr(self.outcome, name)


@pytest.fixture
def run(settings):
    """``run(source, **options) -> Run``: runs a script to the end. Options: call_style
    (default kwargs), inputs, argv, requirements, input_files, filename, run_id,
    should_cancel, and any Limits field (timeout_seconds=..., memory_mb=...). With the
    ns-warm backend the run must fork from a warm template (waited for first)."""

    def go(
        source,
        *,
        call_style="kwargs",
        inputs=None,
        argv=(),
        requirements=(),
        input_files=(),
        filename="script.py",
        run_id=None,
        should_cancel=None,
        keep=None,
        trusted=False,
        imports=(),
        **limit_overrides,
    ):
        limits = dataclasses.replace(limits_for(), **limit_overrides)
        spec = RunSpec(
            run_id=run_id or f"t{uuid.uuid4().hex[:10]}",
            source=textwrap.dedent(source),
            filename=filename,
            call_style=call_style,
            inputs=inputs or {},
            argv=list(argv),
            requirements=list(requirements),
            input_files=list(input_files),
            limits=limits,
            trusted=trusted,
            imports=imports,
        )
        warm = settings.SANDBOX_BACKEND == "ns" and settings.RUN_WARM
        if warm:
            assert warm_up(list(requirements), imports=imports), "the template never got ready"
        log, progress = [], []
        with run_script(
            spec,
            on_log=log.append,
            on_progress=lambda p, m: progress.append((p, m)),
            should_cancel=should_cancel,
        ) as outcome:
            files = {
                f.relative_path: (f.category, f.path.read_bytes() if f.size < 1 << 20 else None)
                for f in outcome.files
            }
            if keep is not None:
                keep(outcome)
        if warm:
            assert outcome.warm, "the run did not fork from the warm template"
        return Run(outcome, "".join(log), progress, files)

    return go


@pytest.fixture(autouse=True)
def _janitor_idle():
    """What a run left to release (janitor.py) is released before the next test."""
    yield
    from executions.runner import janitor

    janitor.wait_idle(10)


# A script's helper that prints the run's uid and cgroup name ("who <uid> <group>"),
# for tests that check what a run left behind (assert_released).
WHO = """
import os
def who():
    with open("/proc/self/cgroup") as fh:
        group = [line.rsplit("/", 1)[1].strip() for line in fh if ":memory:" in line
                 or line.startswith("0::")][0]
    print("who", os.getuid(), group, flush=True)
"""


def assert_released(log: str, settings) -> None:
    """The run whose log holds WHO's line left nothing: once the janitor is idle, no
    process runs as its uid, its cgroups are gone and its uid is marked clean."""
    from executions.runner import cgroups, identity, janitor

    uid_text, group = log.split("who ", 1)[1].split()[:2]
    uid = int(uid_text)
    assert janitor.wait_idle(10), "the janitor did not finish"
    assert identity.processes_of(uid) == []
    assert not any(path.exists() for path in cgroups._dirs_named(group))
    lock = Path(settings.RUN_UID_LOCK_DIR, str(uid)).read_bytes()[: len(identity.CLEAN)]
    assert lock == identity.CLEAN

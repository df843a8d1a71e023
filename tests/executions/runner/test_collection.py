"""Collection, the result channel and cleanup against a hostile workspace (issue 9):
many tiny files, deep trees, non-UTF-8 names, files that vanish or are swapped for
links while the (root) server collects them, and a result record nested 100,000
levels deep. Races are set up at the unit level (collect_files, CollectedFile.open,
remove_tree, _finish); the rest also end to end through the real runner, and the
workspaces folder must be empty again afterwards."""

import os
import subprocess
import time
import uuid
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from executions.runner import files, workspace
from executions.runner.execute import MAX_RECORD_DEPTH, LogSink, _finish
from executions.runner.files import MAX_DEPTH, MAX_REASONS, FileChangedError, collect_files
from executions.runner.workspace import prune_workspaces, remove_tree

LIMITS = {"max_files": 100, "max_file_bytes": 1 << 20, "max_total_file_bytes": 10 << 20}


def _collect(work: Path, baseline=None, **limits):
    return collect_files(work, baseline or {}, **{**LIMITS, **limits})


def _deep_tree(top: Path, levels: int, *, leaf: str = "bottom.txt") -> None:
    """``top/d/d/.../d/<leaf>`` ``levels`` folders deep (made through fds: the path
    string of the bottom would be too long for os.makedirs)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _usage(top: Path) -> int:
    """Bytes of disk ``top`` uses, itself included (du, which copes with any depth)."""
    out = subprocess.run(["du", "-s", "-B1", str(top)], capture_output=True, check=True)
    return int(out.stdout.split()[0])


def _wait_until_empty(top: Path, seconds: float = 60) -> list[str]:
    """What is left in ``top`` once the background remover is done (or time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        left = os.listdir(top) if top.exists() else []
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def secret():
    """A root-only file outside every workspace (mode 0600, owned by whoever runs the
    tests: root in CI)."""
    path = Path(f"/tmp/scriptorium-secret-{uuid.uuid4().hex}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"root:$y$secret-hash:19000:0:99999:7:::\n")
    os.close(fd)
    yield path
    path.unlink()


@pytest.fixture(autouse=True)
def _clean_tmp_path(tmp_path):
    """Deep trees go with remove_tree: pytest's own clean-up is recursive."""
    yield
    for entry in os.listdir(tmp_path):
        remove_tree(tmp_path / entry)


@pytest.fixture
def work(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


# --- collection: bounds ---------------------------------------------------------


def test_twenty_thousand_files_give_a_bounded_skipped_list(work):
    many = work / "many"
    many.mkdir()
    for i in range(20_000):
        (many / f"f{i:05}.csv").touch()
    started = time.monotonic()
    collected, skipped = _collect(work, max_files=100)
    assert time.monotonic() - started < 10
    assert len(collected) == 100
    assert len(skipped) <= MAX_REASONS + 2
    assert all(line.endswith("over the limit of 100 files") for line in skipped[:MAX_REASONS])
    assert (
        skipped[MAX_REASONS].startswith("... and ")
        and "more files not collected" in (skipped[MAX_REASONS])
    )
    assert "stopped" in skipped[-1]  # the walk looked at 10 x max_files entries, no more
    assert sum(len(line) for line in skipped) < 20_000


def test_a_1500_level_tree_is_collected_to_the_depth_limit_then_skipped(work):
    _deep_tree(work, 1500)
    (work / "d" / "d" / "shallow.txt").write_text("near the top")
    collected, skipped = _collect(work)
    assert [c.relative_path for c in collected] == ["d/d/shallow.txt"]
    deep = [line for line in skipped if f"deeper than {MAX_DEPTH} levels" in line]
    assert len(deep) == 1 and deep[0].startswith("d/d/d/")
    assert len(deep[0]) < 300  # the name shown is cut


def test_non_utf8_and_control_character_names_are_skipped_or_escaped(work):
    raw = os.fsencode(work)
    with open(raw + b"/caf\xe9.csv", "wb") as fh:
        fh.write(b"a,b\n")
    os.mkdir(raw + b"/dir\xff")
    with open(raw + b"/dir\xff/inner.txt", "wb") as fh:
        fh.write(b"x")
    os.symlink("/etc/passwd", work / "evil\n[scriptorium] all good")
    (work / "ok.txt").write_text("fine")
    collected, skipped = _collect(work)
    assert [c.relative_path for c in collected] == ["ok.txt"]
    assert "caf\\xe9.csv: the name is not valid UTF-8 (not collected)" in skipped
    assert "dir\\xff: the name is not valid UTF-8 (not collected)" in skipped
    assert "evil\\n[scriptorium] all good: symbolic link (not collected)" in skipped
    assert all("\n" not in line for line in skipped)
    remove_tree(work)
    assert not work.exists()


# --- collection: races --------------------------------------------------------------


def test_a_file_deleted_between_listing_and_opening_is_skipped(work, monkeypatch):
    (work / "gone.csv").write_text("a,b\n")
    (work / "kept.csv").write_text("c,d\n")
    real_open = files._open_file

    def vanish_first(name, dir_fd):
        if name == "gone.csv":
            os.unlink(name, dir_fd=dir_fd)
        return real_open(name, dir_fd)

    monkeypatch.setattr(files, "_open_file", vanish_first)
    collected, skipped = _collect(work)
    assert [c.relative_path for c in collected] == ["kept.csv"]
    assert skipped == ["gone.csv: vanished during collection (not collected)"]
    # ... and a file deleted after collection, before the server reads it
    (work / "kept.csv").unlink()
    with pytest.raises(FileNotFoundError):
        collected[0].open()


def test_a_file_swapped_for_a_link_after_collection_is_refused(work, tmp_path, secret):
    (work / "report.csv").write_text("a,b\n")
    (work / "linked.csv").write_text("a,b\n")
    (work / "other.csv").write_text("a,b\n")
    (work / "sub").mkdir()
    (work / "sub" / "inner.csv").write_text("a,b\n")
    (work / "growing.log").write_text("first\n")
    collected, skipped = _collect(work)
    assert skipped == []
    by_name = {c.relative_path: c for c in collected}

    (work / "report.csv").unlink()
    (work / "report.csv").symlink_to(secret)  # a link to a root-only file
    os.unlink(work / "linked.csv")
    os.link(secret, work / "linked.csv")  # a hard link to it (root may make one)
    (work / "other.csv").unlink()
    (work / "other.csv").write_text("a,b\n")  # another file under the same name
    os.rename(work / "sub", tmp_path / "moved")
    (work / "sub").symlink_to(tmp_path / "moved")  # a folder on the path became a link
    for name in ("report.csv", "linked.csv", "other.csv", "sub/inner.csv"):
        with pytest.raises(FileChangedError):
            by_name[name].open()

    with open(work / "growing.log", "a") as fh:
        fh.write("written after the run\n")
    with by_name["growing.log"].open() as fh:
        assert fh.read() == b"first\n"  # no more than was collected


def test_a_folder_swapped_for_a_link_mid_walk_is_not_followed(work, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("not the run's")
    (work / "sub").mkdir()
    (work / "sub" / "mine.txt").write_text("mine")
    (work / "top.txt").write_text("top")
    real_open_dir = files._open_dir

    def swap_first(name, dir_fd):
        if name == "sub" and not (tmp_path / "moved").exists():
            os.rename(work / "sub", tmp_path / "moved")
            (work / "sub").symlink_to(outside)
        return real_open_dir(name, dir_fd)

    monkeypatch.setattr(files, "_open_dir", swap_first)
    collected, skipped = _collect(work)
    assert [c.relative_path for c in collected] == ["top.txt"]
    assert skipped == ["sub: replaced by a link or a file during collection (not followed)"]


@pytest.mark.django_db
def test_the_worker_skips_a_swapped_file_and_does_not_log_the_skipped_list_again(
    work, secret, user
):
    from executions.logbook import LogWriter, log_text
    from executions.models import Artifact, Execution
    from executions.worker import _store_artifacts

    (work / "good.txt").write_text("good")
    (work / "bad.txt").write_text("bad")
    collected, _ = _collect(work)
    (work / "bad.txt").unlink()
    (work / "bad.txt").symlink_to(secret)
    execution = Execution.objects.create(script_path="x.py", requested_by=user, status="running")
    log = LogWriter(execution_id=execution.pk)
    skipped = [f"f{i}.csv: over the limit of 100 files" for i in range(5000)]
    outcome = SimpleNamespace(files=collected, skipped_files=skipped)
    _store_artifacts(execution=execution, outcome=outcome, log=log)
    log.close()
    artifacts = list(Artifact.objects.filter(execution=execution))
    assert [a.name for a in artifacts] == ["good.txt"]
    text = log_text(execution_id=execution.pk)
    assert "file bad.txt not kept: it changed after the run" in text
    assert "over the limit" not in text and "secret-hash" not in text


# --- the result channel ----------------------------------------------------------

DEEP = 100_000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"ok": true, "result": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested more than"),
        (b"[" * DEEP, "nested more than"),
        (b'{"ok": true, "result": ' + b"[" * 300 + b"]" * 300 + b"}", "nested more than"),
        (b'{"ok": true, "result": ' + b"9" * 10_000 + b"}", "integer too large"),
        (b'{"ok": true, "result": 1e999}', "too large"),
        (b'{"ok": true, "result": NaN}', "NaN"),
        (b'{"ok": true, "result": "\xff\xfe"}', "invalid UTF-8"),
        (b'{"ok": true', "invalid JSON"),
        (b"[1, 2]", "no outcome record"),
    ],
    ids=["deep", "deep-garbage", "300-deep", "huge-int", "inf", "nan", "bad-utf8", "cut", "list"],
)
def test_a_hostile_result_record_gives_a_clear_error(data, reason):
    pr = _finish(None, None, bytearray(data), False, False, False, LogSink(print, 100), None)
    assert pr.record is None
    assert reason in pr.record_error


def test_a_plausible_record_is_kept_and_implausible_counters_dropped():
    nested = b"[" * (MAX_RECORD_DEPTH - 1) + b"]" * (MAX_RECORD_DEPTH - 1)
    data = b'{"ok": true, "result": ' + nested + b', "peak_kb": ' + b"9" * 30 + b', "cpu_ms": 7}'
    pr = _finish(None, None, bytearray(data), False, False, False, LogSink(print, 100), None)
    assert pr.record_error == ""
    assert pr.record["cpu_ms"] == 7 and "peak_kb" not in pr.record


# --- cleanup ----------------------------------------------------------------------


def test_remove_tree_takes_deep_odd_read_only_trees_and_follows_no_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "top"
    top.mkdir()
    _deep_tree(top, 1500)
    raw = os.fsencode(top)
    os.mkdir(raw + b"/\xff\xfe")
    with open(raw + b"/\xff\xfe/\xe9", "wb") as fh:
        fh.write(b"x")
    (top / "link-dir").symlink_to(outside)
    (top / "link-file").symlink_to(outside / "keep.txt")
    os.mkfifo(top / "fifo")
    (top / "ro" / "locked").mkdir(parents=True)
    (top / "ro" / "locked" / "f").write_text("x")
    if os.geteuid() == 0:
        os.chown(top / "ro" / "locked" / "f", 65534, 65534)
        os.chown(top / "ro" / "locked", 65534, 65534)
    os.chmod(top / "ro" / "locked", 0)
    os.chmod(top / "ro", 0o500)
    remove_tree(top)
    assert not os.path.lexists(top)
    assert (outside / "keep.txt").read_text() == "keep"
    remove_tree(top)  # gone already: fine


def test_remove_tree_does_not_follow_a_folder_swapped_for_a_link(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f.txt").write_text("x")
    real_open_dir = workspace._open_dir

    def swap_first(name, dir_fd):
        if name == "sub" and not (tmp_path / "moved").exists():
            os.rename(top / "sub", tmp_path / "moved")
            (top / "sub").symlink_to(outside)
        return real_open_dir(name, dir_fd)

    monkeypatch.setattr(workspace, "_open_dir", swap_first)
    remove_tree(top)
    assert not os.path.lexists(top)
    assert (outside / "keep.txt").read_text() == "keep"


def test_prune_workspaces_and_prune_envs_remove_a_deep_stale_workspace(settings, tmp_path):
    settings.WORKSPACES_DIR = tmp_path / "workspaces"
    settings.ENVS_DIR = tmp_path / "envs"
    stale, fresh = settings.WORKSPACES_DIR / "old-run", settings.WORKSPACES_DIR / "new-run"
    for path in (stale, fresh):
        (path / "work").mkdir(parents=True)
        _deep_tree(path / "work", 1500)
    long_ago = time.time() - 3 * 86400
    os.utime(stale, (long_ago, long_ago))
    out = StringIO()
    call_command("prune_envs", "--days", "30", stdout=out)
    assert "Removed 1 stale workspace(s)." in out.getvalue()
    assert sorted(os.listdir(settings.WORKSPACES_DIR)) == ["new-run"]
    os.utime(fresh, (long_ago, long_ago))
    assert prune_workspaces(older_than_hours=24) == ["new-run"]
    assert os.listdir(settings.WORKSPACES_DIR) == []


# --- end to end: the real runner ------------------------------------------------


@pytest.fixture
def workspaces(settings):
    """The workspaces folder, checked to be empty again (disk usage back to that of
    an empty folder) once the runner's background remover is done."""
    top = Path(settings.WORKSPACES_DIR)
    yield top
    assert _wait_until_empty(top) == []
    empty = top.parent / f"empty-{uuid.uuid4().hex}"
    empty.mkdir()
    try:
        assert _usage(top) == _usage(empty)
    finally:
        empty.rmdir()


@pytest.mark.slow
def test_run_with_20000_tiny_files_keeps_its_log_and_skipped_list_bounded(run, backend, workspaces):
    r = run(
        """
        import os
        def main():
            os.mkdir("out")
            for i in range(20_000):
                open(f"out/{i:05}.txt", "w").close()
            return {"made": len(os.listdir("out"))}
        """,
        max_files=100,
        timeout_seconds=60,
    )
    assert r.status == "succeeded", r.log
    assert r.result == {"made": 20_000}
    assert len(r.files) == 100
    assert len(r.skipped_files) <= MAX_REASONS + 2
    assert any("more files not collected" in line for line in r.skipped_files)
    assert len(r.log) < 20_000


@pytest.mark.slow
def test_run_leaving_a_1500_level_tree_and_a_non_utf8_name_ends_cleanly(run, backend, workspaces):
    r = run(
        """
        import os
        def main():
            open("ok.txt", "w").write("fine")
            open(b"caf\\xe9.csv", "wb").write(b"a,b\\n")
            top = os.open(".", os.O_RDONLY)
            for _ in range(1500):
                os.mkdir("d")
                os.chdir("d")
            open("bottom.txt", "w").write("deep")
            os.chmod(".", 0o500)
            os.fchdir(top)
            return {}
        """
    )
    assert r.status == "succeeded", r.log
    assert set(r.files) == {"ok.txt"}
    assert "caf\\xe9.csv: the name is not valid UTF-8 (not collected)" in r.skipped_files
    assert sum(f"deeper than {MAX_DEPTH} levels" in line for line in r.skipped_files) == 1


@pytest.mark.slow
def test_run_sending_a_record_nested_100000_levels_deep_gets_a_clear_error(
    run, backend, workspaces
):
    r = run(
        """
        import gc, os
        def main():
            channel = next(o for o in gc.get_objects() if type(o).__name__ == "_Channel")
            data = b'{"ok": true, "result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            view = memoryview(data)
            while view:
                view = view[os.write(channel.fd, view):]
            os._exit(0)
        """
    )
    assert (r.status, r.error_code) == ("failed", "SCRIPT_ERROR"), r.log
    assert f"nested more than {MAX_RECORD_DEPTH} levels deep" in r.error_message

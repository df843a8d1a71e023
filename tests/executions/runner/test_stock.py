"""Groups made ahead (stock.py) and the janitor thread that makes them (janitor.py):
real cgroups, real threads."""

import threading
import time
from types import SimpleNamespace

import pytest

from executions.runner import cgroups, janitor, stock

SIZES = {"memory_bytes": 64 << 20, "max_processes": 16}


@pytest.fixture
def kept():
    """A stock of this test's own (the module's serves the runs of other tests)."""
    if not cgroups.version():
        pytest.skip("no cgroups here")
    own = stock._Stock()
    yield own
    own.clear()


def _exists(group) -> bool:
    return all(path.is_dir() for path in group.dirs)


def test_a_group_made_ahead_is_taken_once_with_its_limits(kept):
    kept.make("warm-t1-", **SIZES)
    assert kept.take("warm-t1-", memory_bytes=128 << 20, max_processes=16) is None  # others
    group = kept.take("warm-t1-", **SIZES)
    try:
        assert group is not None and _exists(group) and group.name.startswith("warm-t1-")
        assert kept.take("warm-t1-", **SIZES) is None  # taken: not handed out twice
    finally:
        group.remove()


def test_a_group_removed_meanwhile_is_not_handed_out(kept):
    kept.make("warm-t2-", **SIZES)
    made = kept._groups[("warm-t2-", *SIZES.values())]
    made.remove()  # pruned: its template ended
    assert kept.take("warm-t2-", **SIZES) is None


def test_one_group_is_kept_per_template_and_limits_and_the_oldest_goes(kept, monkeypatch):
    monkeypatch.setattr(stock, "MAX_KEPT", 2)
    kept.make("warm-a-", **SIZES)
    first = kept._groups[("warm-a-", *SIZES.values())]
    kept.make("warm-a-", **SIZES)  # kept already: nothing made
    assert kept._groups[("warm-a-", *SIZES.values())] is first
    kept.make("warm-b-", **SIZES)
    kept.make("warm-c-", **SIZES)
    assert [key[0] for key in kept._groups] == ["warm-b-", "warm-c-"]
    assert not _exists(first), "the group let go of was not removed"
    left = list(kept._groups.values())
    kept.clear()
    assert kept._groups == {} and not any(_exists(group) for group in left)


def test_the_janitor_goes_on_after_a_job_that_failed():
    done = []

    def fails():
        raise OSError("a group could not be removed")

    janitor.submit(fails)
    janitor.submit(lambda: done.append(threading.current_thread().name))
    assert janitor.wait_idle(5)
    assert done == ["run-janitor"]


def test_a_job_waits_until_the_run_that_gave_it_has_answered():
    # the run's final write and answer need the GIL first: the job starts QUIET_SECONDS
    # after it was given, and a job given long ago (a backlog) does not wait again
    started = []
    given = time.monotonic()
    janitor.submit(lambda: started.append(time.monotonic()))
    assert janitor.wait_idle(5)
    assert started[0] - given >= janitor.QUIET_SECONDS
    slept = []
    clock = SimpleNamespace(monotonic=lambda: 100.0, sleep=slept.append)  # a still clock
    janitor.wait_quietly(90.0, clock)
    assert slept == []
    janitor.wait_quietly(100.0 - janitor.QUIET_SECONDS / 4, clock)
    assert slept == [pytest.approx(janitor.QUIET_SECONDS * 3 / 4)]


def test_a_group_made_after_the_stock_closed_is_removed_not_kept(kept, monkeypatch):
    # at exit the stock closes before the janitor's last jobs are done: a group one of
    # them makes then must not be left behind
    made = []
    open_run = cgroups.open_run

    def remembered(*args, **kwargs):
        made.append(open_run(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cgroups, "open_run", remembered)
    kept.close()
    kept.make("warm-x-", **SIZES)
    assert kept._groups == {}
    assert made and made[0] is not None and not _exists(made[0])

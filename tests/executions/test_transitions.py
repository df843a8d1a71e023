"""One status-transition function for runs (executions.transitions)."""

import pytest
from model_bakery import baker

from executions.models import Execution
from executions.transitions import ALLOWED, execution_transition

S = Execution.Status


def test_the_lifecycle():
    assert ALLOWED == {
        S.QUEUED: {S.RUNNING, S.CANCELLED},
        S.RUNNING: {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.LOST},
    }
    assert not set(ALLOWED) & set(Execution.FINISHED)  # finished runs never change


@pytest.mark.django_db
def test_a_move_applies_once_and_only_from_the_expected_status():
    run = baker.make(Execution, script_path="x.py", status=S.QUEUED)
    runs = Execution.objects.filter(pk=run.pk)
    assert execution_transition(runs=runs, source=S.QUEUED, target=S.RUNNING, worker="w") == 1
    assert execution_transition(runs=runs, source=S.QUEUED, target=S.RUNNING) == 0  # claimed
    assert execution_transition(runs=runs, source=S.RUNNING, target=S.SUCCEEDED) == 1
    assert execution_transition(runs=runs, source=S.RUNNING, target=S.LOST) == 0
    run.refresh_from_db()
    assert (run.status, run.worker) == (S.SUCCEEDED, "w")


@pytest.mark.django_db
def test_a_move_the_lifecycle_does_not_have_is_refused():
    run = baker.make(Execution, script_path="x.py", status=S.SUCCEEDED)
    with pytest.raises(ValueError):
        execution_transition(
            runs=Execution.objects.filter(pk=run.pk), source=S.SUCCEEDED, target=S.RUNNING
        )
    with pytest.raises(ValueError):
        execution_transition(runs=Execution.objects.all(), source=S.QUEUED, target=S.LOST)

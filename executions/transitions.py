"""The one way a run changes status.

A run moves ``queued`` -> ``running`` (a worker claims it) or ``cancelled`` (before it
started); ``running`` -> ``succeeded``, ``failed``, ``timed_out``, ``cancelled`` (its
worker ends it) or ``lost`` (the reaper: no heartbeat). Finished statuses never
change. Every change is a conditional UPDATE from the status the caller expects, so
two actors racing on one run never both win (a duplicate delivery finds the run
claimed; a cancel and a finish cannot both apply).
"""

from django.db.models import QuerySet

from executions.models import Execution

S = Execution.Status
ALLOWED: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.LOST}),
}


def execution_transition(*, runs: QuerySet[Execution], source: str, target: str, **fields) -> int:
    """Move the runs of ``runs`` that are in ``source`` to ``target`` (with ``fields``
    written in the same UPDATE); returns how many moved. ValueError for a move the
    lifecycle does not have (a programming error, not a user's)."""
    if target not in ALLOWED.get(source, ()):
        raise ValueError(f"A run cannot go from {source!r} to {target!r}.")
    return runs.filter(status=source).update(status=target, **fields)

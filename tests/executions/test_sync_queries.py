"""The sync API path does no work it does not need: the queries of one sync run are
pinned (issue 10). The runs are real (a sandboxed subprocess each).

Under ``django_db`` the test holds a transaction open, so ``execution_run_and_wait``
runs the run inline on the request's connection, and every query of the request and
of the run is counted here. In production the run goes through a thread with its own
connection: the same queries, with BEGIN/COMMIT where the test has savepoints.

The counts are the same on SQLite and PostgreSQL (Django issues the same savepoints
on both). Queries that depend on how long a run takes rather than on the run (a
cancel poll every CANCEL_POLL_SECONDS, a heartbeat every HEARTBEAT_SECONDS, a log
chunk for lines printed PROMPT_SECONDS after the last one, a partial line held
FLUSH_SECONDS) are put out of reach, so that a slow machine counts the same.
"""

import textwrap

import pytest

from audit.models import AuditEvent
from executions import heartbeat, logbook, services, worker
from executions.logbook import log_text
from executions.models import Execution
from scripts import services as script_services

LIGHT = "def main(a: int, b: int) -> dict:\n    return {'sum': a + b}\n"

LINES_AND_A_FILE = """
def main(n: int = 3) -> dict:
    for i in range(n):
        print("line", i)
    with open("out.csv", "w") as fh:
        fh.write("a,b\\n1,2\\n")
    return {"n": n}
"""

# One sync run of a light function script at the top level (no log, no file, no
# secret, no limit):
#  1 SELECT user (JWT authentication)
#  2 SELECT script + folder + current version (script_get_for_run); the top level
#    needs no folder permission query
#  3 SAVEPOINT                       } execution_start's transaction.atomic()
#  4 INSERT Execution (running)      }   the run is recorded before it starts, claimed
#  5 INSERT AuditEvent run.started   }   by this process already (no queued row to
#  6 RELEASE SAVEPOINT               }   claim with a second query)
#  7 UPDATE Execution running -> succeeded, with result, usage and log_size (the row is
#    not read back: the worker knows what it wrote; and jobs' execution_finished
#    receiver asks no question about a run that no pipeline started)
LIGHT_RUN_QUERIES = 7

# A script in a folder: + SELECT the folder and its ancestors with the user's group
# access (scripts.permissions: may they read it?), those rows only.
IN_A_FOLDER_QUERIES = LIGHT_RUN_QUERIES + 1

# The same with both limits in force: + SELECT the user's row FOR UPDATE (no FOR
# UPDATE on SQLite, still one query) + one SELECT counting runs active and runs of
# the last hour together.
LIMITED_RUN_QUERIES = LIGHT_RUN_QUERIES + 2

# A run printing three lines and leaving one file: the light run's 7, plus
#  SAVEPOINT, INSERT StoredFile, RELEASE SAVEPOINT (storage's file_store)
#  INSERT Artifact
#  INSERT ExecutionLogChunk (the whole log, one chunk: its size goes with the outcome)
#  at most one INSERT ExecutionLogChunk more: a run's first line is written at once,
#   so that a follower sees it within 0.1 s (issue 10); no rule can tell a first
#   line followed by more output from one followed by silence, and whether the
#   script's three lines reach the worker in one read or several is up to timing
#   (print() writes each part separately). The others go in the last chunk.
LINES_AND_A_FILE_QUERIES = LIGHT_RUN_QUERIES + 6


@pytest.fixture(autouse=True)
def _no_timed_queries(monkeypatch):
    monkeypatch.setattr(worker, "CANCEL_POLL_SECONDS", 3600)
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 3600)
    monkeypatch.setattr(logbook, "FLUSH_SECONDS", 3600)
    monkeypatch.setattr(logbook, "PROMPT_SECONDS", 3600)


def _ready(script) -> None:
    """The script's environment exists (as after its first run, or the admin's "Prepare
    environment"): a first run would log its building, one chunk more."""
    services.environment_prepare(script=script)


def _sync_run(api, path: str, data: dict) -> dict:
    response = api.post(f"/api/v1/run/{path}", {"data": data}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_a_light_sync_run_makes_a_pinned_number_of_queries(
    api, user, upload, django_assert_num_queries
):
    _ready(upload(LIGHT, name="add.py"))
    with django_assert_num_queries(LIGHT_RUN_QUERIES):
        body = _sync_run(api, "add.py", {"a": 2, "b": 3})
    assert body["success"] is True and body["result"] == {"sum": 5}
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.status == "succeeded" and execution.source == "sync"
    assert execution.started_at and execution.finished_at and execution.worker
    assert execution.result == {"sum": 5} and execution.progress_percent == 100
    assert AuditEvent.objects.filter(
        action="run.started", target_id=str(execution.pk), actor=user
    ).exists()


@pytest.mark.django_db
def test_a_script_in_a_folder_costs_one_query_for_its_folder(api, user, django_assert_num_queries):
    outer = script_services.folder_create(user=user, name="team")
    inner = script_services.folder_create(user=user, name="reports", parent=outer)
    version = script_services.script_upload(
        user=user, file_name="add.py", content=textwrap.dedent(LIGHT).encode(), folder=inner
    )
    _ready(version.script)
    with django_assert_num_queries(IN_A_FOLDER_QUERIES):
        body = _sync_run(api, "team/reports/add.py", {"a": 2, "b": 2})
    assert body["success"] is True and body["result"] == {"sum": 4}


@pytest.mark.django_db
def test_limits_in_force_cost_two_queries(api, upload, settings, django_assert_num_queries):
    settings.MAX_EXECUTIONS_PER_HOUR = 100
    settings.MAX_CONCURRENT_EXECUTIONS = 5
    _ready(upload(LIGHT, name="add.py"))
    with django_assert_num_queries(LIMITED_RUN_QUERIES):
        body = _sync_run(api, "add.py", {"a": 1, "b": 1})
    assert body["success"] is True and body["result"] == {"sum": 2}


@pytest.mark.django_db
def test_a_sync_run_with_log_lines_and_a_file_stays_within_its_count(
    api, upload, django_assert_max_num_queries
):
    _ready(upload(LINES_AND_A_FILE, name="files.py"))
    with django_assert_max_num_queries(LINES_AND_A_FILE_QUERIES):
        body = _sync_run(api, "files.py", {"n": 3})
    assert body["success"] is True and body["result"] == {"n": 3}
    execution = Execution.objects.get(pk=body["execution_id"])
    log = log_text(execution_id=execution.pk)
    assert "line 0\nline 1\nline 2\n" in log
    assert execution.log_size == len(log.encode()) and not execution.log_truncated
    assert [(a.name, a.category, a.size) for a in execution.artifacts.all()] == [
        ("out.csv", "data", 8)
    ]

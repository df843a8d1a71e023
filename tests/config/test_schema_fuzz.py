"""Schemathesis over the whole published OpenAPI, in-process (WSGI), as a staff user.

Every operation gets a few generated requests (valid and invalid); each response must
not be a 5xx and must match the schema: its status documented, its content type and
its body as declared. It runs on whichever database the suite uses (SQLite, and
PostgreSQL in CI's second run).

The world holds one of each thing (a folder, a script, a finished run with a log and
a file, a stored file without a run, a queue row whose legacy columns are NULL, an
SMTP parameter set, an invitation), and every other generated request names one of
them in its path, so that real objects are read, changed and deleted too (generated
ids alone would almost always be 404s).

Runs are recorded but never started: the enqueue and the sync run's inline run are
no-ops here (a generated request could otherwise start a real sandboxed run; the
runner has its own tests). The SSE endpoint only sees finished or missing runs, so
its stream ends at once.
"""

import collections
import io
import itertools
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import invitation_create
from mailqueue.models import EmailDetail, EmailParameter

# Small and derandomized in the suite (the same cases every run, about a minute);
# FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 for a deeper, random pass by hand.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM") != "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# The schemathesis client sends "Host: localhost": the test settings allow it (else
# every answer would be Django's 400 for a bad host, and the checks would pass on it).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

# Status classes seen across the run, and the operations called: proves the requests
# reached the views.
SEEN: collections.Counter = collections.Counter()
CALLED: set[str] = set()
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OPERATIONS = {
    f"{method.upper()} {path}"
    for path, item in schema.raw_schema["paths"].items()
    for method in item
    if method in METHODS
}
_turn = itertools.count()


@pytest.fixture
def fuzz_world(db, make_user, monkeypatch):
    """The Authorization header of a staff superuser, and the path values that name
    the objects of the world (see the module's docstring)."""
    from executions import services as execution_services
    from executions.models import Artifact, Execution, ExecutionLogChunk
    from scripts import services as script_services
    from storage import services as storage_services

    monkeypatch.setattr(execution_services, "_enqueue", lambda execution_id: None)
    monkeypatch.setattr(
        "executions.api.services.execution_run_and_wait",
        lambda *, execution, wait_seconds: execution,
    )
    staff = make_user(username="fuzz-staff", is_staff=True, is_superuser=True)
    folder = script_services.folder_create(user=staff, name="fuzz", parent=None)
    script = script_services.script_upload(
        user=staff,
        file_name="hello.py",
        content=b"def main(name: str = 'x') -> dict:\n    return {'hi': name}\n",
        folder=folder,
    ).script
    run = execution_services.execution_start(user=staff, script_ref=script.pk, inputs={})
    Execution.objects.filter(pk=run.pk).update(
        status=Execution.Status.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        exit_code=0,
        result={"hi": "x"},
    )
    ExecutionLogChunk.objects.create(execution=run, seq=1, text="hello\n")
    output = storage_services.file_store(
        fileobj=io.BytesIO(b"1,2\n"),
        original_name="out.csv",
        prefix=f"executions/{run.pk}",
        owner=staff,
        execution=run,
    )
    Artifact.objects.create(execution=run, stored_file=output, name="out.csv", size=4)
    upload = storage_services.file_store(
        fileobj=io.BytesIO(b"data"), original_name="a.txt", prefix="uploads", owner=staff
    )
    row = EmailDetail.objects.create(to_emails="someone@example.com", subject="fuzz")
    EmailParameter.objects.create(param_code="FUZZ", smtp_server="127.0.0.1", smtp_port=9)
    invitation = invitation_create(email="guest@example.com", invited_by=staff)
    token = RefreshToken.for_user(staff).access_token
    # Like Django's test client: the test's transaction must survive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {
        "headers": {"Authorization": f"Bearer {token}"},
        "ids": {
            "folders": folder.pk,
            "scripts": script.pk,
            "executions": run.pk,
            "invitations": invitation.pk,
            "queue": row.pk,
        },
        "code": "FUZZ",
        "key": upload.key,
        "logical_path": script.logical_path,
        "name": "out.csv",
    }
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _name_known_objects(case, world) -> None:
    """Every other request: the path parameters name the world's objects."""
    if next(_turn) % 2 or not case.path_parameters:
        return
    params = case.path_parameters
    if "id" in params:
        collection = next((c for c in world["ids"] if f"/{c}/" in case.path), None)
        if collection:
            params["id"] = world["ids"][collection]
    for name in ("code", "key", "logical_path", "name"):
        if name in params:
            params[name] = world[name]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=DERANDOMIZE,
)
def test_api_conforms_to_its_schema(case, fuzz_world):
    _name_known_objects(case, fuzz_world)
    response = case.call(headers=fuzz_world["headers"])
    SEEN[response.status_code // 100] += 1
    CALLED.add(f"{case.operation.method.upper()} {case.operation.path}")
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzing_reached_the_views():
    """Runs after the generated tests (file order): many answers were successes."""
    if CALLED != OPERATIONS:
        pytest.skip("not every generated test ran (a selection, or another process)")
    assert SEEN[2] >= 100, dict(SEEN)

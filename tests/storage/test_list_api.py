"""GET /api/v1/files/: the caller's files (and their runs'), filters, pinned queries."""

import io

import pytest
from model_bakery import baker

from storage import services
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def make(n, **kwargs):
    return [
        services.file_store(fileobj=io.BytesIO(b"x"), original_name=f"{i}.txt", **kwargs)
        for i in range(n)
    ]


def test_list_shows_own_and_run_files_only(
    api, user, other_user, staff_api, django_assert_max_num_queries
):
    mine = make(3, prefix="uploads/a", owner=user)
    run = baker.make("executions.Execution", requested_by=user)
    from_run = make(2, prefix=f"executions/{run.pk}", execution=run)
    make(4, prefix="uploads/b", owner=other_user)
    with django_assert_max_num_queries(3):
        response = api.get("/api/v1/files/")
    assert response.status_code == 200
    keys = {f["key"] for f in response.json()["results"]}
    assert keys == {f.key for f in mine + from_run}
    assert response.json()["count"] == 5
    with django_assert_max_num_queries(3):
        assert staff_api.get("/api/v1/files/").json()["count"] == 9


def test_list_filters(api, user):
    a = make(2, prefix="uploads/a", owner=user)
    make(1, prefix="uploads/ab", owner=user)
    run = baker.make("executions.Execution", requested_by=user)
    r = make(1, prefix="out", owner=user, execution=run)
    got = api.get("/api/v1/files/?prefix=uploads/a").json()["results"]
    assert {f["key"] for f in got} == {f.key for f in a}
    got = api.get(f"/api/v1/files/?execution={run.pk}").json()["results"]
    assert [f["key"] for f in got] == [r[0].key]
    assert_error(api.get("/api/v1/files/?prefix=../x"), 400, "INVALID_KEY")
    assert_error(api.get("/api/v1/files/?execution=abc"), 400, "VALIDATION_ERROR")


def test_list_needs_authentication(anon_client):
    assert_error(anon_client.get("/api/v1/files/"), 401)

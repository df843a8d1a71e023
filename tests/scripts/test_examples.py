"""Examples guard versions: a new version that fails one is refused (409) unless forced,
and every version keeps its example results."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from scripts.models import ExampleResult, Script, ScriptExample
from tests.helpers import assert_error

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOOD = b"def main(a: int, b: int) -> dict:\n    return {'sum': a + b}\n"
BROKEN = b"def main(a: int, b: int) -> dict:\n    return {'sum': a - b}\n"
CRASHES = b"def main(a: int, b: int) -> dict:\n    raise SystemExit(3)\n"


def _upload(api, content, **fields):
    data = {"file": SimpleUploadedFile("add.py", content), **fields}
    return api.post("/api/v1/scripts/", data, format="multipart")


@pytest.fixture
def script_with_example(api):
    assert _upload(api, GOOD).status_code == 201
    script = Script.objects.get(name="add.py")
    response = api.post(
        f"/api/v1/scripts/{script.pk}/examples/",
        {"name": "two plus three", "inputs": {"a": 2, "b": 3}, "expected_result": {"sum": 5}},
        format="json",
    )
    assert response.status_code == 201, response.content
    return script


def test_a_version_that_fails_an_example_is_refused_and_nothing_is_written(
    api, script_with_example
):
    body = assert_error(_upload(api, BROKEN, replace="true"), 409, "EXAMPLE_FAILED")
    assert body["details"]["example"] == "two plus three"
    assert body["details"]["expected"] == {"sum": 5} and body["details"]["got"] == {"sum": -1}
    script_with_example.refresh_from_db()
    assert script_with_example.versions.count() == 1
    assert script_with_example.current_version.number == 1


def test_a_version_that_passes_is_accepted_and_keeps_its_results(api, script_with_example):
    same_sum = GOOD.replace(b"a + b", b"b + a")
    response = _upload(api, same_sum, replace="true")
    assert response.status_code == 201, response.content
    result = ExampleResult.objects.get(version__number=2)
    assert (result.example_name, result.passed) == ("two plus three", True)


def test_force_accepts_a_failing_version_and_records_the_failure(api, script_with_example):
    response = _upload(api, CRASHES, replace="true", force="true")
    assert response.status_code == 201, response.content
    result = ExampleResult.objects.get(version__number=2)
    assert result.passed is False and "sys.exit(3)" in result.detail


def test_an_expected_exit_code_guards_command_scripts(api):
    command = b"import sys\nsys.exit(int(sys.argv[1]))\n"
    data = {"file": SimpleUploadedFile("cli.py", command)}
    assert api.post("/api/v1/scripts/", data, format="multipart").status_code == 201
    script = Script.objects.get(name="cli.py")
    api.post(
        f"/api/v1/scripts/{script.pk}/examples/",
        {"name": "ok", "args": ["0"], "expected_exit_code": 0},
        format="json",
    )
    changed = b"import sys\nsys.exit(int(sys.argv[1]) + 1)\n"
    data = {"file": SimpleUploadedFile("cli.py", changed), "replace": "true"}
    response = api.post("/api/v1/scripts/", data, format="multipart")
    body = assert_error(response, 409, "EXAMPLE_FAILED")
    assert body["details"]["got"] == 1


def test_examples_need_an_expectation_and_edit_rights(
    api, script_with_example, client_for, other_user
):
    url = f"/api/v1/scripts/{script_with_example.pk}/examples/"
    body = assert_error(api.post(url, {"name": "nothing"}, format="json"), 400)
    assert "expected_result" in body["details"]
    assert_error(
        api.post(url, {"name": "two plus three", "expected_exit_code": 0}, format="json"), 409
    )
    other = client_for(other_user)
    response = other.post(url, {"name": "x", "expected_exit_code": 0}, format="json")
    assert response.status_code in (403, 404)
    assert ScriptExample.objects.count() == 1
    listed = api.get(url).json()["results"]
    assert [e["name"] for e in listed] == ["two plus three"]
    example_id = listed[0]["id"]
    assert api.delete(f"{url}{example_id}/").status_code == 204
    assert not ScriptExample.objects.exists()


def test_the_admin_shows_each_versions_example_results(client, superuser, api, script_with_example):
    _upload(api, GOOD.replace(b"a + b", b"b + a"), replace="true")
    version = script_with_example.versions.get(number=2)
    client.force_login(superuser)
    page = client.get(f"/admin/scripts/scriptversion/{version.pk}/change/").content.decode()
    assert "Example results of this version" in page and "two plus three" in page
    page = client.get(f"/admin/scripts/script/{script_with_example.pk}/change/").content.decode()
    assert "Examples (every new version must pass them" in page

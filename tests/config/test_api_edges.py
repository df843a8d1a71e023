"""Inputs that used to escape the error shape: deep JSON, huge bodies, missing slashes,
unknown API paths (also with DEBUG on), non-numeric ids."""

import pytest
from django.test import override_settings

from tests.helpers import assert_error


@pytest.mark.django_db
def test_deeply_nested_json_is_a_parse_error_not_500(anon_client):
    body = '{"username": ' + "[" * 100000 + "]" * 100000 + ', "password": "x"}'
    response = anon_client.post("/api/v1/auth/token/", body, content_type="application/json")
    assert_error(response, 400, "PARSE_ERROR")


@pytest.mark.django_db
def test_json_body_over_the_limit_is_413(api, settings):
    settings.API_MAX_JSON_BYTES = 1000
    body = '{"script": "x.py", "data": {"pad": "' + "a" * 5000 + '"}}'
    response = api.post("/api/v1/executions/", body, content_type="application/json")
    assert_error(response, 413, "REQUEST_TOO_LARGE")


@pytest.mark.django_db
def test_post_without_trailing_slash_reaches_the_view(anon_client, user, password):
    response = anon_client.post(
        "/api/v1/auth/token", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200 and "access" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_paths_answer_json_404(api, debug):
    with override_settings(DEBUG=debug):
        for path in (
            "/api/v1/",
            "/api/v1/nonexistent/",
            "/api/v2/things",
            "/api/v1/mail/queue/abc/",
        ):
            response = api.get(path)
            assert_error(response, 404, "NOT_FOUND")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/scripts/abc/",
        "/api/v1/scripts/abc/versions/",
        "/api/v1/folders/abc/",
        "/api/v1/executions/abc/",
        "/api/v1/invitations/abc/",
    ],
)
def test_non_numeric_ids_are_404(staff_api, path):
    assert_error(staff_api.get(path), 404, "NOT_FOUND")

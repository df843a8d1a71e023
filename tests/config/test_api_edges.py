"""Inputs that used to escape the error shape: deep JSON, huge bodies, missing slashes,
unknown API paths (also with DEBUG on), non-numeric ids."""

import json

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


# Every endpoint that takes multipart bodies (POST), with a minimal URL.
MULTIPART_ENDPOINTS = [
    "/api/v1/executions/",
    "/api/v1/folders/",
    "/api/v1/scripts/",
    "/api/v1/files/upload",
    "/api/v1/mail/queue/",
    "/api/v1/invitations/",
    "/api/v1/run/some/script.py",
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", MULTIPART_ENDPOINTS)
def test_multipart_field_over_django_limit_is_413(staff_api, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = staff_api.post(url, {"pad": "a" * 5000}, format="multipart")
    error = assert_error(response, 413, "REQUEST_TOO_LARGE")
    assert error["details"] == {"limit_bytes": 1000}


@pytest.mark.django_db
@pytest.mark.parametrize("url", MULTIPART_ENDPOINTS)
def test_too_many_form_fields_is_400(staff_api, settings, url):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    fields = {f"f{i}": "1" for i in range(20)}
    assert_error(staff_api.post(url, fields, format="multipart"), 400, "TOO_MANY_FIELDS")


@pytest.mark.django_db
@pytest.mark.parametrize("url", MULTIPART_ENDPOINTS)
def test_too_many_files_is_400(staff_api, settings, url):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [SimpleUploadedFile(f"f{i}.txt", b"x") for i in range(3)]
    assert_error(staff_api.post(url, {"file": files}, format="multipart"), 400, "TOO_MANY_FILES")


@pytest.mark.django_db
def test_urlencoded_body_over_django_limit_is_413(staff_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = staff_api.post(
        "/api/v1/folders/",
        "name=" + "a" * 5000,
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 413, "REQUEST_TOO_LARGE")


@pytest.mark.django_db
def test_too_many_query_fields_is_400(api):
    query = "&".join(f"f{i}=1" for i in range(1100))
    assert_error(api.get(f"/api/v1/auth/me/?{query}"), 400, "TOO_MANY_FIELDS")


def test_django_request_errors_outside_drf_views_answer_json(rf):
    from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent

    from config.api import handler400

    def answer(request, exc):
        response = handler400(request, exc)
        response.json = lambda: json.loads(response.content)
        return response

    response = answer(rf.post("/api/v1/whatever/"), RequestDataTooBig("too big"))
    assert_error(response, 413, "REQUEST_TOO_LARGE")
    response = answer(rf.get("/api/v1/whatever/"), TooManyFieldsSent("many"))
    assert_error(response, 400, "TOO_MANY_FIELDS")
    assert handler400(rf.get("/admin/"), TooManyFieldsSent("many"))["Content-Type"].startswith(
        "text/html"
    )


@pytest.fixture
def jwt_client(staff_user):
    """A client as real ones are: a bearer token, and CSRF checks not switched off (the
    test clients skip them unless asked)."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient(enforce_csrf_checks=True)
    token = RefreshToken.for_user(staff_user).access_token
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/folders/abc/",
        "/api/v1/scripts/abc/",
        "/api/v1/invitations/abc/",
        "/api/v1/mail/queue/abc/requeue/",
        "/api/v1/nonexistent/",
    ],
)
def test_unsafe_methods_on_unknown_paths_are_json_404(jwt_client, method, path):
    response = getattr(jwt_client, method)(path, {"name": "x"}, format="json")
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_the_api_still_answers_json_clients_with_csrf_checks_on(jwt_client):
    response = jwt_client.post("/api/v1/folders/", {"name": "x"}, format="json")
    assert response.status_code == 201, response.content


def test_csrf_failure_under_api_is_json(rf):
    from config.api import csrf_failure

    response = csrf_failure(rf.post("/api/v1/whatever/"), reason="CSRF cookie not set.")
    response.json = lambda: json.loads(response.content)
    assert_error(response, 403, "CSRF_FAILED")
    assert csrf_failure(rf.post("/admin/login/"), reason="x")["Content-Type"].startswith(
        "text/html"
    )

import pytest

from tests.helpers import assert_error


@pytest.mark.django_db
def test_400_validation_error_has_field_details(staff_api):
    response = staff_api.post("/api/v1/invitations/", {"email": "not-an-email"}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "email" in error["details"]


@pytest.mark.django_db
def test_400_malformed_json_is_parse_error(staff_api):
    response = staff_api.post(
        "/api/v1/invitations/", data="{not json", content_type="application/json"
    )
    assert_error(response, 400, "PARSE_ERROR")


@pytest.mark.django_db
def test_401_without_credentials(anon_client):
    response = anon_client.get("/api/v1/invitations/")
    assert_error(response, 401, "NOT_AUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_401_with_a_bad_token(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer abc.def.ghi")
    assert_error(anon_client.get("/api/v1/auth/me/"), 401, "TOKEN_INVALID")


@pytest.mark.django_db
def test_403_for_non_staff(api):
    assert_error(api.get("/api/v1/invitations/"), 403, "PERMISSION_DENIED")


@pytest.mark.django_db
def test_404_for_missing_object(staff_api):
    assert_error(staff_api.get("/api/v1/invitations/999999/"), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_404_for_unknown_api_path(api):
    assert_error(api.get("/api/v1/no-such-thing/"), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_405_method_not_allowed(api):
    assert_error(api.delete("/api/v1/auth/me/"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.django_db
def test_500_has_no_internals(api, monkeypatch):
    from accounts.api import MeView

    def boom(self, request):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(MeView, "get", boom)
    response = api.get("/api/v1/auth/me/", HTTP_X_REQUEST_ID="req-123")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    text = response.content.decode()
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert error["details"] == {"request_id": "req-123"}


@pytest.mark.django_db
def test_request_id_is_echoed_or_generated(api):
    assert api.get("/api/v1/auth/me/", HTTP_X_REQUEST_ID="abc-1")["X-Request-ID"] == "abc-1"
    generated = api.get("/api/v1/auth/me/", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"]
    assert len(generated) == 32 and " " not in generated


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert "/api/v1/auth/token/" in spec["paths"]
    assert "Error" in spec["components"]["schemas"]
    me = spec["paths"]["/api/v1/auth/me/"]["get"]["responses"]
    assert me["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.django_db
def test_pagination_shape(staff_api, staff_user):
    from accounts import services

    for i in range(3):
        services.invitation_create(email=f"p{i}@example.com", invited_by=staff_user)
    body = staff_api.get("/api/v1/invitations/?page_size=2").json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]

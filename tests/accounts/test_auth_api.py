import pytest
from django.urls import reverse

from tests.helpers import assert_error

TOKEN_URL = "/api/v1/auth/token/"


@pytest.mark.django_db
def test_token_obtain_with_json(anon_client, user, password):
    response = anon_client.post(
        TOKEN_URL, {"username": "alice", "password": password}, format="json"
    )
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


@pytest.mark.django_db
def test_token_obtain_with_form_body(anon_client, user, password):
    response = anon_client.post(
        TOKEN_URL,
        "username=alice&password=" + password,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "access" in response.json()


@pytest.mark.django_db
def test_bad_credentials_are_401_in_error_shape(anon_client, user):
    response = anon_client.post(TOKEN_URL, {"username": "alice", "password": "nope"}, format="json")
    error = assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert "nope" not in str(error)


@pytest.mark.django_db
def test_inactive_user_cannot_get_token(anon_client, make_user, password):
    make_user(username="gone", is_active=False)
    response = anon_client.post(
        TOKEN_URL, {"username": "gone", "password": password}, format="json"
    )
    assert_error(response, 401, "AUTHENTICATION_FAILED")


@pytest.mark.django_db
def test_missing_fields_are_validation_error_with_field_details(anon_client):
    response = anon_client.post(TOKEN_URL, {}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"username", "password"}


@pytest.mark.django_db
def test_login_attempts_are_throttled(anon_client, user):
    # test settings: 5 per minute
    for _ in range(5):
        r = anon_client.post(TOKEN_URL, {"username": "alice", "password": "x"}, format="json")
        assert r.status_code == 401
    response = anon_client.post(TOKEN_URL, {"username": "alice", "password": "x"}, format="json")
    error = assert_error(response, 429, "THROTTLED")
    assert error["details"]["wait_seconds"] > 0
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_refresh_gives_new_access_token(anon_client, user, password):
    tokens = anon_client.post(
        TOKEN_URL, {"username": "alice", "password": password}, format="json"
    ).json()
    response = anon_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert response.status_code == 200
    assert response.json()["access"]


@pytest.mark.django_db
def test_refresh_with_garbage_is_401(anon_client):
    response = anon_client.post("/api/v1/auth/token/refresh/", {"refresh": "garbage"})
    assert_error(response, 401, "TOKEN_INVALID")


@pytest.mark.django_db
def test_verify_accepts_good_and_refuses_bad_token(anon_client, user, password):
    tokens = anon_client.post(
        TOKEN_URL, {"username": "alice", "password": password}, format="json"
    ).json()
    ok = anon_client.post("/api/v1/auth/token/verify/", {"token": tokens["access"]})
    assert ok.status_code == 200
    bad = anon_client.post("/api/v1/auth/token/verify/", {"token": tokens["access"] + "x"})
    assert_error(bad, 401, "TOKEN_INVALID")


@pytest.mark.django_db
def test_me_returns_the_signed_in_user(api, user):
    body = api.get("/api/v1/auth/me/").json()
    assert body["username"] == "alice"
    assert body["email"] == user.email
    assert "password" not in body


@pytest.mark.django_db
def test_me_without_token_is_401(anon_client):
    assert_error(anon_client.get("/api/v1/auth/me/"), 401, "NOT_AUTHENTICATED")


@pytest.mark.django_db
def test_token_updates_last_login(anon_client, user, password):
    assert user.last_login is None
    anon_client.post(TOKEN_URL, {"username": "alice", "password": password}, format="json")
    user.refresh_from_db()
    assert user.last_login is not None


def test_url_names_resolve():
    assert reverse("token_obtain") == TOKEN_URL

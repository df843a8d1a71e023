"""API keys: made once, sent as 'Authorization: Api-Key <key>', acting as their user."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import api_keys
from accounts.models import UserAPIKey
from audit.models import AuditEvent
from tests.helpers import assert_error

URL = "/api/v1/auth/api-keys/"


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def made(user):
    """(record, key) of a key of ``user``."""
    return api_keys.api_key_create(user=user, name="ci")


@pytest.mark.django_db
def test_create_answers_the_key_once_and_list_never_shows_it(api):
    response = api.post(URL, {"name": "simulation"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"id", "name", "prefix", "key", "expires_at", "revoked"}
    assert body["key"].startswith(body["prefix"] + ".") and body["name"] == "simulation"
    listed = api.get(URL).json()
    assert listed["count"] == 1
    assert "key" not in listed["results"][0] and listed["results"][0]["id"] == body["id"]
    assert body["key"] not in api.get(URL).content.decode()


@pytest.mark.django_db
def test_the_key_is_stored_hashed_only(made):
    record, key = made
    secret_part = key.split(".", 1)[1]
    row = UserAPIKey.objects.filter(pk=record.pk).values().get()
    assert not any(secret_part in str(value) for value in row.values())
    assert row["hashed_key"].startswith("sha512$$")
    # Not in the audit trail either.
    assert not any(secret_part in str(e.details) for e in AuditEvent.objects.all())


@pytest.mark.django_db
def test_a_key_authenticates_as_its_user(made, user):
    _, key = made
    response = key_client(key).get("/api/v1/auth/me/")
    assert response.status_code == 200, response.content
    assert response.json()["username"] == user.username


@pytest.mark.django_db(transaction=True)
def test_a_key_runs_a_script_synchronously(made, user):
    from scripts.services import script_upload

    script_upload(
        user=user,
        file_name="add.py",
        content=b"def main(a: int, b: int) -> dict:\n    return {'sum': a + b}\n",
        folder=None,
    )
    _, key = made
    response = key_client(key).post("/api/v1/run/add.py", {"data": {"a": 2, "b": 3}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["result"] == {"sum": 5}
    event = AuditEvent.objects.get(action="run.started")
    assert event.actor == user


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Api-Key nope",
        "Api-Key abcdefgh.wrongwrongwrongwrongwrongwrongwr",
        "Api-Key",
        "Api-Key a b",
    ],
)
def test_a_wrong_key_is_401(anon_client, made, header):
    anon_client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(anon_client.get("/api/v1/auth/me/"), 401, "AUTHENTICATION_FAILED")


@pytest.mark.django_db
def test_a_key_with_a_wrong_secret_part_is_401(made):
    record, key = made
    assert_error(key_client(record.prefix + ".x" * 16).get("/api/v1/auth/me/"), 401)
    assert_error(key_client(key[:-1] + "?").get("/api/v1/auth/me/"), 401)


@pytest.mark.django_db
def test_a_revoked_key_is_401(api, made):
    record, key = made
    assert api.delete(f"{URL}{record.pk}/").status_code == 204
    error = assert_error(key_client(key).get("/api/v1/auth/me/"), 401, "AUTHENTICATION_FAILED")
    assert "revoked" in error["message"]
    record.refresh_from_db()
    assert record.revoked and api.get(URL).json()["results"][0]["revoked"] is True


@pytest.mark.django_db
def test_an_expired_key_is_401(user):
    record, key = api_keys.api_key_create(
        user=user, name="short", expires_at=timezone.now() + timedelta(seconds=60)
    )
    assert key_client(key).get("/api/v1/auth/me/").status_code == 200
    UserAPIKey.objects.filter(pk=record.pk).update(expiry_date=timezone.now() - timedelta(1))
    error = assert_error(key_client(key).get("/api/v1/auth/me/"), 401)
    assert "expired" in error["message"]


@pytest.mark.django_db
def test_an_inactive_users_key_is_401(made, user):
    _, key = made
    user.is_active = False
    user.save()
    assert_error(key_client(key).get("/api/v1/auth/me/"), 401, "AUTHENTICATION_FAILED")


@pytest.mark.django_db
def test_an_expiry_in_the_past_or_an_empty_name_is_400(api):
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    assert (
        "expires_at"
        in assert_error(api.post(URL, {"name": "x", "expires_at": past}, format="json"), 400)[
            "details"
        ]
    )
    assert_error(api.post(URL, {"name": "  "}, format="json"), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_a_user_cannot_list_or_revoke_anothers_key(client_for, other_user, made):
    record, key = made
    other = client_for(other_user)
    assert other.get(URL).json()["count"] == 0
    assert_error(other.delete(f"{URL}{record.pk}/"), 404)
    assert key_client(key).get("/api/v1/auth/me/").status_code == 200


@pytest.mark.django_db
def test_keys_are_managed_only_when_signed_in(anon_client):
    assert_error(anon_client.get(URL), 401)
    assert_error(anon_client.post(URL, {"name": "x"}, format="json"), 401)


@pytest.mark.django_db
def test_create_use_and_revoke_are_audited_use_once_a_day(api, user):
    key = api.post(URL, {"name": "audited"}, format="json").json()
    client = key_client(key["key"])
    for _ in range(3):
        assert client.get("/api/v1/auth/me/").status_code == 200
    api.delete(f"{URL}{key['id']}/")
    actions = list(
        AuditEvent.objects.filter(action__startswith="api_key.")
        .order_by("id")
        .values_list("action", "actor", "target_id")
    )
    assert actions == [
        ("api_key.created", user.pk, str(key["id"])),
        ("api_key.used", user.pk, str(key["id"])),
        ("api_key.revoked", user.pk, str(key["id"])),
    ]


@pytest.mark.django_db
def test_the_first_use_of_the_next_day_is_recorded_again(made):
    record, key = made
    client = key_client(key)
    client.get("/api/v1/auth/me/")
    UserAPIKey.objects.filter(pk=record.pk).update(last_used_at=timezone.now() - timedelta(days=1))
    client.get("/api/v1/auth/me/")
    client.get("/api/v1/auth/me/")
    assert AuditEvent.objects.filter(action="api_key.used").count() == 2


@pytest.mark.django_db
def test_admin_revokes_and_never_deletes(client, superuser, made):
    record, key = made
    client.force_login(superuser)
    response = client.post(
        "/admin/accounts/userapikey/",
        {"action": "revoke", "_selected_action": [record.pk]},
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.revoked
    assert_error(key_client(key).get("/api/v1/auth/me/"), 401)
    assert client.get(f"/admin/accounts/userapikey/{record.pk}/delete/").status_code == 403
    assert client.get("/admin/accounts/userapikey/").status_code == 200


@pytest.mark.django_db
def test_admin_add_shows_the_key_once(client, superuser, user):
    client.force_login(superuser)
    response = client.post(
        "/admin/accounts/userapikey/add/",
        {"name": "from-admin", "user": user.pk},
        follow=True,
    )
    assert response.status_code == 200
    record = UserAPIKey.objects.get(name="from-admin")
    shown = [str(m) for m in response.context["messages"]]
    assert any(record.prefix + "." in m for m in shown), shown

"""Secrets: write-only, encrypted at rest, used by runs that declare them, masked in
logs and events, refused before a run starts for a user who may not use them."""

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection

from executions.events import event_stream
from executions.models import Execution
from tests.helpers import assert_error
from vault import crypto
from vault.models import Secret

VALUE = "tok-9f3a-Very-Secret-Value"
SCRIPT = """
# Secrets: API_TOKEN
import os
def main() -> dict:
    token = os.environ["API_TOKEN"]
    print("the token is", token, flush=True)
    return {"length": len(token)}
"""


@pytest.fixture
def secret(api):
    response = api.post("/api/v1/secrets/", {"name": "API_TOKEN", "value": VALUE}, format="json")
    assert response.status_code == 201, response.content
    return Secret.objects.get(pk=response.json()["id"])


@pytest.mark.django_db
def test_create_answers_without_the_value_and_stores_it_encrypted(api, secret):
    body = api.get(f"/api/v1/secrets/{secret.pk}/").json()
    assert body["name"] == "API_TOKEN" and "value" not in body and VALUE not in str(body)
    assert VALUE not in str(api.get("/api/v1/secrets/").json())
    with connection.cursor() as cursor:
        cursor.execute("SELECT value_encrypted FROM vault_secret WHERE id = %s", [secret.pk])
        stored = cursor.fetchone()[0]
    assert VALUE not in stored and stored.startswith("fernet:")
    assert crypto.decrypt(stored) == VALUE


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "lower", "value": VALUE}, "name"),
        ({"name": "PATH", "value": VALUE}, "name"),
        ({"name": "LD_PRELOAD", "value": VALUE}, "name"),
        ({"name": "A" * 65, "value": VALUE}, "name"),
        ({"name": "OK_NAME", "value": "abc"}, "value"),
        ({"name": "OK_NAME", "value": "a\x00bcdef"}, "value"),
        ({"name": "OK_NAME", "value": VALUE, "groups": ["no-such-group"]}, "groups"),
        ({"name": "OK_NAME"}, "value"),
    ],
)
def test_bad_secrets_are_refused_and_nothing_is_stored(api, payload, field):
    body = assert_error(api.post("/api/v1/secrets/", payload, format="json"), 400)
    assert field in body["details"], body
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_the_same_name_twice_is_a_409(api, secret):
    response = api.post("/api/v1/secrets/", {"name": "API_TOKEN", "value": VALUE}, format="json")
    assert_error(response, 409, "SECRET_EXISTS")


@pytest.mark.django_db
def test_others_do_not_see_a_secret_until_it_is_shared_and_cannot_change_it(
    api, secret, client_for, other_user
):
    other = client_for(other_user)
    assert other.get("/api/v1/secrets/").json()["results"] == []
    assert_error(other.get(f"/api/v1/secrets/{secret.pk}/"), 404)
    team = Group.objects.create(name="team")
    other_user.groups.add(team)
    api.patch(f"/api/v1/secrets/{secret.pk}/", {"groups": ["team"]}, format="json")
    assert [s["name"] for s in other.get("/api/v1/secrets/").json()["results"]] == ["API_TOKEN"]
    response = other.patch(f"/api/v1/secrets/{secret.pk}/", {"value": "stolen!!"}, format="json")
    assert_error(response, 403)
    assert_error(other.delete(f"/api/v1/secrets/{secret.pk}/"), 403)
    assert crypto.decrypt(Secret.objects.get().value_encrypted) == VALUE


@pytest.mark.django_db(transaction=True)
def test_a_declared_secret_reaches_the_run_masked_in_log_and_events(api, secret, upload):
    upload(SCRIPT, name="uses.py")
    body = api.post("/api/v1/run/uses.py", {"data": {}}, format="json").json()
    assert body["success"] is True and body["result"] == {"length": len(VALUE)}, body
    run_id = body["execution_id"]
    log = api.get(f"/api/v1/executions/{run_id}/log/").content.decode()
    assert "the token is ********" in log and VALUE not in log
    events = "".join(event_stream(execution_id=run_id))
    assert "********" in events and VALUE not in events
    assert VALUE not in str(api.get(f"/api/v1/executions/{run_id}/").json())
    from audit.models import AuditEvent

    used = AuditEvent.objects.get(action="secret.used")
    assert used.details == {"execution": run_id} and VALUE not in str(used.details)


@pytest.mark.django_db
def test_a_user_who_may_not_use_the_secret_is_refused_before_the_run(
    api, secret, upload, client_for, other_user
):
    upload(SCRIPT, name="uses.py")
    other = client_for(other_user)
    body = assert_error(
        other.post("/api/v1/run/uses.py", {"data": {}}, format="json"), 403, "SECRET_NOT_ALLOWED"
    )
    assert body["details"] == {"secrets": ["API_TOKEN"]}
    response = other.post("/api/v1/executions/", {"script": "uses.py"}, format="json")
    assert_error(response, 403, "SECRET_NOT_ALLOWED")
    assert not Execution.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_secret_shared_with_a_group_serves_its_members(
    api, secret, upload, client_for, make_user
):
    member = make_user(username="member")
    team = Group.objects.create(name="team")
    member.groups.add(team)
    secret.groups.add(team)
    upload(SCRIPT, name="uses.py")
    body = client_for(member).post("/api/v1/run/uses.py", {"data": {}}, format="json").json()
    assert body["success"] is True and body["result"] == {"length": len(VALUE)}, body


@pytest.mark.django_db
def test_a_secret_revoked_after_the_run_was_queued_fails_the_run(api, secret, upload, user):
    from executions import services
    from executions.worker import execution_run

    script = upload(SCRIPT, name="uses.py")
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    secret.delete()
    execution_run(execution_id=execution.pk)
    execution.refresh_from_db()
    assert (execution.status, execution.error_code) == ("failed", "SECRET_NOT_ALLOWED")


@pytest.mark.django_db
def test_rotation_re_encrypts_with_the_newest_key(secret, settings):
    old = Fernet.generate_key().decode()
    settings.SECRETS_KEYS = [old]
    crypto._fernet.cache_clear()
    Secret.objects.filter(pk=secret.pk).update(value_encrypted=crypto.encrypt(VALUE))
    new = Fernet.generate_key().decode()
    settings.SECRETS_KEYS = [new, old]
    call_command("rotate_secrets")
    settings.SECRETS_KEYS = [new]
    assert crypto.decrypt(Secret.objects.get().value_encrypted) == VALUE
    settings.SECRETS_KEYS = [old]
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(Secret.objects.get().value_encrypted)


@pytest.mark.django_db
def test_the_admin_never_shows_a_value_and_keeps_it_when_left_empty(client, superuser, secret):
    client.force_login(superuser)
    page = client.get(f"/admin/vault/secret/{secret.pk}/change/").content.decode()
    assert VALUE not in page and secret.value_encrypted not in page
    response = client.post(
        f"/admin/vault/secret/{secret.pk}/change/",
        {"description": "changed", "value": "", "groups": []},
    )
    assert response.status_code == 302, response.content[:2000]
    secret.refresh_from_db()
    assert secret.description == "changed" and crypto.decrypt(secret.value_encrypted) == VALUE


@pytest.mark.django_db
def test_the_inspector_reads_declared_secrets():
    from scripts.inspection.secrets import declared_secrets

    names, warnings = declared_secrets("# Secrets: A_KEY, B_KEY\n# secret: A_KEY c-bad\nx = 1\n")
    assert names == ["A_KEY", "B_KEY"] and len(warnings) == 1 and "c-bad" in warnings[0]


@pytest.mark.django_db
def test_staff_may_change_a_secret_and_an_inactive_owner_may_not(api, secret, staff_api, user):
    response = staff_api.patch(
        f"/api/v1/secrets/{secret.pk}/", {"description": "by staff"}, format="json"
    )
    assert response.status_code == 200, response.content
    from vault import services

    user.is_active = False
    user.save()
    with pytest.raises(Exception) as caught:
        services.secret_update(user=user, secret=secret, value="another-value")
    assert getattr(caught.value, "status", None) in (403, 404)
    assert crypto.decrypt(Secret.objects.get().value_encrypted) == VALUE

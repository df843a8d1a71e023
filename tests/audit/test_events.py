"""Each audited action records one event with its actor (signals and services)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as account_services
from audit import signals
from audit.models import AuditEvent
from audit.services import audit_record


def events(prefix: str = ""):
    return list(
        AuditEvent.objects.filter(action__startswith=prefix)
        .order_by("id")
        .values_list("action", "actor_repr")
    )


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


# --- Sign-ins ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_jwt_login_and_failed_login(anon_client, user, password):
    ok = anon_client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": password}, format="json"
    )
    assert ok.status_code == 200
    bad = anon_client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    assert bad.status_code == 401
    login = last("auth.login")
    assert login.actor == user and login.details == {"method": "jwt"}
    assert login.ip == "127.0.0.1"
    failed = last("auth.login_failed")
    assert failed.actor is None and failed.details == {"username": "alice"}
    assert "wrong" not in str(failed.details)


@pytest.mark.django_db
def test_session_login_logout_and_failed_admin_login(client, staff_user, password):
    assert (
        client.post(
            "/admin/login/", {"username": "staff", "password": "nope", "next": "/admin/"}
        ).status_code
        == 200
    )
    assert last("auth.login_failed").details == {"username": "staff"}
    client.post("/admin/login/", {"username": "staff", "password": password, "next": "/admin/"})
    assert last("auth.login").actor == staff_user
    assert last("auth.login").details == {"method": "session"}
    client.post("/admin/logout/")
    assert last("auth.logout").actor == staff_user


# --- Users and groups -----------------------------------------------------------------------


@pytest.mark.django_db
def test_user_created_changed_and_deleted_by_staff(client, superuser):
    client.force_login(superuser)
    user = account_services.user_create(username="carol", email="c@example.com", password=None)
    created = last("user.created")
    assert created.target_repr == "carol" and created.target_id == str(user.pk)
    user.is_staff = True
    user.save()
    changed = last("user.changed")
    assert changed.details == {"fields": ["is_staff"], "is_staff": True}
    user.save()  # nothing changed: no event
    assert AuditEvent.objects.filter(action="user.changed", target_repr="carol").count() == 1
    # A sign-in's last_login is not a change of the user.
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    assert AuditEvent.objects.filter(action="user.changed", target_repr="carol").count() == 1
    response = client.post(f"/admin/accounts/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    deleted = last("user.deleted")
    assert deleted.actor == superuser and deleted.target_repr == "carol"


@pytest.mark.django_db
def test_password_change_is_recorded_without_the_password(user):
    user.set_password("another-long-password-1")
    user.save()
    event = last("user.changed")
    assert event.details == {"fields": ["password"]}
    assert "pbkdf2" not in str(event.details) and "md5" not in str(event.details)


@pytest.mark.django_db
def test_bulk_deactivation_is_recorded_per_user(staff_user, user, other_user):
    from accounts.models import User

    count = account_services.user_set_active(
        users=User.objects.filter(pk__in=[user.pk, other_user.pk]),
        active=False,
        acting_user=staff_user,
    )
    assert count == 2
    changed = AuditEvent.objects.filter(action="user.changed", details__is_active=False)
    assert sorted(changed.values_list("target_repr", flat=True)) == ["alice", "bob"]


@pytest.mark.django_db
def test_group_changes_and_membership(client, superuser, user):
    client.force_login(superuser)
    group = Group.objects.create(name="analysts")
    assert last("group.created").target_repr == "analysts"
    user.groups.add(group)
    event = last("user.groups_changed")
    assert event.target_repr == "alice" and event.details == {"op": "add", "group": [group.pk]}
    group.user_set.remove(user)
    event = last("group.members_changed")
    assert event.details == {"op": "remove", "user": [user.pk]}
    group.delete()
    assert last("group.deleted").target_repr == "analysts"


# --- Invitations --------------------------------------------------------------------------


@pytest.mark.django_db
def test_invitation_created_revoked_and_used(staff_user):
    invitation = account_services.invitation_create(email="x@example.com", invited_by=staff_user)
    created = last("invitation.created")
    assert created.actor == staff_user and created.details["email"] == "x@example.com"
    account_services.invitation_revoke(invitation=invitation)
    assert last("invitation.revoked").target_id == str(invitation.pk)

    second = account_services.invitation_create(email="y@example.com", invited_by=staff_user)
    token = "t" * 40
    from accounts.models import Invitation

    Invitation.objects.filter(pk=second.pk).update(token_hash=Invitation.hash_token(token))
    new_user = account_services.user_register(
        username="yolanda", password="a-long-enough-password-9", invitation=token
    )
    used = last("invitation.used")
    assert used.actor == new_user and used.target_id == str(second.pk)
    assert "token" not in str(used.details) and token not in str(used.details)


# --- Scripts and folders --------------------------------------------------------------


@pytest.mark.django_db
def test_script_uploaded_replaced_and_deleted(user):
    from scripts import services as script_services

    v1 = script_services.script_upload(
        user=user, file_name="job.py", content=b"print(1)\n", folder=None
    )
    script_services.script_upload(
        user=user, file_name="job.py", content=b"print(2)\n", folder=None, replace=True
    )
    # The same bytes again add no version and no event.
    script_services.script_upload(
        user=user, file_name="job.py", content=b"print(2)\n", folder=None, replace=True
    )
    script_services.script_delete(user=user, script=v1.script)
    assert events("script.") == [
        ("script.uploaded", "alice"),
        ("script.replaced", "alice"),
        ("script.deleted", ""),  # no request: the service's caller is not known
    ]
    replaced = last("script.replaced")
    assert replaced.target_repr == "job.py" and replaced.details["version"] == 2


@pytest.mark.django_db
def test_script_deleted_through_the_api_names_its_actor(api, user):
    from scripts import services as script_services

    script = script_services.script_upload(
        user=user, file_name="gone.py", content=b"print(1)\n", folder=None
    ).script
    assert api.delete(f"/api/v1/scripts/{script.pk}/").status_code == 204
    deleted = last("script.deleted")
    assert deleted.actor == user and deleted.target_repr == "gone.py"


@pytest.mark.django_db
def test_folder_permission_changes(staff_api, staff_user):
    from scripts import services as script_services

    folder = script_services.folder_create(user=staff_user, name="reports", parent=None)
    assert last("folder.created").actor == staff_user
    group = Group.objects.create(name="finance")
    folder.read_groups.add(group)
    event = last("folder.permissions_changed")
    assert event.target_repr == "reports"
    assert event.details == {"field": "read_groups", "op": "add", "groups": [group.pk]}
    folder.read_groups.clear()
    assert last("folder.permissions_changed").details["op"] == "clear"


# --- Runs --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_started_costs_one_insert_and_later_saves_none(user, monkeypatch):
    from executions import services as execution_services
    from executions.models import Execution
    from scripts import services as script_services

    monkeypatch.setattr(execution_services, "_enqueue", lambda execution_id: None)
    script_services.script_upload(
        user=user, file_name="r.py", content=b"def main(data: dict):\n    return {}\n", folder=None
    )
    with CaptureQueriesContext(connection) as queries:
        run = execution_services.execution_start(user=user, script_ref="r.py", inputs={})
    inserts = [q for q in queries if q["sql"].startswith("INSERT") and "audit" in q["sql"]]
    assert len(inserts) == 1
    started = last("run.started")
    assert started.actor == user and started.details["script"] == "r.py"
    # The worker's saves (claim, heartbeat, progress, finish) record nothing.
    with CaptureQueriesContext(connection) as queries:
        run.status = Execution.Status.RUNNING
        run.save(update_fields=["status"])
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["heartbeat_at"])
        run.status = Execution.Status.SUCCEEDED
        run.save()
    assert not [q for q in queries if "audit" in q["sql"]]


@pytest.mark.django_db
def test_run_cancelled(api, user, monkeypatch):
    from executions import services as execution_services
    from scripts import services as script_services

    monkeypatch.setattr(execution_services, "_enqueue", lambda execution_id: None)
    script_services.script_upload(
        user=user, file_name="c.py", content=b"def main(data: dict):\n    return {}\n", folder=None
    )
    run = execution_services.execution_start(user=user, script_ref="c.py", inputs={})
    assert api.post(f"/api/v1/executions/{run.pk}/cancel/").status_code in (200, 202)
    cancelled = last("run.cancelled")
    assert cancelled.actor == user and cancelled.target_id == str(run.pk)
    assert cancelled.details == {"was": "queued"}
    # Cancelling again changes nothing and records nothing.
    api.post(f"/api/v1/executions/{run.pk}/cancel/")
    assert AuditEvent.objects.filter(action="run.cancelled").count() == 1


# --- Secrets, mail settings ----------------------------------------------------------------


@pytest.mark.django_db
def test_secret_created_changed_and_deleted_without_value(user, settings):
    from cryptography.fernet import Fernet

    from vault import services as vault_services

    settings.SECRETS_KEYS = [Fernet.generate_key().decode()]
    secret = vault_services.secret_create(user=user, name="DB_PASSWORD", value="hunter2-value")
    vault_services.secret_update(user=user, secret=secret, value="other-value")
    vault_services.secret_delete(user=user, secret=secret)
    assert [a for a, _ in events("secret.")] == [
        "secret.created",
        "secret.changed",
        "secret.deleted",
    ]
    assert last("secret.created").actor == user
    everything = str(list(AuditEvent.objects.values()))
    assert "hunter2" not in everything and "other-value" not in everything


@pytest.mark.django_db
def test_mail_settings_and_smtp_params(staff_api, staff_user):
    from mailqueue import services as mail_services
    from mailqueue.models import MailService

    config = staff_api.get("/api/v1/mail/config/").json()
    config["max_retries"] = config["max_retries"] + 2
    response = staff_api.put("/api/v1/mail/config/", config, format="json")
    assert response.status_code == 200, response.content
    changed = last("mail.settings_changed")
    assert changed.actor == staff_user and changed.details["fields"] == ["max_retries"]
    assert changed.details["changes"] == {
        "max_retries": [str(config["max_retries"] - 2), str(config["max_retries"])]
    }
    # The processor's bookkeeping is not a change.
    service = MailService.objects.get()
    service.last_run = timezone.now()
    service.save(update_fields=["last_run", "total_processed"])
    assert AuditEvent.objects.filter(action="mail.settings_changed").count() == 1

    param = mail_services.smtp_param_create(
        param_code="MAIN", smtp_server="127.0.0.1", smtp_port=25, password="smtp-pass-123"
    )
    mail_services.smtp_param_update(param=param, smtp_port=2525)
    mail_services.smtp_param_delete(param=param)
    assert [a for a, _ in events("mail.smtp")] == [
        "mail.smtp_params_created",
        "mail.smtp_params_changed",
        "mail.smtp_params_deleted",
    ]
    assert "smtp-pass-123" not in str(list(AuditEvent.objects.values()))


# --- Schedules and pipelines (jobs app) ------------------------------------------------------


@pytest.mark.django_db
def test_jobs_handlers_record_settings_and_skip_bookkeeping(user):
    """The jobs app is hooked by name when installed; its handlers on a stand-in."""
    saved = signals._jobs_saved("schedule")
    group = Group.objects.create(name="stand-in")
    saved(Group, group, created=True)
    saved(Group, group, created=False, update_fields=["last_run_at", "next_run_at"])
    saved(Group, group, created=False, update_fields=["enabled"])
    signals._jobs_deleted("pipeline")(Group, group)
    assert [a for a, _ in events("schedule.") + events("pipeline.")] == [
        "schedule.created",
        "schedule.changed",
        "pipeline.deleted",
    ]
    assert last("schedule.changed").details == {"fields": ["enabled"]}


# --- The record itself ----------------------------------------------------------------------


@pytest.mark.django_db
def test_details_never_keep_sensitive_values(user):
    event = audit_record(
        action="secret.used",
        actor=user,
        target_type="vault.secret",
        target_id=3,
        details={"name": "DB", "value": "s3cret", "nested": {"password": "p", "ok": 1}},
    )
    assert event.details == {
        "name": "DB",
        "value": "[redacted]",
        "nested": {"password": "[redacted]", "ok": 1},
    }
    assert event.actor_repr == "alice" and event.target_id == "3"


@pytest.mark.django_db
def test_actor_name_survives_the_users_deletion(user):
    event = audit_record(action="custom.thing", actor=user)
    user.delete()
    event.refresh_from_db()
    assert event.actor is None and event.actor_repr == "alice"


@pytest.mark.django_db
def test_retention_prunes_old_events_only(settings):
    from django.core.management import call_command

    AuditEvent.objects.prune_before(timezone.now() + timedelta(days=1))  # a clean slate
    old = audit_record(action="old.one", actor=None)
    from django.db import connection as conn

    with conn.cursor() as cursor:  # age one row (the ORM refuses to update events)
        cursor.execute(
            f"UPDATE {AuditEvent._meta.db_table} SET created_at = %s WHERE id = %s",
            [timezone.now() - timedelta(days=40), old.pk],
        )
    audit_record(action="new.one", actor=None)
    settings.AUDIT_RETENTION_DAYS = 0
    call_command("prune_audit")
    assert AuditEvent.objects.count() == 2, list(AuditEvent.objects.values_list("action"))
    settings.AUDIT_RETENTION_DAYS = 30
    from audit.tasks import prune_audit_events

    assert prune_audit_events() == 1
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["new.one"]
    call_command("prune_audit", "--days", "1")
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_the_daily_retention_schedule_exists():
    from django_q.models import Schedule

    from audit.tasks import RETENTION_SCHEDULE

    schedule = Schedule.objects.get(name=RETENTION_SCHEDULE)
    assert schedule.func == "audit.tasks.prune_audit_events"
    assert schedule.schedule_type == Schedule.DAILY

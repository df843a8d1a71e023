"""The /api/v1/mail/ API (staff only), with the error shape on every failure."""

import base64

import pytest
from django.db import connections

from mailqueue.crypto import decrypt_password
from mailqueue.models import EmailDetail, EmailParameter
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db
URL = "/api/v1/mail/"


def test_staff_only(api, anon_client):
    assert_error(api.get(URL + "status/"), 403, "PERMISSION_DENIED")
    assert_error(anon_client.get(URL + "config/"), 401, "NOT_AUTHENTICATED")


def test_config_get_put_and_validation(staff_api):
    body = staff_api.get(URL + "config/").json()
    assert set(body) == {
        "start_time",
        "end_time",
        "interval",
        "interval_unit",
        "db_request_timeout",
        "db_connection_timeout",
        "max_retries",
        "batch_size",
    }
    assert body["start_time"] == "00:00"  # HH:MM, as the schema's pattern says
    new = {
        **body,
        "start_time": "22:00",
        "end_time": "06:00:00",
        "interval": 2,
        "interval_unit": "hours",
    }
    answer = staff_api.put(URL + "config/", new, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["start_time"] == "22:00" and answer.json()["end_time"] == "06:00"
    assert answer.json()["interval_unit"] == "hours"
    error = assert_error(
        staff_api.put(
            URL + "config/", {**new, "interval": 0, "start_time": "25:99"}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert {"interval", "start_time"} <= set(error["details"])
    assert staff_api.get(URL + "config/").json()["interval"] == 2


def test_service_start_stop_and_status(staff_api):
    assert (
        staff_api.post(URL + "service/", {"action": "stop"}, format="json").json()["status"]
        == "stopped"
    )
    started = staff_api.post(URL + "service/", {"action": "start"}, format="json").json()
    assert started["status"] == "running" and started["started_at"] and started["next_run"]
    status = staff_api.get(URL + "status/").json()
    assert set(status) >= {"status", "started_at", "last_activity", "last_run", "next_run"}
    assert_error(
        staff_api.post(URL + "service/", {"action": "pause"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )


def test_force_process_returns_counts(staff_api, mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.rcpt_replies = {"nobody": "550 no"}
    EmailDetail.objects.create(to_emails="a@example.com", subject="1")
    EmailDetail.objects.create(to_emails="nobody@example.com", subject="2")
    counts = staff_api.post(URL + "process/").json()
    assert counts == {
        "processed": 2,
        "sent": 1,
        "failed": 1,
        "retried": 0,
        "deferred": 0,
        "busy": False,
    }
    assert staff_api.get(URL + "status/").json()["last_run"]


def test_test_email_is_sent_through_the_parameter_set(
    staff_api, mail_settings, smtp_server, make_param
):
    make_param(smtp_server.port, code="MAIN")
    answer = staff_api.post(
        URL + "test/", {"email": "me@example.com", "param_code": "MAIN"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "sent" and answer.json()["send_flag"] == "Y"
    assert smtp_server.messages[0]["rcpt_tos"] == ["me@example.com"]
    assert_error(
        staff_api.post(
            URL + "test/", {"email": "x@example.com", "param_code": "NOPE"}, format="json"
        ),
        404,
        "PARAM_NOT_FOUND",
    )
    assert_error(
        staff_api.post(URL + "test/", {"email": "bad"}, format="json"), 400, "VALIDATION_ERROR"
    )


def test_test_connection_ok_and_failure(staff_api, monkeypatch, tmp_path):
    body = staff_api.post(URL + "test-connection/").json()
    assert body["ok"] is True and body["ms"] >= 0 and body["database"] == "default"
    # The mail database becomes unreachable (a path that cannot be opened).
    broken = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp_path / "missing" / "dir" / "db.sqlite3"),
        "OPTIONS": {},
    }
    monkeypatch.setitem(connections.settings, "default", broken)
    error = assert_error(staff_api.post(URL + "test-connection/"), 503, "LEGACY_DB_UNREACHABLE")
    assert error["details"]["database"] == "default" and "ms" in error["details"]


def test_dashboard(staff_api, mail_settings, auth_smtp_server, make_param):
    make_param(auth_smtp_server.port, code="BAD", smtp_account_name="mailer", smtp_password="wrong")
    EmailDetail.objects.create(to_emails="a@example.com", param_code="BAD")
    staff_api.post(URL + "process/")
    body = staff_api.get(URL + "dashboard/").json()
    assert body["database"]["ok"] is True
    assert set(body) == {"database", "schedule", "service", "totals", "queue", "param_sets"}
    (bad,) = body["param_sets"]
    assert bad["param_code"] == "BAD" and bad["healthy"] is False and "535" in bad["last_error"]
    assert body["queue"]["waiting"] == 1


def test_queue_list_filters_requeue_and_query_count(staff_api, django_assert_max_num_queries):
    for i in range(5):
        EmailDetail.objects.create(
            to_emails=f"u{i}@example.com",
            subject=f"s{i}",
            send_flag="F" if i % 2 else "N",
            document=b"x" * 10 if i == 0 else None,
            filename="a.txt" if i == 0 else None,
        )
    with django_assert_max_num_queries(4):
        body = staff_api.get(URL + "queue/").json()
    assert (
        body["count"] == 5
        and "document" not in body["results"][0]
        and "body" not in body["results"][0]
    )
    failed = staff_api.get(URL + "queue/?flag=F").json()["results"]
    assert {r["subject"] for r in failed} == {"s1", "s3"}
    assert [r["hasDocument"] for r in staff_api.get(URL + "queue/?to=u0@").json()["results"]] == [
        True
    ]
    assert_error(staff_api.get(URL + "queue/?flag=Z"), 400, "VALIDATION_ERROR")
    row_id = failed[0]["id"]
    EmailDetail.objects.filter(pk=row_id).update(retry_count=3, bounce_reason="550 no")
    requeued = staff_api.post(f"{URL}queue/{row_id}/requeue/").json()
    assert (requeued["sendFlag"], requeued["retryCount"], requeued["bounceReason"]) == (
        "N",
        0,
        None,
    )
    EmailDetail.objects.filter(pk=row_id).update(send_flag="Y")
    assert_error(staff_api.post(f"{URL}queue/{row_id}/requeue/"), 409, "MAIL_ALREADY_SENT")
    assert_error(staff_api.post(f"{URL}queue/999999/requeue/"), 404, "NOT_FOUND")


def test_queue_create_with_document_and_bad_input(staff_api):
    doc = base64.b64encode(b"%PDF-1.4 data").decode()
    answer = staff_api.post(
        URL + "queue/",
        {
            "to": "a@example.com; b@example.com",
            "subject": "s",
            "body": "b",
            "document": doc,
            "filename": "x.pdf",
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content
    row = EmailDetail.objects.get()
    assert (
        bytes(row.document) == b"%PDF-1.4 data" and row.to_emails == "a@example.com, b@example.com"
    )
    assert answer.json()["hasDocument"] is True
    assert_error(
        staff_api.post(
            URL + "queue/",
            {"to": "a@example.com", "document": "!!!", "filename": "x"},
            format="json",
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        staff_api.post(URL + "queue/", {"to": "nope"}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert EmailDetail.objects.count() == 1


def test_smtp_params_crud_password_write_only_and_encrypted(staff_api, settings):
    data = {
        "paramCode": "MAIN",
        "smtpServer": "smtp.example.com",
        "smtpPort": 587,
        "smtpAccountName": "mailer",
        "smtpPassword": "hunter2-secret",
        "smtpMailId": "noreply@example.com",
        "smtpSslFlag": "T",
        "isActive": True,
    }
    created = staff_api.post(URL + "smtp-params/", data, format="json")
    assert created.status_code == 201, created.content
    assert "hunter2-secret" not in created.content.decode() and "smtpPassword" not in created.json()
    assert created.json()["hasPassword"] is True
    stored = EmailParameter.objects.get(pk="MAIN")
    assert (
        stored.smtp_password != "hunter2-secret"
        and decrypt_password(stored.smtp_password) == "hunter2-secret"
    )
    assert stored.is_active == "Y" and stored.smtp_ssl_flag == "T"
    for response in (staff_api.get(URL + "smtp-params/"), staff_api.get(URL + "smtp-params/MAIN/")):
        assert (
            "hunter2" not in response.content.decode()
            and stored.smtp_password not in response.content.decode()
        )
    assert_error(staff_api.post(URL + "smtp-params/", data, format="json"), 409, "PARAM_EXISTS")
    # PATCH without a password keeps it; PUT may deactivate.
    assert (
        staff_api.patch(URL + "smtp-params/MAIN/", {"smtpPort": 2525}, format="json").status_code
        == 200
    )
    stored.refresh_from_db()
    assert stored.smtp_port == 2525 and decrypt_password(stored.smtp_password) == "hunter2-secret"
    assert_error(
        staff_api.patch(URL + "smtp-params/MAIN/", {"smtpPort": 0}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    EmailDetail.objects.create(to_emails="a@example.com", param_code="MAIN")
    assert_error(staff_api.delete(URL + "smtp-params/MAIN/"), 409, "PARAM_IN_USE")
    EmailDetail.objects.all().delete()
    assert staff_api.delete(URL + "smtp-params/MAIN/").status_code == 204
    assert_error(staff_api.get(URL + "smtp-params/MAIN/"), 404, "NOT_FOUND")


def test_status_and_dashboard_name_the_same_fields_alike(staff_api):
    """One naming (snake_case) for the service's state, wherever it is shown."""
    status = staff_api.get(URL + "status/").json()
    dashboard = staff_api.get(URL + "dashboard/").json()
    assert (
        set(status)
        == set(dashboard["service"])
        == {
            "status",
            "started_at",
            "stopped_at",
            "last_activity",
            "last_run",
            "next_run",
            "window_open",
        }
    )
    config = staff_api.get(URL + "config/").json()
    schedule = dashboard["schedule"]
    assert (schedule["start_time"], schedule["end_time"]) == (
        config["start_time"],
        config["end_time"],
    )


def test_test_email_to_the_console_is_not_reported_as_sent(staff_api, mail_settings, settings):
    """No SMTP parameter set: the fallback console backend only prints the mail."""
    settings.MAILQUEUE_FALLBACK_BACKEND = "django.core.mail.backends.console.EmailBackend"
    answer = staff_api.post(URL + "test/", {"email": "me@example.com"}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "console" and "console" in body["message"]
    assert set(body) == {"id", "send_flag", "status", "message", "reason"}


def test_test_email_through_another_fallback_backend(staff_api, mail_settings, settings):
    settings.MAILQUEUE_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    body = staff_api.post(URL + "test/", {"email": "me@example.com"}, format="json").json()
    assert body["status"] == "fallback" and "locmem" in body["message"]


def test_test_email_refused_by_the_server_says_failed(
    staff_api, mail_settings, smtp_server, make_param
):
    make_param(smtp_server.port, code="MAIN")
    smtp_server.handler.rcpt_replies = {"nobody": "550 no such user"}
    body = staff_api.post(
        URL + "test/", {"email": "nobody@example.com", "param_code": "MAIN"}, format="json"
    ).json()
    assert body["status"] == "failed" and "550" in body["reason"]


def test_queue_rows_with_null_legacy_columns_read_as_null(staff_api):
    EmailDetail.objects.create(to_emails=None, subject=None)
    (row,) = staff_api.get(URL + "queue/").json()["results"]
    assert row["to"] is None and row["cc"] is None and row["paramCode"] is None
    assert row["sentDate"] is None and row["bounceReason"] is None
    assert row["lastRetryDate"] is None


def test_config_ranges_come_from_the_service(staff_api, monkeypatch):
    from mailqueue import services

    low, high = services.CONFIG_LIMITS["batch_size"]
    body = staff_api.get(URL + "config/").json()
    error = assert_error(
        staff_api.put(URL + "config/", {**body, "batch_size": high + 1}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "batch_size" in error["details"]
    answer = staff_api.put(URL + "config/", {**body, "batch_size": high}, format="json")
    assert answer.json()["batch_size"] == high


def test_ssl_flags_are_one_definition_for_api_and_admin(staff_api):
    from mailqueue.admin import EmailParameterForm
    from mailqueue.models import SslFlag

    form_choices = [value for value, _ in EmailParameterForm().fields["smtp_ssl_flag"].choices]
    assert form_choices == SslFlag.values
    data = {"paramCode": "P1", "smtpServer": "smtp.example.com", "smtpPort": 25}
    data["smtpMailId"] = "noreply@example.com"
    created = staff_api.post(URL + "smtp-params/", {**data, "smtpSslFlag": "s"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["smtpSslFlag"] == "S"
    blank = staff_api.post(
        URL + "smtp-params/", {**data, "paramCode": "P2", "smtpSslFlag": ""}, format="json"
    )
    assert blank.json()["smtpSslFlag"] == "N"
    error = assert_error(
        staff_api.post(
            URL + "smtp-params/", {**data, "paramCode": "P3", "smtpSslFlag": "X"}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert "smtpSslFlag" in error["details"]


def test_smtp_param_with_null_legacy_columns_reads_as_null(staff_api):
    EmailParameter.objects.create(param_code="LEGACY")
    body = staff_api.get(URL + "smtp-params/LEGACY/").json()
    assert body["smtpServer"] is None and body["smtpPort"] is None and body["smtpSslFlag"] is None


def test_an_interval_longer_than_the_scheduler_keeps_is_refused(staff_api):
    """django-q2 stores the interval in minutes in a small integer (PostgreSQL refused
    a longer one with a 500 before)."""
    from mailqueue.services import INTERVAL_MAX_MINUTES

    body = staff_api.get(URL + "config/").json()
    staff_api.post(URL + "service/", {"action": "start"}, format="json")
    too_long = {**body, "interval": INTERVAL_MAX_MINUTES // 60 + 1, "interval_unit": "hours"}
    error = assert_error(staff_api.put(URL + "config/", too_long, format="json"), 400)
    assert "interval" in error["details"]
    longest = {**body, "interval": INTERVAL_MAX_MINUTES // 60, "interval_unit": "hours"}
    assert staff_api.put(URL + "config/", longest, format="json").status_code == 200
    # Changing only the unit is checked against the stored interval.
    minutes = {**body, "interval": 1000, "interval_unit": "minutes"}
    assert staff_api.put(URL + "config/", minutes, format="json").status_code == 200
    error = assert_error(
        staff_api.patch(URL + "config/", {"interval_unit": "hours"}, format="json"), 400
    )
    assert "interval" in error["details"]

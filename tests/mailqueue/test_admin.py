"""The admin: queue list, attachment download, actions, parameters, dashboard."""

import pytest
from django.test import Client

from mailqueue.crypto import decrypt_password
from mailqueue.models import EmailDetail, EmailParameter

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def test_queue_list_filters_and_attachment_download(admin_client_, django_assert_max_num_queries):
    row = EmailDetail.objects.create(
        to_emails="a@example.com", subject="s", document=b"PK\x03\x04zip", filename="files.zip"
    )
    EmailDetail.objects.create(to_emails="b@example.com", subject="t", send_flag="F")
    with django_assert_max_num_queries(12):
        page = admin_client_.get("/admin/mailqueue/emaildetail/?send_flag__exact=F")
    assert (
        page.status_code == 200
        and b"b@example.com" in page.content
        and b"a@example.com" not in page.content
    )
    page = admin_client_.get("/admin/mailqueue/emaildetail/")
    assert b"files.zip" in page.content
    download = admin_client_.get(f"/admin/mailqueue/emaildetail/{row.srno}/document/")
    assert download.status_code == 200 and download.content == b"PK\x03\x04zip"
    assert (
        download["Content-Type"] == "application/zip"
        and "files.zip" in download["Content-Disposition"]
    )


def test_requeue_and_send_now_actions(admin_client_, settings):
    settings.MAILQUEUE_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    failed = EmailDetail.objects.create(to_emails="a@example.com", send_flag="F", retry_count=5)
    url = "/admin/mailqueue/emaildetail/"
    admin_client_.post(url, {"action": "requeue", "_selected_action": [failed.srno]})
    failed.refresh_from_db()
    assert (failed.send_flag, failed.retry_count) == ("N", 0)
    admin_client_.post(url, {"action": "send_now", "_selected_action": [failed.srno]})
    failed.refresh_from_db()
    assert failed.send_flag == "Y"


def test_parameter_password_is_write_only_and_test_mail_action(
    admin_client_, superuser, mail_settings, smtp_server
):
    url = "/admin/mailqueue/emailparameter/add/"
    answer = admin_client_.post(
        url,
        {
            "param_code": "MAIN",
            "smtp_server": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "smtp_mail_id": "noreply@example.com",
            "smtp_ssl_flag": "N",
            "is_active": "Y",
            "password": "pw-secret-123",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    stored = EmailParameter.objects.get(pk="MAIN").smtp_password
    assert stored.startswith("fernet:") and decrypt_password(stored) == "pw-secret-123"
    change = admin_client_.get("/admin/mailqueue/emailparameter/MAIN/change/")
    assert b"pw-secret-123" not in change.content and stored.encode() not in change.content
    admin_client_.post(
        "/admin/mailqueue/emailparameter/", {"action": "send_test", "_selected_action": ["MAIN"]}
    )
    assert smtp_server.messages[0]["rcpt_tos"] == [superuser.email]


def test_dashboard_page_and_index_panel(admin_client_):
    page = admin_client_.get("/admin/mailqueue/emaildetail/dashboard/")
    assert page.status_code == 200 and b"Parameter sets" in page.content
    index = admin_client_.get("/admin/")
    assert b"Mail queue" in index.content


def _config_form(service, **changes):
    data = {
        "start_time": service.start_time.strftime("%H:%M"),
        "end_time": service.end_time.strftime("%H:%M"),
        "interval": service.interval,
        "interval_unit": service.interval_unit,
        "db_request_timeout": service.db_request_timeout,
        "db_connection_timeout": service.db_connection_timeout,
        "max_retries": service.max_retries,
        "batch_size": service.batch_size,
    }
    return {**data, **changes}


def test_config_admin_saves_through_the_service(admin_client_):
    from mailqueue.services import service_get

    service = service_get()
    assert admin_client_.get("/admin/mailqueue/mailservice/").status_code == 302
    url = f"/admin/mailqueue/mailservice/{service.pk}/change/"
    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(url, _config_form(service, interval=7, batch_size=33))
    assert response.status_code == 302, response.content[:2000]
    service.refresh_from_db()
    assert (service.interval, service.batch_size) == (7, 33)


def test_config_admin_and_api_share_one_definition_of_the_ranges(
    admin_client_, staff_api, monkeypatch
):
    from mailqueue import services

    monkeypatch.setitem(services.CONFIG_LIMITS, "batch_size", (1, 50))
    service = services.service_get()
    url = f"/admin/mailqueue/mailservice/{service.pk}/change/"
    page = admin_client_.post(url, _config_form(service, batch_size=60))
    assert page.status_code == 200 and b"from 1 to 50" in page.content
    too_long = _config_form(service, interval=600, interval_unit="hours")
    page = admin_client_.post(url, too_long)
    assert page.status_code == 200 and b"32767 minutes" in page.content
    service.refresh_from_db()
    assert service.batch_size != 60 and service.interval != 600
    response = staff_api.patch("/api/v1/mail/config/", {"batch_size": 60}, format="json")
    assert response.status_code == 400 and "batch_size" in response.json()["error"]["details"]


def test_delete_selected_keeps_parameter_sets_waiting_mail_uses(admin_client_, make_param):
    """The "Delete selected" action goes through smtp_param_delete (the in-use rule)."""
    make_param(2525, code="BUSY")
    make_param(2525, code="IDLE")
    EmailDetail.objects.create(to_emails="a@example.com", param_code="BUSY", send_flag="N")
    page = admin_client_.post(
        "/admin/mailqueue/emailparameter/",
        {"action": "delete_selected", "_selected_action": ["BUSY", "IDLE"], "post": "yes"},
        follow=True,
    )
    assert page.status_code == 200
    assert list(EmailParameter.objects.values_list("pk", flat=True)) == ["BUSY"]
    assert b"waiting e-mail" in page.content

"""The processor against real SMTP servers: what arrives, and each failure class."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.utils import timezone

from mailqueue.crypto import encrypt_password
from mailqueue.models import EmailDetail, MailService, ParamHealth
from mailqueue.processor import backoff, process_batch
from mailqueue.services import mail_enqueue

pytestmark = pytest.mark.django_db


def queue(**fields) -> EmailDetail:
    values = {"to_emails": "to@example.com", "subject": "Hello", "body_text": "Plain body"}
    return EmailDetail.objects.create(**{**values, **fields})


def test_sends_headers_cc_text_and_attachment(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 40
    row = queue(
        to_emails="a@example.com; b@example.com",
        cc_emails="c@example.com,d@example.com",
        subject="Quarterly report",
        body_text="Line one\nLine two",
        document=pdf,
        filename="report.pdf",
    )

    result = process_batch()

    assert result.as_dict() | {"busy": False} == {
        "processed": 1, "sent": 1, "failed": 0, "retried": 0, "deferred": 0, "busy": False
    }  # fmt: skip
    (received,) = smtp_server.messages
    assert sorted(received["rcpt_tos"]) == [
        "a@example.com", "b@example.com", "c@example.com", "d@example.com"
    ]  # fmt: skip
    msg = received["message"]
    assert msg["Subject"] == "Quarterly report"
    assert msg["To"] == "a@example.com, b@example.com"
    assert msg["Cc"] == "c@example.com, d@example.com"
    assert msg["From"] == "Scriptorium <noreply@example.com>"
    assert msg["X-Mailqueue-Id"] == str(row.srno)
    assert received["mail_from"] == "noreply@example.com"
    body = msg.get_body(("plain", "html"))
    assert body.get_content_type() == "text/plain"
    assert body.get_content().replace("\r\n", "\n").strip() == "Line one\nLine two"
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf
    row.refresh_from_db()
    assert row.send_flag == "Y" and row.sent_date is not None and row.bounce_reason is None


def test_html_body_is_sent_as_html(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    queue(body_text="<p>Hello <b>there</b></p>")
    queue(body_text="5 < 6 and 7 > 3, no tags here")
    process_batch()
    html, text = (m["message"] for m in smtp_server.messages)
    assert html.get_content_type() == "text/html"
    assert "<b>there</b>" in html.get_content()
    assert text.get_content_type() == "text/plain"


def test_one_connection_per_parameter_set_per_batch(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port, code="MAIN")
    make_param(smtp_server.port, code="OTHER")
    for i in range(6):
        queue(param_code="OTHER" if i % 2 else "MAIN", subject=f"m{i}")
    result = process_batch()
    assert result.sent == 6
    assert [m["message"]["Subject"] for m in smtp_server.messages] == [f"m{i}" for i in range(6)]
    assert smtp_server.handler.sessions == 2


def test_default_parameter_set_and_lowercase_code(mail_settings, smtp_server, make_param):
    make_param(1, code="A_INACTIVE", is_active="N")
    make_param(smtp_server.port, code="MAIN")
    first = queue(param_code=None)
    second = queue(param_code="main")
    assert process_batch().sent == 2
    assert {m["message"]["X-Mailqueue-Id"] for m in smtp_server.messages} == {
        str(first.srno),
        str(second.srno),
    }


def test_fallback_backend_when_no_parameter_set(mail_settings):
    mail_settings.MAILQUEUE_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    row = queue(subject="Trial mail")
    assert process_batch().sent == 1
    (sent,) = mail.outbox
    assert sent.subject == "Trial mail" and sent.to == ["to@example.com"]
    row.refresh_from_db()
    assert row.send_flag == "Y"


def test_login_with_encrypted_password(mail_settings, auth_smtp_server, make_param):
    stored = encrypt_password("s3cret")  # always encrypted, like every secret (vault)
    assert stored != "s3cret" and stored.startswith("fernet:")
    make_param(auth_smtp_server.port, smtp_account_name="mailer", smtp_password=stored)
    queue()
    assert process_batch().sent == 1


def test_plain_legacy_password_still_works_with_a_key(mail_settings, auth_smtp_server, make_param):
    mail_settings.MAILQUEUE_ENCRYPTION_KEY = Fernet.generate_key().decode()
    make_param(auth_smtp_server.port, smtp_account_name="mailer", smtp_password="s3cret")
    queue()
    assert process_batch().sent == 1


def test_a_token_of_the_older_mail_key_still_works(mail_settings, auth_smtp_server, make_param):
    key = Fernet.generate_key().decode()
    mail_settings.MAILQUEUE_ENCRYPTION_KEY = key
    token = Fernet(key.encode()).encrypt(b"s3cret").decode()  # as the old code stored it
    make_param(auth_smtp_server.port, smtp_account_name="mailer", smtp_password=token)
    queue()
    assert process_batch().sent == 1


def test_rotate_secrets_re_encrypts_smtp_passwords(mail_settings, make_param):
    from django.core.management import call_command

    from mailqueue.crypto import decrypt_password
    from mailqueue.models import EmailParameter

    make_param(2525, smtp_account_name="mailer", smtp_password="plain-legacy")
    call_command("rotate_secrets")
    stored = EmailParameter.objects.get().smtp_password
    assert stored.startswith("fernet:") and decrypt_password(stored) == "plain-legacy"


# --- failure classes -------------------------------------------------------------


def test_535_authentication_is_a_configuration_error(mail_settings, auth_smtp_server, make_param):
    make_param(auth_smtp_server.port, smtp_account_name="mailer", smtp_password="wrong")
    rows = [queue(), queue()]
    result = process_batch()
    assert (result.deferred, result.sent, result.retried) == (2, 0, 0)
    for row in rows:
        row.refresh_from_db()
        assert row.send_flag == "N" and row.retry_count == 0 and row.last_retry_date is None
    assert "535" in rows[0].bounce_reason
    health = ParamHealth.objects.get(param_code="MAIN")
    assert health.status == "config" and not health.healthy and "535" in health.last_error
    assert auth_smtp_server.messages == []


@pytest.mark.parametrize("code", ["GHOST", "OFF"])
def test_unknown_or_inactive_param_code_is_a_configuration_error(
    code, mail_settings, smtp_server, make_param
):
    make_param(smtp_server.port, code="OFF", is_active="N")
    row = queue(param_code=code)
    assert process_batch().deferred == 1
    row.refresh_from_db()
    assert row.send_flag == "N" and row.retry_count == 0
    assert code in row.bounce_reason
    assert ParamHealth.objects.get(param_code=code).status == "config"
    assert smtp_server.messages == []


def test_starttls_not_offered_is_a_configuration_error(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port, smtp_ssl_flag="T")
    row = queue()
    assert process_batch().deferred == 1
    row.refresh_from_db()
    assert row.retry_count == 0 and "STARTTLS" in row.bounce_reason.upper()


def test_450_recipient_is_transient_with_backoff(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.rcpt_replies = {"busy": "450 4.2.1 Mailbox busy"}
    row = queue(to_emails="busy@example.com")
    now = timezone.now()
    assert process_batch(now=now).retried == 1
    row.refresh_from_db()
    assert (row.send_flag, row.retry_count, row.last_retry_date) == ("N", 1, now)
    assert "450" in row.bounce_reason
    # The backoff holds it back, then lets it go.
    assert process_batch(now=now + backoff(1) - timedelta(seconds=1)).processed == 0
    smtp_server.handler.rcpt_replies = {}
    assert process_batch(now=now + backoff(1)).sent == 1
    row.refresh_from_db()
    assert row.send_flag == "Y" and row.retry_count == 1


def test_retries_used_up_become_failed(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    MailService.objects.update_or_create(pk=1, defaults={"max_retries": 2})
    smtp_server.handler.data_reply = "451 4.3.0 Try later"
    row = queue()
    now = timezone.now()
    process_batch(now=now)
    result = process_batch(now=now + backoff(1))
    assert result.failed == 1
    row.refresh_from_db()
    assert (row.send_flag, row.retry_count) == ("F", 2)
    assert process_batch(now=now + timedelta(days=1)).processed == 0


def test_550_every_recipient_is_permanent(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.rcpt_replies = {"nobody": "550 5.1.1 No such user"}
    row = queue(to_emails="nobody@example.com", cc_emails="nobody2@example.com")
    assert process_batch().failed == 1
    row.refresh_from_db()
    assert row.send_flag == "F" and row.retry_count == 0
    assert "550" in row.bounce_reason and "nobody2@example.com" in row.bounce_reason


def test_some_recipients_refused_is_sent_with_the_refusals(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.rcpt_replies = {"nobody": "550 5.1.1 No such user"}
    row = queue(to_emails="ok@example.com, nobody@example.com")
    assert process_batch().sent == 1
    row.refresh_from_db()
    assert row.send_flag == "Y"
    assert "nobody@example.com" in row.bounce_reason and "550" in row.bounce_reason
    assert smtp_server.messages[0]["rcpt_tos"] == ["ok@example.com"]


def test_554_for_the_message_is_permanent(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.data_reply = "554 5.7.1 Message rejected as spam"
    first, _ = queue(), queue()
    result = process_batch()
    assert result.failed == 2
    assert smtp_server.handler.sessions == 1  # the session survives a 554
    first.refresh_from_db()
    assert first.send_flag == "F" and "554" in first.bounce_reason


def test_421_greeting_is_transient_and_the_set_is_skipped(mail_settings, raw_server, make_param):
    server = raw_server(b"421 4.3.2 Service not available\r\n")
    make_param(server.port)
    first, second = queue(), queue()
    result = process_batch()
    assert (result.retried, result.deferred) == (1, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.retry_count == 1 and "421" in first.bounce_reason
    assert second.retry_count == 0 and second.bounce_reason is None
    assert server.accepted == 1
    assert ParamHealth.objects.get(param_code="MAIN").status == "transient"


def test_dropped_connection_is_transient(mail_settings, raw_server, make_param):
    server = raw_server(None)
    make_param(server.port)
    row = queue()
    assert process_batch().retried == 1
    row.refresh_from_db()
    assert row.send_flag == "N" and row.retry_count == 1
    assert "Connection" in row.bounce_reason


def test_silent_server_times_out(mail_settings, raw_server, make_param):
    mail_settings.MAILQUEUE_SMTP_TIMEOUT = 0.5
    server = raw_server(None, hold=5)
    make_param(server.port)
    row = queue()
    started = timezone.now()
    assert process_batch().retried == 1
    assert (timezone.now() - started).total_seconds() < 3
    row.refresh_from_db()
    assert row.retry_count == 1 and "Timed out" in row.bounce_reason


def test_connection_refused_is_transient(mail_settings, make_param):
    from tests.mailqueue.conftest import free_port

    make_param(free_port())
    row = queue()
    assert process_batch().retried == 1
    row.refresh_from_db()
    assert row.retry_count == 1 and "refused" in row.bounce_reason.lower()


def test_totals_and_last_run_are_kept(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    smtp_server.handler.rcpt_replies = {"nobody": "550 No"}
    queue(), queue(to_emails="nobody@example.com")
    process_batch()
    service = MailService.objects.get(pk=1)
    assert (service.total_processed, service.total_sent, service.total_failed) == (2, 1, 1)
    assert service.last_run and service.last_activity


def test_send_now_ignores_backoff_but_not_the_flag(mail_settings, smtp_server, make_param):
    from mailqueue.services import mail_send_now

    make_param(smtp_server.port)
    waiting = queue(retry_count=3, last_retry_date=timezone.now())
    failed = queue(send_flag="F")
    result = mail_send_now(srnos=[waiting.srno, failed.srno])
    assert result.sent == 1 and result.processed == 1
    assert [m["message"]["X-Mailqueue-Id"] for m in smtp_server.messages] == [str(waiting.srno)]


def test_batch_size_and_oldest_first(mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    rows = [mail_enqueue(to="x@example.com", subject=f"s{i}") for i in range(5)]
    assert process_batch(batch_size=3).sent == 3
    assert [m["message"]["Subject"] for m in smtp_server.messages] == ["s0", "s1", "s2"]
    assert EmailDetail.objects.filter(send_flag="N").count() == 2
    assert rows[0].send_flag == "N"  # the in-memory object is not the row

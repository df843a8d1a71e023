"""Project mail goes through the queue: Django's mail API -> rows -> the processor."""

import io
import zipfile

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail

from config.errors import ApplicationError
from mailqueue.models import EmailDetail
from mailqueue.processor import process_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings):
    settings.EMAIL_BACKEND = "mailqueue.backends.QueuedEmailBackend"
    return settings


def test_default_backend_setting_is_the_queue():
    from config.settings import mailqueue as mail_settings

    assert mail_settings.EMAIL_BACKEND == "mailqueue.backends.QueuedEmailBackend"


def test_send_mail_becomes_a_waiting_row(queued):
    assert send_mail("Hi", "Plain text", None, ["a@example.com", "b@example.com"]) == 1
    row = EmailDetail.objects.get()
    assert (row.to_emails, row.subject, row.body_text) == (
        "a@example.com, b@example.com",
        "Hi",
        "Plain text",
    )
    assert (row.send_flag, row.retry_count, row.document) == ("N", 0, None)


def test_html_alternative_becomes_the_body_and_is_sent_as_html(
    queued, mail_settings, smtp_server, make_param
):
    make_param(smtp_server.port)
    message = EmailMultiAlternatives(
        "Invite", "text version", to=["x@example.com"], cc=["c@example.com"]
    )
    message.attach_alternative("<p>html <b>version</b></p>", "text/html")
    message.send()
    row = EmailDetail.objects.get()
    assert row.body_text == "<p>html <b>version</b></p>" and row.cc_emails == "c@example.com"
    assert process_batch().sent == 1
    received = smtp_server.messages[0]["message"]
    assert received.get_content_type() == "text/html"
    assert received["Cc"] == "c@example.com"


def test_one_attachment_is_the_document(queued):
    message = EmailMessage("Report", "see attached", to=["a@example.com"])
    message.attach("data.csv", "a,b\n1,2\n", "text/csv")
    message.send()
    row = EmailDetail.objects.get()
    assert (row.filename, bytes(row.document)) == ("data.csv", b"a,b\n1,2\n")


def test_several_attachments_are_zipped(queued, mail_settings, smtp_server, make_param):
    make_param(smtp_server.port)
    message = EmailMessage("Run report", "files", to=["a@example.com"])
    message.attach("out.txt", b"hello", "text/plain")
    message.attach("out.txt", b"second", "text/plain")
    message.attach("image.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png")
    message.send()
    row = EmailDetail.objects.get()
    assert row.filename == "attachments.zip"
    process_batch()
    (attachment,) = smtp_server.messages[0]["message"].iter_attachments()
    assert attachment.get_filename() == "attachments.zip"
    assert attachment.get_content_type() == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(attachment.get_content()))
    assert sorted(archive.namelist()) == ["image.png", "out (1).txt", "out.txt"]
    assert archive.read("out (1).txt") == b"second"


def test_bcc_gets_its_own_row(queued):
    EmailMessage("s", "b", to=["a@example.com"], bcc=["hidden@example.com"]).send()
    rows = list(EmailDetail.objects.order_by("srno").values_list("to_emails", "cc_emails"))
    assert rows == [("a@example.com", None), ("hidden@example.com", None)]


def test_bad_address_raises_and_queues_nothing(queued):
    with pytest.raises(ApplicationError) as exc:
        send_mail("s", "b", None, ["not-an-address"])
    assert exc.value.code == "VALIDATION_ERROR" and "to" in exc.value.details
    assert EmailDetail.objects.count() == 0
    assert send_mail("s", "b", None, ["not-an-address"], fail_silently=True) == 0


def test_password_reset_mail_from_accounts_goes_through_the_queue(queued, user):
    from accounts.services import user_password_reset

    user_password_reset(user=user)
    row = EmailDetail.objects.get()
    assert row.to_emails == user.email and "<" in row.body_text  # the HTML version

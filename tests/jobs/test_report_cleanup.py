"""Reports through the mail queue to a real SMTP server (aiosmtpd): with
CLEANUP_FILES_AFTER_EMAIL a run's files are removed only once the queue marked its
report sent; files over the attachment limit are linked, not attached."""

import pytest

from executions import services as execution_services
from executions.models import Artifact, Execution
from jobs import tasks
from jobs.models import ReportCleanup
from mailqueue.models import EmailDetail, EmailParameter
from mailqueue.processor import process_batch
from storage import backend
from storage.models import StoredFile
from tests.mailqueue.conftest import SMTPServer

pytestmark = pytest.mark.django_db

FILES = """
def main(data: dict) -> dict:
    open("small.csv", "w").write("a,b\\n1,2\\n")
    open("big.txt", "w").write("x" * 5000)
    return {"ok": True}
"""


@pytest.fixture
def smtp_server():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def queued_mail(settings, smtp_server):
    """Reports go through the mail queue (as in production) to the aiosmtpd server."""
    settings.EMAIL_BACKEND = "mailqueue.backends.QueuedEmailBackend"
    settings.MAILQUEUE_DEFAULT_PARAM_CODE = "MAIN"
    settings.MAILQUEUE_SMTP_TIMEOUT = 5.0
    settings.RUN_REPORT_ATTACH_MAX_BYTES = 1000
    EmailParameter.objects.create(
        param_code="MAIN", smtp_server="127.0.0.1", smtp_port=smtp_server.port,
        smtp_mail_id="noreply@example.com", smtp_ssl_flag="N", is_active="Y",
    )  # fmt: skip
    return smtp_server


def _run_with_report(user, upload, run_now) -> Execution:
    script = upload(FILES, name="files.py")
    execution = run_now(
        execution_services.execution_start,
        user=user,
        script_ref=script.pk,
        inputs={},
        email_to=["boss@example.com"],
    )
    execution.refresh_from_db()
    assert execution.status == "succeeded", execution.error_message
    return execution


def _objects_exist(keys) -> list[bool]:
    return [backend.object_exists(key) for key in keys]


def test_files_are_removed_only_after_the_report_was_sent(
    user, upload, run_now, settings, queued_mail
):
    settings.CLEANUP_FILES_AFTER_EMAIL = True
    execution = _run_with_report(user, upload, run_now)
    keys = list(StoredFile.objects.filter(execution=execution).values_list("key", flat=True))
    assert len(keys) == 2 and all(_objects_exist(keys))
    cleanup = ReportCleanup.objects.get(execution=execution)
    row = EmailDetail.objects.get()
    assert cleanup.mail_ids == [row.pk] and cleanup.status == "waiting"

    assert tasks.cleanup_reported_files() == 0  # the report is only queued: files stay
    assert Artifact.objects.filter(execution=execution).count() == 2
    assert not queued_mail.messages

    result = process_batch()  # the mail queue sends it and marks it sent
    assert result.sent == 1 and len(queued_mail.messages) == 1
    row.refresh_from_db()
    assert row.send_flag == "Y"

    assert run_now(tasks.cleanup_reported_files) == 1  # objects go on commit
    cleanup.refresh_from_db()
    assert cleanup.status == "removed" and cleanup.files_removed == 2
    assert not Artifact.objects.filter(execution=execution).exists()
    assert not StoredFile.objects.filter(key__in=keys).exists()
    assert not any(_objects_exist(keys))
    execution.refresh_from_db()
    assert execution.status == "succeeded"  # the run itself stays
    assert tasks.cleanup_reported_files() == 0


def test_a_report_that_failed_for_good_keeps_the_files(
    user, upload, run_now, settings, queued_mail
):
    settings.CLEANUP_FILES_AFTER_EMAIL = True
    execution = _run_with_report(user, upload, run_now)
    EmailDetail.objects.update(send_flag="F")
    assert tasks.cleanup_reported_files() == 1
    assert ReportCleanup.objects.get(execution=execution).status == "kept"
    assert Artifact.objects.filter(execution=execution).count() == 2


def test_without_the_setting_files_stay_after_sending(user, upload, run_now, settings, queued_mail):
    settings.CLEANUP_FILES_AFTER_EMAIL = False
    execution = _run_with_report(user, upload, run_now)
    process_batch()
    assert tasks.cleanup_reported_files() == 0
    assert not ReportCleanup.objects.exists()
    assert Artifact.objects.filter(execution=execution).count() == 2


def test_files_over_the_attachment_limit_are_linked_not_attached(
    user, upload, run_now, settings, queued_mail
):
    execution = _run_with_report(user, upload, run_now)
    process_batch()
    (received,) = queued_mail.messages
    message = received["message"]
    assert [a.get_filename() for a in message.iter_attachments()] == ["small.csv"]
    body = message.get_body(("html", "plain")).get_content()
    assert f"/runs/{execution.pk}/files/big.txt" in body  # the portal's link (a browser's)
    assert "small.csv" in body

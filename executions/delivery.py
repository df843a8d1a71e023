"""Run reports by e-mail: put on the mail queue through Django's EMAIL_BACKEND."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from executions.models import Execution
from executions.signals import captured_mail_rows, send_report_queued
from storage.services import file_open


def report_send(*, execution: Execution) -> int:
    """E-mail the run's report (status, result, log tail, files attached up to
    RUN_REPORT_ATTACH_MAX_BYTES in total, links for the rest) to ``options.email_to``.
    Returns the number of messages handed to the backend."""
    recipients = execution.options.get("email_to") or []
    if not recipients:
        return 0
    from executions.logbook import log_tail

    limit = settings.RUN_REPORT_ATTACH_MAX_BYTES
    artifacts = list(execution.artifacts.select_related("stored_file"))
    attached, linked, used = [], [], 0
    for artifact in artifacts:
        if used + artifact.size <= limit:
            attached.append(artifact)
            used += artifact.size
        else:
            linked.append(artifact)
    tail, _ = log_tail(execution_id=execution.pk, chars=4000)
    context = {
        "execution": execution,
        "site_url": settings.SITE_URL,
        "log_tail": tail,
        "attached": attached,
        "linked": linked,
    }
    message = EmailMultiAlternatives(
        subject=f"[Scriptorium] {execution.script_path}: {execution.get_status_display()}",
        body=render_to_string("emails/run_report.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(render_to_string("emails/run_report.html", context), "text/html")
    for artifact in attached:
        with file_open(stored_file=artifact.stored_file) as fh:
            message.attach(
                artifact.name.rsplit("/", 1)[-1], fh.read(), artifact.stored_file.content_type
            )
    with captured_mail_rows() as mail_ids:
        sent = message.send()
    send_report_queued(execution, mail_ids=mail_ids, sent=sent)
    return sent

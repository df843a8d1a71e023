"""QueuedEmailBackend: Django's mail API puts e-mails on the queue instead of sending.

Each EmailMessage becomes one ``Digital_Emaildetails`` row (``N``), sent later by the
processor with the queue's retries and records. An HTML alternative (as in
EmailMultiAlternatives) becomes the row's body, sent as HTML; one attachment becomes
dd_document/dd_filename; several are zipped into one ``attachments.zip``. The legacy
table has no BCC, From or extra-header columns: each BCC address gets its own row, and
the From address is the parameter set's (SMTPMailId).
"""

import io
import logging
import zipfile
from email.mime.base import MIMEBase

from django.core.mail.backends.base import BaseEmailBackend

from mailqueue.services import mail_enqueue

logger = logging.getLogger("scriptorium.mailqueue")
ZIP_NAME = "attachments.zip"


def _attachment_bytes(attachment) -> tuple[str, bytes]:
    if isinstance(attachment, MIMEBase):
        return attachment.get_filename() or "attachment.bin", attachment.get_payload(decode=True)
    filename, content, _mimetype = attachment
    if isinstance(content, str):
        content = content.encode("utf-8")
    return filename or "attachment.bin", bytes(content)


def message_document(message) -> tuple[bytes | None, str | None]:
    """The row's document and file name: the one attachment, or a zip of several."""
    files = [_attachment_bytes(a) for a in message.attachments]
    if not files:
        return None, None
    if len(files) == 1:
        return files[0][1], files[0][0]
    buffer = io.BytesIO()
    seen: dict[str, int] = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files:
            count = seen.get(name, 0)
            seen[name] = count + 1
            if count:  # keep same-named files apart
                stem, dot, ext = name.rpartition(".")
                name = f"{stem} ({count}).{ext}" if dot else f"{name} ({count})"
            archive.writestr(name, content)
    return buffer.getvalue(), ZIP_NAME


def message_body(message) -> str:
    """The HTML alternative when there is one, else the body."""
    for alternative in getattr(message, "alternatives", None) or []:
        content, mimetype = alternative[0], alternative[1]
        if mimetype == "text/html":
            return content
    return message.body or ""


class QueuedEmailBackend(BaseEmailBackend):
    """EMAIL_BACKEND that enqueues; see the module docstring."""

    def send_messages(self, email_messages) -> int:
        """Queue each message; returns how many were queued. A message that cannot be
        queued raises (ApplicationError) unless fail_silently."""
        queued = 0
        for message in email_messages:
            try:
                self._enqueue(message)
            except Exception:
                if not self.fail_silently:
                    raise
                logger.exception("Could not queue an e-mail")
            else:
                queued += 1
        return queued

    def _enqueue(self, message) -> None:
        document, filename = message_document(message)
        common = {
            "subject": message.subject,
            "body": message_body(message),
            "document": document,
            "filename": filename,
        }
        param_code = (
            message.extra_headers.get("X-Mailqueue-Param") if message.extra_headers else None
        )
        if message.to or message.cc:
            mail_enqueue(
                to=list(message.to) or list(message.cc),
                cc=list(message.cc) if message.to else [],
                param_code=param_code,
                **common,
            )
        for address in message.bcc:
            mail_enqueue(to=[address], param_code=param_code, **common)

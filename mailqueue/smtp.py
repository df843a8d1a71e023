"""SMTP for the processor: open a connection for a parameter set, build a row's message,
send it, and sort every failure into transient / permanent / configuration."""

import mimetypes
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import sanitize_address

from mailqueue.crypto import decrypt_password
from mailqueue.models import EmailDetail, EmailParameter

SENT, TRANSIENT, PERMANENT, CONFIG = "sent", "transient", "permanent", "config"

_HTML = re.compile(
    r"<(?:!doctype|html|head|body|br|p|div|span|table|tr|td|a|b|i|u|em|strong|ul|ol|li|"
    r"h[1-6]|font|img|hr|pre|center)\b[^>]*>",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"[,;]")


@dataclass
class Outcome:
    """What happened to one row: ``kind`` is SENT, TRANSIENT, PERMANENT or CONFIG;
    ``via`` names the Django backend when the row went to MAILQUEUE_FALLBACK_BACKEND
    instead of an SMTP parameter set."""

    kind: str
    reason: str = ""
    via: str = ""


class SendFailure(Exception):
    def __init__(self, outcome: Outcome):
        super().__init__(outcome.reason)
        self.outcome = outcome


def split_addresses(value: str | None) -> list[str]:
    """``a@x, b@y; c@z`` -> ``["a@x", "b@y", "c@z"]`` (empty parts dropped)."""
    return [part.strip() for part in _SPLIT.split(value or "") if part.strip()]


def looks_like_html(body: str) -> bool:
    """True when the body carries HTML tags (it is then sent as text/html)."""
    return bool(_HTML.search(body or ""))


def _reply(code: int, message) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{code} {message}".strip()


def classify(exc: BaseException) -> Outcome:
    """Sort an exception raised while connecting or sending into a failure class."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Outcome(CONFIG, f"Authentication failed: {_reply(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Outcome(CONFIG, f"Not supported by the server: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Outcome(CONFIG, f"TLS failed: {exc}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        text = "; ".join(f"{addr}: {_reply(*answer)}" for addr, answer in refused.items())
        permanent = all(code >= 500 for code, _ in refused.values())
        return Outcome(PERMANENT if permanent else TRANSIENT, f"All recipients refused: {text}")
    if isinstance(exc, smtplib.SMTPConnectError):
        return Outcome(
            TRANSIENT if exc.smtp_code < 500 else CONFIG,
            f"Connection refused by the server: {_reply(exc.smtp_code, exc.smtp_error)}",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if exc.smtp_code >= 500:
            return Outcome(PERMANENT, f"Rejected: {reply}")
        return Outcome(TRANSIENT, f"Temporary failure: {reply}")
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):
        return Outcome(TRANSIENT, "Timed out waiting for the SMTP server")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Outcome(TRANSIENT, f"Connection lost: {exc or 'server disconnected'}")
    if isinstance(exc, socket.gaierror):
        return Outcome(CONFIG, f"Unknown SMTP host: {exc}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return Outcome(TRANSIENT, "Timed out waiting for the SMTP server")
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(TRANSIENT, "Connection refused")
    if isinstance(exc, OSError):
        return Outcome(TRANSIENT, f"Connection error: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return Outcome(CONFIG, f"SMTP error: {exc}")
    return Outcome(TRANSIENT, f"{exc.__class__.__name__}: {exc}")


def open_connection(param: EmailParameter, *, timeout: float) -> smtplib.SMTP:
    """Connect and log in with ``param`` (SSL/STARTTLS per SMTPSSLFlag). Raises
    SendFailure with the classified reason."""
    flag = (param.smtp_ssl_flag or "N").strip().upper()
    port = param.smtp_port or (465 if flag == "S" else 587 if flag in ("Y", "T") else 25)
    implicit_tls = flag == "S" or (flag in ("Y", "T") and port == 465)
    host = (param.smtp_server or "").strip()
    if not host:
        raise SendFailure(Outcome(CONFIG, f"Parameter set {param.param_code} has no SMTPServer"))
    smtp = None
    try:
        if implicit_tls:
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            if flag in ("Y", "T"):
                smtp.starttls(context=ssl.create_default_context())
        if param.smtp_account_name:
            smtp.login(param.smtp_account_name, decrypt_password(param.smtp_password))
    except Exception as exc:
        if smtp is not None:
            close_quietly(smtp)
        raise SendFailure(classify(exc)) from exc
    return smtp


def close_quietly(smtp) -> None:
    try:
        smtp.quit()
    except Exception:
        try:
            smtp.close()
        except Exception:
            pass


def build_message(row: EmailDetail, param: EmailParameter | None) -> EmailMessage:
    """The e-mail a row stands for: From the parameter set's SMTPMailId (ApplicationName
    as display name) or DEFAULT_FROM_EMAIL, To/CC split on , and ;, the body as HTML
    when it looks like HTML, dd_document attached as dd_filename, and an
    ``X-Mailqueue-Id`` header with dd_srno."""
    if param is not None and param.smtp_mail_id:
        from_email = formataddr((param.application_name or "", param.smtp_mail_id.strip()))
    else:
        from_email = settings.DEFAULT_FROM_EMAIL
    body = row.body_text or ""
    message = EmailMessage(
        subject=(row.subject or "").replace("\r", " ").replace("\n", " "),
        body=body,
        from_email=from_email,
        to=split_addresses(row.to_emails),
        cc=split_addresses(row.cc_emails),
        headers={"X-Mailqueue-Id": str(row.srno)},
    )
    if looks_like_html(body):
        message.content_subtype = "html"
    if row.document is not None:
        filename = (row.filename or "attachment.bin").strip()
        mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        message.attach(filename, bytes(row.document), mimetype)
    return message


_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


def _envelope_address(address: str, encoding: str) -> str:
    """A plain ASCII address as it is (the common case, and fast); anything else
    (display names, IDN domains) through Django's sanitize_address."""
    if _PLAIN_ADDRESS.match(address):
        return address
    return sanitize_address(address, encoding)


def send_message(smtp: smtplib.SMTP, message: EmailMessage) -> str:
    """Send over an open connection. Returns "" or, when some recipients were refused
    while others were accepted, the refusals; raises on any other failure."""
    recipients = message.recipients()
    if not recipients:
        raise SendFailure(Outcome(PERMANENT, "No recipients"))
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = sanitize_address(message.from_email, encoding)
    refused = smtp.sendmail(
        sender,
        [_envelope_address(addr, encoding) for addr in recipients],
        message.message().as_bytes(linesep="\r\n"),
    )
    if not refused:
        return ""
    return "Refused: " + "; ".join(f"{addr}: {_reply(*ans)}" for addr, ans in refused.items())

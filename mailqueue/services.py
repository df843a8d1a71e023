"""Every write of the mailqueue app: queue rows, SMTP parameter sets, the service's
configuration, sending now, and the legacy database check."""

import time
from datetime import time as dtime

from django.core.validators import validate_email
from django.db import IntegrityError, connections, router, transaction
from django.db.utils import load_backend

from config.errors import ApplicationError, ConflictError, NotFoundError
from mailqueue.crypto import MAX_PASSWORD_LENGTH, encrypt_password, rotate_password
from mailqueue.models import (
    EmailDetail,
    EmailParameter,
    IntervalUnit,
    MailService,
    SendFlag,
    SslFlag,
)
from mailqueue.schedule import schedule_sync, service_get  # noqa: F401  (service_get: re-exported)
from mailqueue.smtp import CONFIG, PERMANENT, SENT, TRANSIENT, split_addresses

CONFIG_FIELDS = (
    "start_time",
    "end_time",
    "interval",
    "interval_unit",
    "db_request_timeout",
    "db_connection_timeout",
    "max_retries",
    "batch_size",
)
PARAM_FIELDS = (
    "smtp_server",
    "smtp_port",
    "smtp_account_name",
    "smtp_mail_id",
    "application_name",
    "smtp_ssl_flag",
    "is_active",
)
# The one definition of the configuration's ranges (the API serializer and the admin
# form take theirs from here): field -> (lowest, highest), whole numbers.
CONFIG_LIMITS = {
    "interval": (1, 10_000),
    "db_request_timeout": (1, 3600),
    "db_connection_timeout": (1, 600),
    "max_retries": (1, 100),
    "batch_size": (1, 10_000),
}
# The whole interval, in minutes: django-q2 keeps it in a PositiveSmallIntegerField.
INTERVAL_MAX_MINUTES = 32_767


def service_config_errors(changes: dict, *, service: MailService) -> dict[str, list[str]]:
    """Every configuration rule, in one place (the API and the admin form use it):
    what is wrong with applying ``changes`` to ``service``, per field; empty when
    nothing is."""
    errors: dict[str, list[str]] = {
        name: ["Unknown field."] for name in sorted(set(changes) - set(CONFIG_FIELDS))
    }
    for name in ("start_time", "end_time"):
        if name in changes and not isinstance(changes[name], dtime):
            errors[name] = ["A time of day (HH:MM) is required."]
    for name, (low, high) in CONFIG_LIMITS.items():
        if name in changes:
            value = changes[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors[name] = [f"A whole number from {low} to {high} is required."]
    if "interval_unit" in changes and changes["interval_unit"] not in IntervalUnit.values:
        errors["interval_unit"] = [f"One of {', '.join(IntervalUnit.values)}."]
    if not errors:
        interval = changes.get("interval", service.interval)
        unit = changes.get("interval_unit", service.interval_unit)
        if interval * (60 if unit == IntervalUnit.HOURS else 1) > INTERVAL_MAX_MINUTES:
            errors["interval"] = [f"At most {INTERVAL_MAX_MINUTES} minutes in all (about 22 days)."]
    return errors


def service_configure(**changes) -> MailService:
    """Change the schedule window, interval, timeouts, retries or batch size (only the
    given fields). VALIDATION_ERROR (400) for bad values (service_config_errors); the
    django-q2 schedule follows a new interval at once when the service is started."""
    with transaction.atomic():
        service = MailService.objects.select_for_update().get(pk=service_get().pk)
        errors = service_config_errors(changes, service=service)
        if errors:
            raise ApplicationError("VALIDATION_ERROR", "The configuration is not valid.", errors)
        for name, value in changes.items():
            setattr(service, name, value)
        service.save(update_fields=list(changes) or None)
        schedule_sync(service=service)
    return service


# --- Queue rows ------------------------------------------------------------------


def _check_addresses(name: str, value: str, errors: dict, *, required: bool) -> str:
    addresses = split_addresses(value)
    if required and not addresses:
        errors[name] = ["At least one address is required."]
    bad = []
    for address in addresses:
        try:
            validate_email(address)
        except Exception:
            bad.append(address)
    if bad:
        errors[name] = [f"Not valid: {', '.join(bad)}"]
    joined = ", ".join(addresses)
    if len(joined) > 500:
        errors[name] = ["At most 500 characters (the column's size)."]
    return joined


def mail_enqueue(
    *,
    to: str | list[str],
    subject: str = "",
    body: str = "",
    cc: str | list[str] = "",
    param_code: str | None = None,
    document: bytes | None = None,
    filename: str | None = None,
) -> EmailDetail:
    """Put one e-mail on the queue as a ``N`` row (sent by the processor). Addresses
    are validated and joined with ``, ``; the subject is cut to the column's 500
    characters. VALIDATION_ERROR (400) when an address is bad or a list is too long."""
    errors: dict[str, list[str]] = {}
    to_value = _check_addresses("to", _joined(to), errors, required=True)
    cc_value = _check_addresses("cc", _joined(cc), errors, required=False)
    if param_code and len(param_code) > 50:
        errors["param_code"] = ["At most 50 characters."]
    if document is not None and not (filename or "").strip():
        errors["filename"] = ["A file name is required with a document."]
    if filename and len(filename) > 255:
        errors["filename"] = ["At most 255 characters."]
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "The e-mail is not valid.", errors)
    return EmailDetail.objects.create(
        to_emails=to_value,
        cc_emails=cc_value or None,
        subject=(subject or "")[:500],
        body_text=body or "",
        param_code=(param_code or "").strip() or None,
        document=document,
        filename=(filename or "").strip() or None if document is not None else None,
        send_flag=SendFlag.WAITING,
        retry_count=0,
    )


def _joined(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return value or ""


def mail_requeue(*, srnos: list[int]) -> int:
    """Send these rows again: back to ``N`` with no retries used and no reason. Sent
    rows are left alone (MAIL_ALREADY_SENT, 409, when every given row was sent).
    Returns how many rows were requeued."""
    rows = EmailDetail.objects.filter(pk__in=srnos)
    count = rows.exclude(send_flag=SendFlag.SENT).update(
        send_flag=SendFlag.WAITING, retry_count=0, last_retry_date=None, bounce_reason=None
    )
    if not count and rows.filter(send_flag=SendFlag.SENT).exists():
        raise ConflictError("MAIL_ALREADY_SENT", "This e-mail was sent already.")
    return count


def mail_send_now(*, srnos: list[int]):
    """Run the processor over just these rows (still ``N``; backoff ignored) and return
    its BatchResult, with each row's outcome."""
    from mailqueue.processor import process_batch

    return process_batch(only=srnos, batch_size=len(srnos) or 1, wait=30)


TEST_MAIL_STATUSES = ("sent", "console", "fallback", "queued", "retrying", "failed", "config")


def mail_send_test(*, email: str, param_code: str | None = None) -> tuple[EmailDetail, dict]:
    """Queue a test e-mail to ``email`` (through ``param_code`` or the default set) and
    send it at once. Returns the row as it ended and ``{"status", "message", "reason"}``,
    ``status`` saying what really happened (one of TEST_MAIL_STATUSES): ``sent`` only
    when an SMTP server accepted it; ``console`` when, with no parameter set, it was
    only written to the console by MAILQUEUE_FALLBACK_BACKEND; ``fallback`` when it was
    handed to another fallback backend; ``queued`` when another processor was busy
    (it waits in the queue); ``retrying``, ``failed`` or ``config`` when sending failed
    (``reason`` says why)."""
    if param_code and not EmailParameter.objects.filter(param_code=param_code).exists():
        raise NotFoundError(f"No SMTP parameter set {param_code!r}.", code="PARAM_NOT_FOUND")
    row = mail_enqueue(
        to=email,
        subject="Scriptorium mail queue test",
        body="<p>This is a test e-mail from the Scriptorium mail queue.</p>",
        param_code=param_code,
    )
    result = mail_send_now(srnos=[row.srno])
    outcome = result.outcomes.get(row.srno)
    row.refresh_from_db()
    reason = outcome.reason if outcome else ""
    if outcome is None:
        status, message = "queued", "Another processor is running; the e-mail waits in the queue."
    elif outcome.kind == SENT and outcome.via.endswith("console.EmailBackend"):
        status, message = (
            "console",
            "No SMTP parameter set exists: the e-mail was only written to the server's "
            "console (MAILQUEUE_FALLBACK_BACKEND), not delivered.",
        )
    elif outcome.kind == SENT and outcome.via:
        status = "fallback"
        message = f"No SMTP parameter set exists: the e-mail was handed to {outcome.via}."
    elif outcome.kind == SENT:
        status, message = "sent", "The SMTP server accepted the e-mail."
    elif outcome.kind == TRANSIENT:
        status, message = "retrying", "A temporary failure; the e-mail will be retried."
    elif outcome.kind == PERMANENT:
        status, message = "failed", "The SMTP server refused the e-mail."
    else:
        assert outcome.kind == CONFIG
        status, message = "config", "A configuration error; the e-mail waits in the queue."
    return row, {"status": status, "message": message, "reason": reason}


# --- SMTP parameter sets ------------------------------------------------------------


def ssl_flag_normalize(value) -> str:
    """An SMTPSSLFlag as stored: upper case, blank read as ``N`` (SslFlag holds the
    valid values)."""
    return str(value or "").strip().upper() or SslFlag.NO


def _clean_param(data: dict, errors: dict) -> dict:
    clean = {}
    for name in PARAM_FIELDS:
        if name in data:
            clean[name] = data[name]
    if "smtp_ssl_flag" in clean:
        clean["smtp_ssl_flag"] = ssl_flag_normalize(clean["smtp_ssl_flag"])
        if clean["smtp_ssl_flag"] not in SslFlag.values:
            errors["smtp_ssl_flag"] = ["One of Y, T (STARTTLS), S (implicit TLS), N."]
    if "is_active" in clean:
        clean["is_active"] = "Y" if clean["is_active"] in (True, "Y", "y") else "N"
    port = clean.get("smtp_port")
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        errors["smtp_port"] = ["A port from 1 to 65535."]
    if "smtp_mail_id" in clean and clean["smtp_mail_id"]:
        try:
            validate_email(clean["smtp_mail_id"])
        except Exception:
            errors["smtp_mail_id"] = ["Enter a valid e-mail address."]
    return clean


def _set_password(param: EmailParameter, password: str | None, errors: dict) -> None:
    if password is None:
        return
    if len(password.encode()) > MAX_PASSWORD_LENGTH:  # its token must fit SMTPPassword
        errors["smtp_password"] = [f"At most {MAX_PASSWORD_LENGTH} bytes (UTF-8)."]
        return
    param.smtp_password = encrypt_password(password) if password else None


def smtp_param_create(*, param_code: str, password: str | None = None, **fields) -> EmailParameter:
    """Add a parameter set. The password is stored encrypted (vault.crypto).
    PARAM_EXISTS (409) when the code is taken."""
    code = (param_code or "").strip()
    errors: dict[str, list[str]] = {}
    if not code or len(code) > 50:
        errors["param_code"] = ["A code of 1 to 50 characters is required."]
    if not (fields.get("smtp_server") or "").strip():
        errors["smtp_server"] = ["This field is required."]
    clean = _clean_param({"smtp_ssl_flag": "N", "is_active": "Y", **fields}, errors)
    param = EmailParameter(param_code=code, **clean)
    _set_password(param, password, errors)
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "The parameter set is not valid.", errors)
    if EmailParameter.objects.filter(param_code__iexact=code).exists():
        raise ConflictError("PARAM_EXISTS", f"The parameter set {code!r} exists.")
    try:
        with transaction.atomic(using=router.db_for_write(EmailParameter)):
            param.save(force_insert=True)
    except IntegrityError:
        raise ConflictError("PARAM_EXISTS", f"The parameter set {code!r} exists.")
    return param


def smtp_param_update(
    *, param: EmailParameter, password: str | None = None, **fields
) -> EmailParameter:
    """Change a parameter set (only the given fields; ``password=None`` keeps the stored
    one, ``""`` clears it)."""
    errors: dict[str, list[str]] = {}
    clean = _clean_param(fields, errors)
    if "smtp_server" in clean and not (clean["smtp_server"] or "").strip():
        errors["smtp_server"] = ["This field may not be blank."]
    _set_password(param, password, errors)
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "The parameter set is not valid.", errors)
    for name, value in clean.items():
        setattr(param, name, value)
    param.save()
    return param


def smtp_passwords_rotate() -> int:
    """Re-encrypt every stored SMTP password under the newest SECRETS_KEYS key (plain
    legacy values included); returns how many. Raises vault.crypto.DecryptionFailed
    naming the parameter set whose password cannot be opened. Registered with
    vault.hooks for ``manage.py rotate_secrets``."""
    from vault.crypto import DecryptionFailed

    done = 0
    for param in EmailParameter.objects.exclude(smtp_password__isnull=True).exclude(
        smtp_password=""
    ):
        try:
            rotated = rotate_password(param.smtp_password)
        except DecryptionFailed as exc:
            raise DecryptionFailed(f"SMTP parameters {param.pk}: {exc}") from exc
        EmailParameter.objects.filter(pk=param.pk).update(smtp_password=rotated)
        done += 1
    return done


def smtp_param_delete(*, param: EmailParameter) -> None:
    """Remove a parameter set. PARAM_IN_USE (409) while waiting rows name it."""
    waiting = EmailDetail.objects.filter(
        param_code__iexact=param.param_code, send_flag=SendFlag.WAITING
    ).count()
    if waiting:
        raise ConflictError(
            "PARAM_IN_USE",
            f"{waiting} waiting e-mail(s) use {param.param_code!r}.",
            {"waiting": waiting},
        )
    param.delete()


# --- The legacy database ------------------------------------------------------------


def legacy_test_connection(*, alias: str | None = None) -> dict:
    """Open a new connection to the database holding the mail tables (within the
    configured connection timeout), run a query on the queue table and close it.
    Returns ``{"ok": True, "database", "vendor", "ms"}``; LEGACY_DB_UNREACHABLE (503)
    with the error and the time spent otherwise."""
    alias = alias or router.db_for_read(EmailDetail)
    service = service_get()
    config = {**connections.settings[alias]}
    options = dict(config.get("OPTIONS") or {})
    vendor_key = config["ENGINE"].rsplit(".", 1)[-1]
    if vendor_key == "postgresql":
        options["connect_timeout"] = service.db_connection_timeout
    elif vendor_key == "mssql":
        options["connection_timeout"] = service.db_connection_timeout
    elif vendor_key == "sqlite3":
        options.pop("init_command", None)
    config["OPTIONS"] = options
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(config, alias)
    started = time.perf_counter()
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {wrapper.ops.quote_name(EmailDetail._meta.db_table)}"
            )
            cursor.fetchone()
    except Exception as exc:
        ms = round((time.perf_counter() - started) * 1000, 1)
        raise ApplicationError(
            "LEGACY_DB_UNREACHABLE",
            "The mail database did not answer.",
            {"database": alias, "error": f"{exc.__class__.__name__}: {exc}"[:300], "ms": ms},
            status=503,
        )
    finally:
        wrapper.close()
    ms = round((time.perf_counter() - started) * 1000, 1)
    return {"ok": True, "database": alias, "vendor": wrapper.vendor, "ms": ms}

"""The queue processor: the only code that sends mail.

One batch walks the waiting rows oldest first (``dd_srno`` ascending) and handles them
one at a time. Each row is claimed before it is sent:

- where the database has ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL, SQL Server:
  ``WITH (ROWLOCK, UPDLOCK, READPAST)``) the row is read with that lock in its own
  transaction, sent, updated, and the transaction commits. Other processors skip the
  locked row, so two processors never send it at once; a processor that dies before
  its commit releases the lock and the row stays ``N``;
- on SQLite (no row locks) one processor at a time runs: a file lock
  (MAILQUEUE_LOCK_FILE) is held for the batch; the OS drops it when a process dies.

So delivery is at least once: a processor killed after the SMTP server accepted a row
but before the row's update committed sends that one row again next time.
SMTP connections are opened once per parameter set per batch and reused.
"""

import contextlib
import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db import connections, router, transaction
from django.db.models import BooleanField, Case, F, Q, Value, When
from django.utils import timezone
from filelock import FileLock, Timeout

from mailqueue.models import EmailDetail, EmailParameter, MailService, ParamHealth, SendFlag
from mailqueue.schedule import service_get
from mailqueue.smtp import (
    CONFIG,
    PERMANENT,
    SENT,
    TRANSIENT,
    Outcome,
    SendFailure,
    build_message,
    classify,
    close_quietly,
    open_connection,
    send_message,
)

logger = logging.getLogger("scriptorium.mailqueue")
FALLBACK = "(fallback)"
REASON_MAX = 500


@dataclass
class BatchResult:
    """Counts of one batch. ``busy``: another processor held the SQLite lock."""

    processed: int = 0
    sent: int = 0
    failed: int = 0  # became F: permanent, or retries used up
    retried: int = 0  # transient failure, will be retried after the backoff
    deferred: int = 0  # configuration error or server unreachable: row left as it was
    busy: bool = False
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "processed": self.processed,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "deferred": self.deferred,
            "busy": self.busy,
        }


def backoff(retries: int) -> timedelta:
    """How long a row that failed ``retries`` times waits before the next attempt."""
    base = settings.MAILQUEUE_BACKOFF_SECONDS
    seconds = min(base * 2 ** max(retries - 1, 0), settings.MAILQUEUE_BACKOFF_MAX_SECONDS)
    return timedelta(seconds=seconds)


def due_rows(*, now: datetime, max_retries: int):
    """Rows the processor may send now: ``N``, fewer than ``max_retries`` failures, and
    their backoff passed (a retried row without dd_LastRetryDate counts as due)."""
    due = Q(retry_count__lte=0) | Q(last_retry_date__isnull=True)
    for n in range(1, max_retries):
        due |= Q(retry_count=n, last_retry_date__lte=now - backoff(n))
    return EmailDetail.objects.filter(
        due, send_flag=SendFlag.WAITING, retry_count__lt=max_retries
    ).order_by("srno")


def _mail_alias() -> str:
    return router.db_for_write(EmailDetail)


class _Batch:
    def __init__(self, *, service: MailService, now: datetime | None, only):
        self.service = service
        self.fixed_now = now
        self.only = list(only) if only is not None else None
        self.alias = _mail_alias()
        self.locking = connections[self.alias].features.has_select_for_update_skip_locked
        self.result = BatchResult()
        self.params = {p.param_code.strip().upper(): p for p in EmailParameter.objects.all()}
        self.default_code = self._default_code()
        self.smtp: dict[str, object] = {}  # param code -> open connection
        self.down: dict[str, Outcome] = {}  # param code -> why it cannot be used now
        self.health: dict[str, Outcome] = {}  # param code -> last outcome this batch
        self.sent_plain: list[int] = []  # sent rows of the current chunk, recorded together

    def now(self) -> datetime:
        return self.fixed_now or timezone.now()

    def _default_code(self) -> str | None:
        configured = (settings.MAILQUEUE_DEFAULT_PARAM_CODE or "").strip().upper()
        if configured:
            return configured
        active = [code for code, p in sorted(self.params.items()) if p.active]
        return active[0] if active else None

    def run(self, batch_size: int) -> BatchResult:
        cursor = 0
        try:
            with self._timeouts():
                while self.result.processed < batch_size:
                    limit = min(settings.MAILQUEUE_CLAIM_SIZE, batch_size - self.result.processed)
                    cursor = self._claim_and_handle(cursor, limit)
                    if cursor is None:
                        break
        finally:
            for smtp in self.smtp.values():
                close_quietly(smtp)
            self._save_bookkeeping()
        return self.result

    @contextlib.contextmanager
    def _timeouts(self):
        connection = connections[self.alias]
        ms = int(self.service.db_request_timeout) * 1000
        statements = {
            "postgresql": (f"SET statement_timeout = {ms}", "RESET statement_timeout"),
            "microsoft": (f"SET LOCK_TIMEOUT {ms}", "SET LOCK_TIMEOUT -1"),
        }.get(connection.vendor)
        if statements and ms > 0:
            with connection.cursor() as c:
                c.execute(statements[0])
        try:
            yield
        finally:
            if statements and ms > 0:
                with contextlib.suppress(Exception), connection.cursor() as c:
                    c.execute(statements[1])

    def _candidates(self):
        if self.only is not None:
            rows = EmailDetail.objects.filter(srno__in=self.only, send_flag=SendFlag.WAITING)
        else:
            rows = due_rows(now=self.now(), max_retries=self.service.max_retries)
        # Documents are loaded one row at a time (memory stays flat with big files).
        return (
            rows.defer("document")
            .annotate(
                has_document=Case(
                    When(document__isnull=False, then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
            .order_by("srno")
        )

    def _claim_and_handle(self, cursor: int, limit: int) -> int | None:
        """Claim up to ``limit`` rows after ``cursor``, send them, record the outcomes.
        Returns the new cursor (None when nothing was left)."""
        rows = self._candidates().filter(srno__gt=cursor)[:limit]
        if not self.locking:
            claimed = list(rows)
            self._handle_all(claimed)
        else:
            with transaction.atomic(using=self.alias):
                claimed = list(rows.select_for_update(skip_locked=True))
                self._handle_all(claimed)
        return claimed[-1].srno if claimed else None

    def _handle_all(self, rows: list[EmailDetail]) -> None:
        self.sent_plain: list[int] = []
        for row in rows:
            if row.has_document:
                row.document = (
                    EmailDetail.objects.filter(pk=row.srno).values_list("document", flat=True).get()
                )
            else:
                row.document = None
            self._handle(row)
            row.document = None
        if self.sent_plain:  # the common case: one UPDATE for the chunk's sent rows
            EmailDetail.objects.filter(pk__in=self.sent_plain).update(
                send_flag=SendFlag.SENT, sent_date=self.now(), bounce_reason=None
            )

    def _handle(self, row: EmailDetail) -> None:
        self.result.processed += 1
        code = (row.param_code or "").strip().upper() or self.default_code
        if code is None:
            outcome = self._send_fallback(row)
        elif code in self.down:
            self.result.deferred += 1
            return
        else:
            param = self.params.get(code)
            if param is None or not param.active:
                state = "unknown" if param is None else "inactive"
                outcome = Outcome(CONFIG, f"Parameter set {code!r} is {state}")
                self.down[code] = outcome
            else:
                outcome = self._send_smtp(row, code, param)
            self.health[code] = outcome
        self._record(row, outcome)

    def _send_smtp(self, row: EmailDetail, code: str, param: EmailParameter) -> Outcome:
        try:
            message = build_message(row, param)
            smtp = self.smtp.get(code)
            if smtp is None:
                smtp = self.smtp[code] = self._open(code, param)
            refused = send_message(smtp, message)
        except SendFailure as exc:
            return exc.outcome
        except Exception as exc:
            if not _connection_still_usable(exc):
                broken = self.smtp.pop(code, None)
                if broken is not None:
                    close_quietly(broken)
            return classify(exc)
        return Outcome(SENT, refused)

    def _open(self, code: str, param: EmailParameter):
        try:
            return open_connection(param, timeout=settings.MAILQUEUE_SMTP_TIMEOUT)
        except SendFailure as exc:
            self.down[code] = exc.outcome
            raise

    def _send_fallback(self, row: EmailDetail) -> Outcome:
        backend = settings.MAILQUEUE_FALLBACK_BACKEND
        if backend == "mailqueue.backends.QueuedEmailBackend":
            return Outcome(CONFIG, "MAILQUEUE_FALLBACK_BACKEND may not be the queue itself")
        try:
            connection = self.smtp.get(FALLBACK)
            if connection is None:
                connection = get_connection(backend)
                connection.open()
                self.smtp[FALLBACK] = _DjangoConnection(connection)
            else:
                connection = connection.connection
            connection.send_messages([build_message(row, None)])
        except Exception as exc:
            return classify(exc)
        return Outcome(SENT, "", via=backend)

    def _record(self, row: EmailDetail, outcome: Outcome) -> None:
        now = self.now()
        if self.only is not None:
            self.result.outcomes[row.srno] = outcome
        reason = (outcome.reason or "")[:REASON_MAX] or None
        changes: dict = {"bounce_reason": reason}
        if outcome.kind == SENT:
            self.result.sent += 1
            if not reason:
                self.sent_plain.append(row.srno)
                return
            changes.update(send_flag=SendFlag.SENT, sent_date=now)
        elif outcome.kind == TRANSIENT:
            retries = row.retry_count + 1
            changes.update(retry_count=retries, last_retry_date=now)
            if retries >= self.service.max_retries:
                changes["send_flag"] = SendFlag.FAILED
                self.result.failed += 1
            else:
                self.result.retried += 1
        elif outcome.kind == PERMANENT:
            changes.update(send_flag=SendFlag.FAILED, last_retry_date=now)
            self.result.failed += 1
        else:  # CONFIG: the row keeps its retries; the parameter set is unhealthy
            self.result.deferred += 1
        EmailDetail.objects.filter(pk=row.srno).update(**changes)

    def _save_bookkeeping(self) -> None:
        now = self.now()
        r = self.result
        updates = {"last_run": now}
        if r.sent or r.failed or r.retried:
            updates["last_activity"] = now
        MailService.objects.filter(pk=self.service.pk).update(
            total_processed=F("total_processed") + r.sent + r.failed + r.retried,
            total_sent=F("total_sent") + r.sent,
            total_failed=F("total_failed") + r.failed,
            total_retried=F("total_retried") + r.retried,
            **updates,
        )
        for code, outcome in self.health.items():
            status = {SENT: "ok", CONFIG: "config"}.get(outcome.kind, None)
            if outcome.kind in (TRANSIENT, PERMANENT):
                status = "transient" if code in self.down else "ok"
            defaults = {"status": status, "checked_at": now}
            defaults["last_error"] = "" if status == "ok" else outcome.reason[:REASON_MAX]
            if status == "ok":
                defaults["last_ok_at"] = now
            ParamHealth.objects.update_or_create(param_code=code, defaults=defaults)


def _connection_still_usable(exc: Exception) -> bool:
    """smtplib resets the session after a refused sender/recipients or data error, and
    closes it only after a 421."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code != 421


class _DjangoConnection:
    """Lets a Django mail backend sit in the batch's connection pool."""

    def __init__(self, connection):
        self.connection = connection

    def quit(self):
        self.connection.close()

    def close(self):
        self.connection.close()


def process_batch(
    *,
    batch_size: int | None = None,
    only=None,
    wait: float = 0.0,
    now: datetime | None = None,
) -> BatchResult:
    """Send up to ``batch_size`` due rows (default: the configured batch size), oldest
    first, and record each outcome in its row. ``only``: just these dd_srno values, if
    still ``N``, regardless of backoff (send-now, test e-mail). ``wait``: seconds to
    wait for the SQLite processor lock (a busy result otherwise). Never raises for a
    failed e-mail; every failure is written to the row."""
    service = service_get()
    size = batch_size or service.batch_size
    batch = _Batch(service=service, now=now, only=only)
    if batch.locking:
        return batch.run(size)
    lock = FileLock(settings.MAILQUEUE_LOCK_FILE)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        return BatchResult(busy=True)
    try:
        return batch.run(size)
    finally:
        lock.release()

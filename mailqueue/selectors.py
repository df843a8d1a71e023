"""Reads of the mailqueue app: status, dashboard, queue filters, health."""

from django.db.models import BooleanField, Case, Count, Q, Value, When
from django.urls import reverse

from config.errors import ApplicationError
from mailqueue.models import EmailDetail, EmailParameter, MailService, ParamHealth, SendFlag
from mailqueue.schedule import next_window_run, schedule_get, window_open
from mailqueue.services import legacy_test_connection, service_get


def service_status(*, service: MailService | None = None) -> dict:
    """running/stopped (running = started and the schedule exists), when it was
    started, the last activity and batch, the next run (window applied)."""
    service = service or service_get()
    schedule = schedule_get()
    running = service.is_started and schedule is not None
    return {
        "status": "running" if running else "stopped",
        "started_at": service.started_at if service.is_started else None,
        "stopped_at": service.stopped_at,
        "last_activity": service.last_activity,
        "last_run": service.last_run,
        "next_run": next_window_run(service=service) if running else None,
        "window_open": window_open(service=service),
    }


def queue_counts() -> dict:
    """Rows per state: waiting (first try), retrying, sent, failed."""
    counts = EmailDetail.objects.aggregate(
        waiting=Count("pk", filter=Q(send_flag=SendFlag.WAITING, retry_count=0)),
        retrying=Count("pk", filter=Q(send_flag=SendFlag.WAITING, retry_count__gt=0)),
        sent=Count("pk", filter=Q(send_flag=SendFlag.SENT)),
        failed=Count("pk", filter=Q(send_flag=SendFlag.FAILED)),
    )
    return counts


def param_health() -> list[dict]:
    """Every parameter set (and every unknown code rows named) with what the processor
    last saw: ``healthy`` is false after a configuration error."""
    health = {h.param_code: h for h in ParamHealth.objects.all()}
    rows = []
    for param in EmailParameter.objects.all():
        h = health.pop(param.param_code.strip().upper(), None)
        rows.append(_health_row(param.param_code, param.active, h))
    rows += [_health_row(code, False, h, known=False) for code, h in sorted(health.items())]
    return rows


def _health_row(code, active, h, known=True) -> dict:
    return {
        "param_code": code,
        "exists": known,
        "is_active": active,
        "healthy": h.healthy if h else True,
        "status": h.status if h else "unknown",
        "last_error": h.last_error if h else "",
        "checked_at": h.checked_at if h else None,
        "last_ok_at": h.last_ok_at if h else None,
    }


def dashboard() -> dict:
    """Database, schedule, service, totals, queue counts and parameter-set health."""
    service = service_get()
    try:
        database = legacy_test_connection()
    except ApplicationError as exc:
        database = {"ok": False, **exc.details}
    schedule = schedule_get()
    return {
        "database": database,
        "schedule": {
            "exists": schedule is not None,
            "start_time": service.start_time,
            "end_time": service.end_time,
            "interval": service.interval,
            "interval_unit": service.interval_unit,
            "next_run": schedule.next_run if schedule else None,
        },
        "service": service_status(service=service),
        "totals": {
            "processed": service.total_processed,
            "sent": service.total_sent,
            "failed": service.total_failed,
            "retried": service.total_retried,
        },
        "queue": queue_counts(),
        "param_sets": param_health(),
    }


def queue_rows(*, flag=None, param_code=None, to=None, since=None, until=None, search=None):
    """Queue rows, newest first, without the document (``has_document`` instead)."""
    rows = EmailDetail.objects.defer("document", "body_text").annotate(
        has_document=Case(
            When(document__isnull=False, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )
    if flag:
        rows = rows.filter(send_flag=flag)
    if param_code:
        rows = rows.filter(param_code__iexact=param_code)
    if to:
        rows = rows.filter(Q(to_emails__icontains=to) | Q(cc_emails__icontains=to))
    if since:
        rows = rows.filter(sent_date__gte=since)
    if until:
        rows = rows.filter(sent_date__lt=until)
    if search:
        rows = rows.filter(subject__icontains=search)
    return rows.order_by("-srno")


def health_check() -> dict:
    """/health/'s ``mail`` check: fails while a parameter set has a configuration error."""
    unhealthy = [h.param_code for h in ParamHealth.objects.filter(status=ParamHealth.Status.CONFIG)]
    status = service_status()
    return {"ok": not unhealthy, "service": status["status"], "unhealthy": unhealthy}


def admin_panel(request) -> dict:
    """The admin index panel: service, queue counts, unhealthy parameter sets."""
    counts = queue_counts()
    status = service_status()
    unhealthy = [p["param_code"] for p in param_health() if not p["healthy"]]
    return {
        "title": "Mail queue",
        "rows": [
            ("service", status["status"]),
            ("waiting / retrying", f"{counts['waiting']} / {counts['retrying']}"),
            ("sent / failed", f"{counts['sent']} / {counts['failed']}"),
            ("unhealthy parameter sets", ", ".join(unhealthy) or "none"),
            ("dashboard", reverse("admin:mailqueue_dashboard")),
        ],
    }

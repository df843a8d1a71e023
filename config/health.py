"""/health/: database, broker and storage (plus whatever apps register)."""

import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.registry import health_checks, register_health_check


def _timed(fn) -> dict:
    started = time.perf_counter()
    try:
        result = fn() or {}
        result.setdefault("ok", True)
    except Exception as exc:  # a failing check is reported, never raised
        result = {"ok": False, "error": exc.__class__.__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


@register_health_check("database")
def check_database() -> dict:
    """Every configured database answers ``SELECT 1``."""
    for alias in settings.DATABASES:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    return {"ok": True, "vendor": connections["default"].vendor}


@register_health_check("broker")
def check_broker() -> dict:
    """The django-q2 broker (Redis or the ORM) answers."""
    from django_q.brokers import get_broker

    broker = get_broker()
    ok = bool(broker.ping())
    return {"ok": ok, "kind": "redis" if settings.Q_CLUSTER.get("redis") else "orm"}


@register_health_check("storage")
def check_storage() -> dict:
    """The file storage takes a small write, reads it back and deletes it."""
    name = default_storage.save(f".health/{uuid.uuid4().hex}", ContentFile(b"ok"))
    try:
        with default_storage.open(name) as fh:
            ok = fh.read() == b"ok"
    finally:
        default_storage.delete(name)
    return {"ok": ok, "backend": getattr(settings, "STORAGE_BACKEND", "local")}


@never_cache
@require_GET
def health(request):
    """200 ``healthy`` when every check passes, 503 ``degraded`` otherwise."""
    checks = {name: _timed(fn) for name, fn in health_checks.items()}
    healthy = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "healthy" if healthy else "degraded", "checks": checks},
        status=200 if healthy else 503,
    )

"""Every write of the audit app: recording an event, and retention.

Other apps record through :func:`audit_record` (most are wired by ``audit.signals``
and need no call of their own)::

    from audit.services import audit_record

    audit_record(action="secret.used", target=secret, details={"execution": run.pk})

The actor defaults to the user of the request being served (API, admin, portal);
outside a request (workers, commands) pass ``actor=`` or it is recorded as the system.
"""

import ipaddress
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.middleware import current_request
from audit.models import AuditEvent

_FROM_REQUEST = object()

# Keys whose values are never stored in ``details``, at any depth (belt and braces:
# callers must not pass secret values in the first place).
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "access",
        "refresh",
        "key",
        "api_key",
        "value",
        "authorization",
        "smtp_password",
        "value_encrypted",
        "hashed_key",
    }
)
REDACTED = "[redacted]"


def _scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy of ``value`` with sensitive keys' values redacted."""
    if depth > 5:
        return REDACTED
    if isinstance(value, dict):
        return {
            str(k): REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def request_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or with NUM_PROXIES=n the address the n-th
    nearest proxy appended to X-Forwarded-For (as DRF's throttles read it)."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            address = hops[-min(proxies, len(hops))]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def request_user(request):
    """The signed-in user of ``request``, or None."""
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


def audit_record(
    *,
    action: str,
    actor: Any = _FROM_REQUEST,
    actor_repr: str | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: Any = "",
    target_repr: str = "",
    details: dict | None = None,
    request=None,
) -> AuditEvent:
    """Append one event and return it (one INSERT).

    ``actor``: a user, or None for the system; left out, the signed-in user of the
    current request. ``target``: a model instance (its label, pk and str are copied),
    or ``target_type``/``target_id``/``target_repr`` given as text. ``details``: JSON
    facts about what happened; values under sensitive keys (password, token, key,
    value, secret...) are replaced by "[redacted]". ``request`` defaults to the one
    being served and gives the client's address."""
    request = request if request is not None else current_request()
    if actor is _FROM_REQUEST:
        actor = request_user(request)
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target.pk if target_id in ("", None) else target_id
        target_repr = target_repr or str(target)
    if actor_repr is None:
        actor_repr = actor.get_username() if actor is not None else ""
    return AuditEvent.objects.create(
        action=action,
        actor=actor if actor is not None and actor.pk else None,
        actor_repr=actor_repr[:150],
        target_type=target_type[:100],
        target_id=str(target_id if target_id is not None else "")[:64],
        target_repr=str(target_repr)[:255],
        details=_scrub(details or {}),
        ip=request_ip(request),
    )


def audit_prune(*, retention_days: int | None = None) -> int:
    """Delete events older than ``retention_days`` (default AUDIT_RETENTION_DAYS);
    0 keeps everything. Returns how many were deleted."""
    days = settings.AUDIT_RETENTION_DAYS if retention_days is None else retention_days
    if not days or days <= 0:
        return 0
    return AuditEvent.objects.prune_before(timezone.now() - timedelta(days=days))

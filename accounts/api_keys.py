"""API keys of machine clients: make, list, revoke, and check one (services and
selectors). Keys are generated and hashed by djangorestframework-api-key; only the
prefix and the sha512 hash are stored, the key itself is returned once."""

from datetime import datetime, time

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import User, UserAPIKey
from audit.services import audit_record
from config.errors import ApplicationError

MAX_ACTIVE_KEYS_PER_USER = 100


def api_key_list(*, user: User) -> QuerySet[UserAPIKey]:
    """The user's own keys (revoked ones too), newest first."""
    return UserAPIKey.objects.filter(user=user).order_by("-created", "-id")


def api_key_create(
    *, user: User, name: str, expires_at: datetime | None = None
) -> tuple[UserAPIKey, str]:
    """Make a named key for ``user``; returns the record and the key (shown once,
    never stored). VALIDATION_ERROR (400) for an empty name, an expiry in the past or
    more than MAX_ACTIVE_KEYS_PER_USER usable keys."""
    name = (name or "").strip()
    errors = {}
    if not name:
        errors["name"] = ["A name is required."]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future."]
    if not user.is_active:
        errors["non_field_errors"] = ["An inactive user cannot make API keys."]
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "The API key is not valid.", errors)
    with transaction.atomic():
        usable = UserAPIKey.objects.filter(user=user, revoked=False).filter(
            Q(expiry_date__isnull=True) | Q(expiry_date__gt=timezone.now())
        )
        if usable.count() >= MAX_ACTIVE_KEYS_PER_USER:
            raise ApplicationError(
                "VALIDATION_ERROR",
                f"A user may hold at most {MAX_ACTIVE_KEYS_PER_USER} usable API keys.",
                {"non_field_errors": ["Revoke unused keys first."]},
            )
        api_key, key = UserAPIKey.objects.create_key(
            user=user, name=name[:50], expiry_date=expires_at
        )
    return api_key, key


def api_key_revoke(*, api_key: UserAPIKey) -> UserAPIKey:
    """Revoke the key for good (idempotent); the record stays for the history."""
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])
    return api_key


def _refuse(message: str):
    raise AuthenticationFailed(message, code="api_key_invalid")


def api_key_authenticate(*, key: str, request=None) -> UserAPIKey:
    """The usable key behind ``key`` (its user loaded); AuthenticationFailed (401)
    when it is unknown, wrong, revoked, expired or its user is inactive. The first
    use of a day sets ``last_used_at`` and records api_key.used."""
    prefix, dot, _ = key.partition(".")
    api_key = None
    if dot and prefix:
        api_key = UserAPIKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not api_key.is_valid(key):
        _refuse("The API key is not valid.")
    if api_key.revoked:
        _refuse("The API key has been revoked.")
    if api_key.has_expired:
        _refuse("The API key has expired.")
    if not api_key.user.is_active:
        _refuse("The user of this API key is inactive.")
    _mark_used(api_key=api_key, request=request)
    return api_key


def _mark_used(*, api_key: UserAPIKey, request) -> None:
    now = timezone.now()
    day_start = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    if api_key.last_used_at is not None and api_key.last_used_at >= day_start:
        return
    first_today = (
        UserAPIKey.objects.filter(pk=api_key.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=day_start))
        .update(last_used_at=now)
    )
    api_key.last_used_at = now
    if first_today:  # one event per key and day, even with concurrent requests
        audit_record(
            action="api_key.used",
            actor=api_key.user,
            target=api_key,
            details={"prefix": api_key.prefix},
            request=request,
        )

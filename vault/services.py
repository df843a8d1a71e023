"""Every rule about secrets: who may create, change, share, delete and use them, and
the values a run gets. Values are encrypted on the way in and decrypted only for a
run (``secrets_for_run``); nothing here returns a value to a person."""

import re

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.permissions import user_owns_or_is_staff
from audit.services import audit_record
from config.errors import ApplicationError, NotFoundError, PermissionDeniedError

from . import crypto
from .models import NAME_PATTERN, Secret
from .selectors import secret_usable_by_user

MAX_VALUE_BYTES = 64 * 1024
# Names the sandbox sets itself or that change how Python or the loader behave.
RESERVED = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|TMPDIR|LANG|LC_.*|PWD|SHELL|VIRTUAL_ENV|MPLBACKEND|"
    r"PYTHON.*|LD_.*|SCRIPTORIUM_.*|HTTPS?_PROXY|NO_PROXY|ALL_PROXY)$"
)
_MIN_LENGTH = 4  # shorter values could not be masked in logs without masking words


def _clean_name(name) -> str:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "A secret's name is an environment variable name: A-Z, 0-9 and _, at most 64.",
            {"name": ["Use upper-case letters, digits and _, not starting with a digit."]},
        )
    if RESERVED.match(name):
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"{name} is set by the sandbox itself; choose another name.",
            {"name": ["Reserved name."]},
        )
    return name


def _clean_value(value) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ApplicationError(
            "VALIDATION_ERROR", "A secret's value is text.", {"value": ["Must be text."]}
        )
    if len(value) < _MIN_LENGTH or len(value.encode()) > MAX_VALUE_BYTES:
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"A secret's value is {_MIN_LENGTH} characters to {MAX_VALUE_BYTES} bytes long "
            "(shorter values could not be masked in logs).",
            {"value": ["Bad length."]},
        )
    return value


def _clean_groups(groups) -> list[Group]:
    if groups is None:
        return []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ApplicationError(
            "VALIDATION_ERROR", "groups is a list of group names.", {"groups": ["Bad type."]}
        )
    found = {g.name: g for g in Group.objects.filter(name__in=groups)}
    missing = sorted(set(groups) - set(found))
    if missing:
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"Unknown group(s): {', '.join(missing)}.",
            {"groups": [f"Unknown: {name}" for name in missing]},
        )
    return list(found.values())


def _require_manager(*, user, secret: Secret) -> None:
    if not user_owns_or_is_staff(user, secret.owner_id):
        if secret_usable_by_user(user=user, secret=secret):
            raise PermissionDeniedError("Only the secret's owner or staff may change it.")
        raise NotFoundError("No such secret.")


def secret_validate(*, owner, name: str | None, value: str | None) -> None:
    """Raise the ApplicationError that creating (``name`` given) or changing the value
    (``value`` given) would raise, without writing anything (for forms)."""
    if name is not None:
        _clean_name(name)
        if Secret.objects.filter(owner=owner, name=name).exists():
            raise ApplicationError(
                "SECRET_EXISTS", f"{owner} already has a secret named {name}.", status=409
            )
    if value is not None:
        _clean_value(value)


def secret_create(*, user, name: str, value: str, groups=None, description: str = "") -> Secret:
    """A new secret of ``user``; 409 SECRET_EXISTS when they already have that name."""
    name, value, group_objs = _clean_name(name), _clean_value(value), _clean_groups(groups)
    try:
        with transaction.atomic():
            secret = Secret.objects.create(
                name=name,
                owner=user,
                description=str(description or "")[:200],
                value_encrypted=crypto.encrypt(value),
            )
            secret.groups.set(group_objs)
    except IntegrityError:
        raise ApplicationError(
            "SECRET_EXISTS", f"You already have a secret named {name}.", status=409
        ) from None
    return secret


def secret_update(*, user, secret: Secret, value=None, groups=None, description=None) -> Secret:
    """Change the value (when given), the groups it is shared with (when given) or the
    description. Owner or staff only."""
    _require_manager(user=user, secret=secret)
    group_objs = None if groups is None else _clean_groups(groups)
    with transaction.atomic():
        if value is not None:
            secret.value_encrypted = crypto.encrypt(_clean_value(value))
        if description is not None:
            secret.description = str(description)[:200]
        secret.save()
        if group_objs is not None:
            secret.groups.set(group_objs)
    return secret


def secret_delete(*, user, secret: Secret) -> None:
    """Remove the secret (owner or staff). Runs that declare it then cannot start."""
    _require_manager(user=user, secret=secret)
    secret.delete()


def secrets_for_run(*, user, names: list[str], execution_id: int | None = None) -> dict[str, str]:
    """The values of the secrets ``names`` that ``user`` may use (their own first, then
    shared with one of their groups), for a run's environment. Raises 403
    SECRET_NOT_ALLOWED naming those they may not use (nothing is decrypted then)."""
    if not names:
        return {}
    from .selectors import secrets_usable_by

    usable = secrets_usable_by(user=user, names=names)
    missing = sorted(set(names) - set(usable))
    if missing:
        raise ApplicationError(
            "SECRET_NOT_ALLOWED",
            "The script needs secrets you may not use: " + ", ".join(missing) + ".",
            {"secrets": missing},
            status=403,
        )
    values = {}
    for name, secret in usable.items():
        try:
            values[name] = crypto.decrypt(secret.value_encrypted)
        except crypto.DecryptionFailed:
            raise ApplicationError(
                "SECRET_UNREADABLE",
                f"The secret {name} was encrypted with a key this server no longer has.",
                {"secrets": [name]},
                status=500,
            ) from None
    Secret.objects.filter(pk__in=[s.pk for s in usable.values()]).update(
        last_used_at=timezone.now()
    )
    for secret in usable.values():  # who used which secret for which run (never the value)
        audit_record(
            action="secret.used",
            actor=user,
            target=secret,
            details={"execution": execution_id} if execution_id else {},
        )
    return values


def secrets_check_for_run(*, user, names: list[str]) -> None:
    """Raise 403 SECRET_NOT_ALLOWED (before any run is recorded) when ``user`` may not
    use one of ``names``; decrypts nothing."""
    if not names:
        return
    from .selectors import secrets_usable_by

    missing = sorted(set(names) - set(secrets_usable_by(user=user, names=names)))
    if missing:
        raise ApplicationError(
            "SECRET_NOT_ALLOWED",
            "The script needs secrets you may not use: " + ", ".join(missing) + ".",
            {"secrets": missing},
            status=403,
        )

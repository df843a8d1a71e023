"""Every write of the accounts app: users, invitations, registration, password resets."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Invitation, User
from audit.services import audit_record
from config.errors import ApplicationError, ConflictError

INVITATION_ERRORS = {
    "expired": ("INVITATION_EXPIRED", "This invitation has expired; ask for a new one."),
    "accepted": ("INVITATION_USED", "This invitation has already been used."),
    "revoked": ("INVITATION_REVOKED", "This invitation has been withdrawn."),
}


def _send_templated_mail(*, to: str, subject: str, template: str, context: dict) -> None:
    """Send ``templates/emails/<template>.txt`` (+ ``.html``) through EMAIL_BACKEND."""
    context = {**context, "site_url": settings.SITE_URL}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"emails/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )
    message.attach_alternative(render_to_string(f"emails/{template}.html", context), "text/html")
    message.send()


def _validate_new_user(*, username: str, email: str, password: str | None) -> dict[str, list]:
    errors: dict[str, list] = {}
    if not username or not username.strip():
        errors["username"] = ["A username is required."]
    else:
        try:
            User.username_validator(username)
        except DjangoValidationError as exc:
            errors["username"] = exc.messages
    try:
        validate_email(email)
    except DjangoValidationError:
        errors["email"] = ["Enter a valid e-mail address."]
    if password is not None:
        try:
            password_validation.validate_password(password, User(username=username, email=email))
        except DjangoValidationError as exc:
            errors["password"] = exc.messages
    return errors


def user_create(
    *,
    username: str,
    email: str,
    password: str | None,
    is_staff: bool = False,
    is_superuser: bool = False,
    validate_password: bool = True,
) -> User:
    """Create an active user. Raises VALIDATION_ERROR (400) for bad fields and
    USER_EXISTS (409) when the username or e-mail (any case) is taken.
    ``password=None`` makes an account that cannot sign in until a reset."""
    email = User.objects.normalize_email(email or "").strip()
    username = (username or "").strip()
    errors = _validate_new_user(
        username=username, email=email, password=password if validate_password else None
    )
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "The user is not valid.", errors)
    taken = {}
    if User.objects.filter(username__iexact=username).exists():
        taken["username"] = [f"The username {username!r} is taken."]
    if User.objects.filter(email__iexact=email).exists():
        taken["email"] = [f"An account with the e-mail {email!r} exists."]
    if taken:
        raise ConflictError("USER_EXISTS", "A user with these details exists.", taken)
    user = User(
        username=username,
        email=email,
        is_staff=is_staff or is_superuser,
        is_superuser=is_superuser,
    )
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # lost a race with another request
        raise ConflictError("USER_EXISTS", "A user with these details exists.") from exc
    return user


def user_ensure_admin(
    *, username: str, email: str, password: str | None
) -> tuple[User, str | None]:
    """Make sure a superuser called ``username`` exists. Returns the user and, when it
    was created without a given password, the generated one (to be shown once)."""
    existing = User.objects.filter(username=username).first()
    if existing:
        return existing, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = user_create(
        username=username,
        email=email,
        password=password,
        is_superuser=True,
        validate_password=False,
    )
    return user, generated


def user_set_active(*, users, active: bool, acting_user: User | None = None) -> int:
    """Activate or deactivate the given users; returns how many changed. Nobody can
    deactivate themself (``acting_user`` is left out), so an admin never locks
    themself out."""
    if not active and acting_user is not None:
        users = users.exclude(pk=acting_user.pk)
    with transaction.atomic():
        changing = list(users.exclude(is_active=active).select_for_update())
        count = User.objects.filter(pk__in=[u.pk for u in changing]).update(is_active=active)
        for user in changing:  # a bulk update sends no signal: recorded here
            audit_record(
                action="user.changed",
                target=user,
                details={"fields": ["is_active"], "is_active": active},
            )
    return count


def user_password_reset(*, user: User) -> None:
    """Invalidate the user's password and e-mail them a link to choose a new one."""
    user.set_unusable_password()
    user.save(update_fields=["password"])
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = settings.SITE_URL + reverse(
        "accounts:password_reset_confirm", kwargs={"uidb64": uid, "token": token}
    )
    _send_templated_mail(
        to=user.email,
        subject="Your Scriptorium password was reset",
        template="password_reset",
        context={"user": user, "link": link},
    )


def invitation_create(*, email: str, invited_by: User | None, is_staff: bool = False) -> Invitation:
    """Invite ``email``: earlier pending invitations for it are revoked, a new one-time
    link (valid INVITATION_TTL_DAYS) is e-mailed. USER_EXISTS (409) if it has an account."""
    email = User.objects.normalize_email(email or "").strip()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ApplicationError(
            "VALIDATION_ERROR", "Enter a valid e-mail address.", {"email": exc.messages}
        ) from exc
    if User.objects.filter(email__iexact=email).exists():
        raise ConflictError(
            "USER_EXISTS", f"{email} already has an account.", {"email": ["Already registered."]}
        )
    with transaction.atomic():
        Invitation.objects.pending().filter(email__iexact=email).update(revoked_at=timezone.now())
        invitation = Invitation(email=email, invited_by=invited_by, is_staff=is_staff)
        token = _issue_token(invitation)
        invitation.save()
        _send_invitation(invitation=invitation, token=token)
    return invitation


def _issue_token(invitation: Invitation) -> str:
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    invitation.token_hash = Invitation.hash_token(token)
    invitation.created_at = now
    invitation.expires_at = now + timedelta(days=settings.INVITATION_TTL_DAYS)
    return token


def _send_invitation(*, invitation: Invitation, token: str) -> None:
    link = settings.SITE_URL + reverse("accounts:register", kwargs={"token": token})
    _send_templated_mail(
        to=invitation.email,
        subject="You are invited to Scriptorium",
        template="invitation",
        context={
            "invitation": invitation,
            "link": link,
            "token": token,
            "days": settings.INVITATION_TTL_DAYS,
        },
    )
    invitation.sent_at = timezone.now()
    invitation.save(update_fields=["sent_at"])


def invitation_resend(*, invitation: Invitation) -> Invitation:
    """Send a fresh link (the old one stops working) with a new expiry.
    A used or revoked invitation cannot be resent."""
    if invitation.status in ("accepted", "revoked"):
        code, message = INVITATION_ERRORS[invitation.status]
        raise ApplicationError(code, message)
    with transaction.atomic():
        token = _issue_token(invitation)
        invitation.save(update_fields=["token_hash", "created_at", "expires_at"])
        _send_invitation(invitation=invitation, token=token)
    return invitation


def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Withdraw an unused invitation (idempotent). A used one cannot be revoked."""
    if invitation.accepted_at:
        raise ApplicationError(*INVITATION_ERRORS["accepted"])
    if not invitation.revoked_at:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_get_usable(*, token: str) -> Invitation:
    """The pending invitation behind ``token``; INVITATION_INVALID / _EXPIRED / _USED /
    _REVOKED (400) otherwise."""
    invitation = Invitation.objects.filter(token_hash=Invitation.hash_token(token or "")).first()
    if invitation is None:
        raise ApplicationError("INVITATION_INVALID", "This invitation link is not valid.")
    if invitation.status != "pending":
        raise ApplicationError(*INVITATION_ERRORS[invitation.status])
    return invitation


def user_register(
    *, username: str, password: str, email: str | None = None, invitation: str | None = None
) -> User:
    """Create an account from an invitation token (its e-mail wins), or without one
    when OPEN_REGISTRATION is on. The invitation is used up in the same transaction."""
    if not invitation:
        if not settings.OPEN_REGISTRATION:
            raise ApplicationError(
                "INVITATION_REQUIRED",
                "Registration is by invitation only.",
                {"invitation": ["This field is required."]},
                status=403,
            )
        return user_create(username=username, email=email or "", password=password)
    with transaction.atomic():
        invite = invitation_get_usable(token=invitation)
        invite = Invitation.objects.select_for_update().get(pk=invite.pk)
        if invite.status != "pending":  # used by a concurrent request
            raise ApplicationError(
                *INVITATION_ERRORS.get(invite.status, INVITATION_ERRORS["accepted"])
            )
        user = user_create(
            username=username, email=invite.email, password=password, is_staff=invite.is_staff
        )
        invite.accepted_at = timezone.now()
        invite.accepted_user = user
        invite.save(update_fields=["accepted_at", "accepted_user"])
    return user

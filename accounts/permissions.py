"""Who a user is, for every permission rule of the project: the one definition of an
active user, of staff, and of "the owner or staff".

Every app's rules start here (scripts.permissions for folders and scripts, storage for
files, executions for runs): an inactive or anonymous user may do nothing and sees
nothing, whatever else is true of them; staff means an active user with ``is_staff``
or ``is_superuser``.
"""


def user_is_active(user) -> bool:
    """True for a signed-in, active user; False for None, anonymous and inactive users."""
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def user_is_staff(user) -> bool:
    """True for an active user who is staff or superuser."""
    return user_is_active(user) and bool(user.is_staff or user.is_superuser)


def user_owns_or_is_staff(user, owner_id: int | None) -> bool:
    """True when ``user`` is active and staff, or active and the owner (``owner_id`` is
    the owner's primary key; None means nobody owns it, so only staff)."""
    if not user_is_active(user):
        return False
    return user_is_staff(user) or (owner_id is not None and owner_id == user.pk)

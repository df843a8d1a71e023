"""Queries of the storage app: who sees which files, and how much space they take."""

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.permissions import user_is_active, user_is_staff
from config.errors import NotFoundError
from storage.keys import key_validate
from storage.models import StoredFile


def files_visible_to(*, user) -> QuerySet[StoredFile]:
    """The files ``user`` may reach: their own, those of runs they requested; staff: all.
    Inactive and anonymous users see none."""
    qs = StoredFile.objects.all()
    if not user_is_active(user):
        return qs.none()
    if user_is_staff(user):
        return qs
    return qs.filter(Q(owner=user) | Q(execution__requested_by=user))


def file_get_for_user(*, user, key: str) -> StoredFile:
    """The file under ``key`` if ``user`` may reach it; NotFoundError (404) when it does not
    exist or is hidden from them (the two look the same). INVALID_KEY (400) for a key
    that could never be valid."""
    key = key_validate(key)
    stored = (
        files_visible_to(user=user).select_related("owner", "execution").filter(key=key).first()
    )
    if stored is None:
        raise NotFoundError("No such file.", {"key": key})
    return stored


def storage_usage() -> dict:
    """Totals over all files in ONE query: files, bytes, and the share produced by runs."""
    runs = Q(execution__isnull=False)
    return StoredFile.objects.aggregate(
        files=Count("id"),
        bytes=Coalesce(Sum("size"), 0),
        run_files=Count("id", filter=runs),
        run_bytes=Coalesce(Sum("size", filter=runs), 0),
        uploaded_files=Count("id", filter=~runs),
        uploaded_bytes=Coalesce(Sum("size", filter=~runs), 0),
    )

"""Which secrets a user sees and may use."""

from django.db.models import Q, QuerySet

from accounts.permissions import user_is_staff

from .models import Secret


def secret_list(*, user) -> QuerySet[Secret]:
    """The secrets ``user`` may see: their own and those shared with one of their groups
    (staff: all). Groups and owner are prefetched for listing."""
    queryset = Secret.objects.select_related("owner").prefetch_related("groups")
    if user_is_staff(user):
        return queryset
    return queryset.filter(Q(owner=user) | Q(groups__user=user)).distinct()


def secret_usable_by_user(*, user, secret: Secret) -> bool:
    """True when ``user`` owns ``secret`` or belongs to a group it is shared with."""
    return secret.owner_id == user.pk or secret.groups.filter(user=user).exists()


def secrets_usable_by(*, user, names: list[str]) -> dict[str, Secret]:
    """name -> the secret ``user`` would get for it: their own, else one shared with
    their groups (the oldest). Staff get no one else's secret: a run acts as its user."""
    found: dict[str, Secret] = {}
    candidates = (
        Secret.objects.filter(name__in=names)
        .filter(Q(owner=user) | Q(groups__user=user))
        .distinct()
        .order_by("name", "id")
    )
    for secret in candidates:
        if secret.name not in found or secret.owner_id == user.pk:
            if found.get(secret.name) is None or found[secret.name].owner_id != user.pk:
                found[secret.name] = secret
    return found

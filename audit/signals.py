"""Wires the other apps' models and Django's auth signals to audit_record, so that
most apps record their events without a call of their own.

Cheap by design: a handler returns at once for saves it does not audit (the worker's
many saves of a run, the processor's counters, a login's last_login). At most one
INSERT per audited change; a started run costs exactly one.
"""

import logging

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from audit.middleware import current_request
from audit.services import audit_record, request_user

logger = logging.getLogger("scriptorium.audit")

UID = "audit"  # dispatch_uid prefix: connecting twice does nothing
USER_FIELDS = [
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
    "password",
]
M2M_OPS = {"post_add": "add", "post_remove": "remove", "post_clear": "clear"}


def _connect(signal, handler, sender, name: str) -> None:
    signal.connect(handler, sender=sender, weak=False, dispatch_uid=f"{UID}.{name}")


def _model(app_label: str, name: str):
    """The model, or None when the app (or model) is not installed."""
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def _fields_changed(update_fields) -> list[str] | None:
    return sorted(update_fields) if update_fields else None


# --- Sign-ins ---------------------------------------------------------------------------


def on_logged_in(sender, request, user, **kwargs):
    audit_record(
        action="auth.login", actor=user, target=user, details={"method": "session"}, request=request
    )


def on_logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.logout", actor=user, target=user, request=request)


def on_login_failed(sender, credentials, request=None, **kwargs):
    """Django's authenticate() sends this for every refused sign-in: admin, portal and
    the JWT token endpoint alike. Only the username is kept (never the password)."""
    username = str(credentials.get("username") or credentials.get("email") or "")[:150]
    audit_record(
        action="auth.login_failed",
        actor=None,
        details={"username": username},
        request=request,
    )


# --- Users and groups -----------------------------------------------------------------


def on_user_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    """Remembers the audited fields' old values (one SELECT; none for last_login)."""
    instance._audit_old = None
    if raw or instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and not set(update_fields) & set(USER_FIELDS):
        return
    instance._audit_old = sender._base_manager.filter(pk=instance.pk).values(*USER_FIELDS).first()


def on_user_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    if created:
        audit_record(
            action="user.created",
            target=instance,
            details={"is_staff": instance.is_staff, "is_superuser": instance.is_superuser},
        )
        return
    old = getattr(instance, "_audit_old", None)
    instance._audit_old = None
    if not old:
        return
    changed = [f for f in USER_FIELDS if getattr(instance, f) != old[f]]
    if not changed:
        return
    details = {"fields": changed}
    for flag in ("is_active", "is_staff", "is_superuser"):
        if flag in changed:
            details[flag] = getattr(instance, flag)
    audit_record(action="user.changed", target=instance, details=details)


def on_user_deleted(sender, instance, **kwargs):
    actor = request_user(current_request())
    if actor is not None and actor.pk == instance.pk:  # the row is gone: keep the name only
        audit_record(
            action="user.deleted", actor=None, actor_repr=actor.get_username(), target=instance
        )
    else:
        audit_record(action="user.deleted", actor=actor, target=instance)


def on_group_saved(sender, instance, created, raw=False, **kwargs):
    if not raw:
        audit_record(action="group.created" if created else "group.changed", target=instance)


def on_group_deleted(sender, instance, **kwargs):
    audit_record(action="group.deleted", target=instance)


def _m2m_handler(*, forward_action: str, reverse_action: str):
    """An m2m_changed handler recording one event per change, on whichever side the
    change was made (``user.groups.add(g)`` or ``group.user_set.add(u)``)."""

    def handler(sender, instance, action, reverse, model, pk_set, **kwargs):
        op = M2M_OPS.get(action)
        if op is None:
            return
        details = {"op": op, model._meta.model_name: sorted(pk_set or [])}
        audit_record(
            action=reverse_action if reverse else forward_action,
            target=instance,
            details=details,
        )

    return handler


# --- Invitations --------------------------------------------------------------------------


def on_invitation_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    fields = set(update_fields or [])
    if created:
        audit_record(
            action="invitation.created",
            actor=instance.invited_by if instance.invited_by_id else None,
            target=instance,
            details={"email": instance.email, "is_staff": instance.is_staff},
        )
    elif "revoked_at" in fields and instance.revoked_at:
        audit_record(action="invitation.revoked", target=instance)
    elif "accepted_at" in fields and instance.accepted_at:
        audit_record(
            action="invitation.used",
            actor=instance.accepted_user if instance.accepted_user_id else None,
            target=instance,
            details={"user": instance.accepted_user_id},
        )
    elif "token_hash" in fields:
        audit_record(action="invitation.resent", target=instance)


# --- Scripts and folders ------------------------------------------------------------------


def on_version_saved(sender, instance, created, raw=False, **kwargs):
    if raw or not created:
        return
    script = instance.script
    audit_record(
        action="script.uploaded" if instance.number == 1 else "script.replaced",
        actor=instance.uploaded_by if instance.uploaded_by_id else None,
        target=script,
        target_repr=script.logical_path,
        details={"version": instance.number, "sha256": instance.sha256, "size": instance.size},
    )


SCRIPT_BOOKKEEPING = {"current_version", "updated_at"}


def on_script_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    """Settings edits (limits, network, enabled...) of an existing script; uploads are
    recorded by their version."""
    if raw or created:
        return
    if update_fields is not None and set(update_fields) <= SCRIPT_BOOKKEEPING:
        return
    audit_record(
        action="script.changed",
        target=instance,
        target_repr=instance.logical_path,
        details={"fields": _fields_changed(update_fields)},
    )


def on_script_deleted(sender, instance, **kwargs):
    audit_record(action="script.deleted", target=instance, target_repr=instance.logical_path)


def on_folder_saved(sender, instance, created, raw=False, **kwargs):
    if not raw and created:
        audit_record(
            action="folder.created",
            actor=instance.owner if instance.owner_id else None,
            target=instance,
        )


def on_folder_deleted(sender, instance, **kwargs):
    audit_record(action="folder.deleted", target=instance, target_repr=instance.path)


def _folder_groups_handler(field_name: str):
    def handler(sender, instance, action, reverse, model, pk_set, **kwargs):
        op = M2M_OPS.get(action)
        if op is None:
            return
        details = {"field": field_name, "op": op, "groups": sorted(pk_set or [])}
        if reverse:  # group.<related>.add(folder...): the folders changed
            details = {"field": field_name, "op": op, "group": instance.pk}
            details["folders"] = sorted(pk_set or [])
        audit_record(action="folder.permissions_changed", target=instance, details=details)

    return handler


# --- Runs -------------------------------------------------------------------------------------


def on_execution_saved(sender, instance, created, raw=False, **kwargs):
    """One INSERT per new run; every later save of the run (the worker's) returns here."""
    if not created or raw:
        return
    audit_record(
        action="run.started",
        actor=instance.requested_by if instance.requested_by_id else None,
        target=instance,
        target_repr=f"#{instance.pk} {instance.script_path}",
        details={
            "script": instance.script_path,
            "version": instance.version_number,
            "source": instance.source,
        },
    )


# --- API keys ------------------------------------------------------------------------------


def on_api_key_saved(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    details = {"prefix": instance.prefix, "user": instance.user_id}
    if created:
        audit_record(action="api_key.created", target=instance, details=details)
    elif instance.revoked and not getattr(instance, "_audit_revoked_recorded", False):
        # The library keeps the loaded value in _initial_revoked.
        if not getattr(instance, "_initial_revoked", False):
            instance._audit_revoked_recorded = True
            audit_record(action="api_key.revoked", target=instance, details=details)


def on_api_key_deleted(sender, instance, **kwargs):
    if not instance.revoked:
        audit_record(
            action="api_key.revoked",
            target=instance,
            details={"prefix": instance.prefix, "user": instance.user_id, "deleted": True},
        )


# --- Secrets (vault) ------------------------------------------------------------------------


def on_secret_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    audit_record(
        action="secret.created" if created else "secret.changed",
        actor=_owner_or_request(instance, created),
        target=instance,
        details={"fields": None if created else _fields_changed(update_fields)},
    )


def on_secret_deleted(sender, instance, **kwargs):
    audit_record(action="secret.deleted", target=instance)


def _owner_or_request(instance, created):
    user = request_user(current_request())
    if user is None and created and getattr(instance, "owner_id", None):
        return instance.owner
    return user


# --- Mail settings --------------------------------------------------------------------------

MAIL_STATE_FIELDS = {
    "is_started",
    "started_at",
    "stopped_at",
    "last_activity",
    "last_run",
    "total_processed",
    "total_sent",
    "total_failed",
    "total_retried",
}


def _config_fields(model) -> list[str]:
    return [
        f.attname
        for f in model._meta.concrete_fields
        if not f.primary_key and f.attname not in MAIL_STATE_FIELDS
    ]


def on_mail_config_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    """Remembers the old configuration (one SELECT) when a save may change it."""
    instance._audit_old = None
    if raw or instance._state.adding:
        return
    fields = _config_fields(sender)
    if update_fields is not None:
        fields = [f for f in fields if f in set(update_fields)]
    if fields:
        manager = sender._base_manager.using(instance._state.db or "default")
        instance._audit_old = manager.filter(pk=instance.pk).values(*fields).first()


def _changed_fields(instance) -> list[str]:
    old = getattr(instance, "_audit_old", None) or {}
    instance._audit_old = None
    return sorted(f for f, value in old.items() if getattr(instance, f) != value)


def on_mail_service_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    """Start/stop and configuration changes (old and new values: none is secret); the
    processor's bookkeeping is ignored."""
    if raw or created:
        return
    if update_fields is not None and "is_started" in update_fields:
        action = "mail.service_started" if instance.is_started else "mail.service_stopped"
        audit_record(action=action, target=instance)
    old = dict(getattr(instance, "_audit_old", None) or {})
    changed = _changed_fields(instance)
    if changed:
        audit_record(
            action="mail.settings_changed",
            target=instance,
            details={
                "fields": changed,
                "changes": {f: [str(old[f]), str(getattr(instance, f))] for f in changed},
            },
        )


def on_smtp_params_saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
    """Which fields changed (names only: the password's value is never recorded)."""
    if raw:
        return
    if created:
        audit_record(action="mail.smtp_params_created", target=instance)
        return
    changed = _changed_fields(instance)
    if changed:
        audit_record(
            action="mail.smtp_params_changed", target=instance, details={"fields": changed}
        )


def on_smtp_params_deleted(sender, instance, **kwargs):
    audit_record(action="mail.smtp_params_deleted", target=instance)


# --- Schedules and pipelines (the jobs app, when installed) ----------------------------------

JOBS_MODELS = {"Schedule": "schedule", "Pipeline": "pipeline"}


def _is_bookkeeping(field: str) -> bool:
    return field.startswith(("last_", "next_")) or field in {
        "updated_at",
        "run_count",
        "runs",
        "failures",
        "failure_count",
        "q_schedule",
        "q_schedule_id",
    }


def _jobs_saved(noun: str):
    def handler(sender, instance, created, raw=False, update_fields=None, **kwargs):
        """Created, or changed by a full save or one naming a setting (the scheduler's
        own saves of last/next run times are not changes)."""
        if raw:
            return
        if update_fields is not None and all(_is_bookkeeping(f) for f in update_fields):
            return
        audit_record(
            action=f"{noun}.created" if created else f"{noun}.changed",
            target=instance,
            details={"fields": None if created else _fields_changed(update_fields)},
        )

    return handler


def _jobs_deleted(noun: str):
    def handler(sender, instance, **kwargs):
        audit_record(action=f"{noun}.deleted", target=instance)

    return handler


def connect() -> None:
    """Connect every handler (AuditConfig.ready). Models of apps that are not installed
    (jobs, vault) are skipped."""
    user_model = get_user_model()
    _connect(user_logged_in, on_logged_in, None, "login")
    _connect(user_logged_out, on_logged_out, None, "logout")
    _connect(user_login_failed, on_login_failed, None, "login_failed")

    _connect(pre_save, on_user_pre_save, user_model, "user.pre_save")
    _connect(post_save, on_user_saved, user_model, "user.saved")
    _connect(post_delete, on_user_deleted, user_model, "user.deleted")
    _connect(post_save, on_group_saved, Group, "group.saved")
    _connect(post_delete, on_group_deleted, Group, "group.deleted")
    _connect(
        m2m_changed,
        _m2m_handler(forward_action="user.groups_changed", reverse_action="group.members_changed"),
        user_model.groups.through,
        "user.groups",
    )
    _connect(
        m2m_changed,
        _m2m_handler(
            forward_action="user.permissions_changed", reverse_action="user.permissions_changed"
        ),
        user_model.user_permissions.through,
        "user.permissions",
    )
    _connect(
        m2m_changed,
        _m2m_handler(
            forward_action="group.permissions_changed", reverse_action="group.permissions_changed"
        ),
        Group.permissions.through,
        "group.permissions",
    )

    if invitation := _model("accounts", "Invitation"):
        _connect(post_save, on_invitation_saved, invitation, "invitation.saved")
    if api_key := _model("accounts", "UserAPIKey"):
        _connect(post_save, on_api_key_saved, api_key, "api_key.saved")
        _connect(post_delete, on_api_key_deleted, api_key, "api_key.deleted")

    if version := _model("scripts", "ScriptVersion"):
        _connect(post_save, on_version_saved, version, "script_version.saved")
    if script := _model("scripts", "Script"):
        _connect(post_save, on_script_saved, script, "script.saved")
        _connect(post_delete, on_script_deleted, script, "script.deleted")
    if folder := _model("scripts", "Folder"):
        _connect(post_save, on_folder_saved, folder, "folder.saved")
        _connect(post_delete, on_folder_deleted, folder, "folder.deleted")
        # Every many-to-many field of Folder towards Group is a permission.
        for field in folder._meta.many_to_many:
            if field.related_model is Group:
                _connect(
                    m2m_changed,
                    _folder_groups_handler(field.name),
                    field.remote_field.through,
                    f"folder.{field.name}",
                )

    if execution := _model("executions", "Execution"):
        _connect(post_save, on_execution_saved, execution, "execution.saved")

    if secret := _model("vault", "Secret"):
        _connect(post_save, on_secret_saved, secret, "secret.saved")
        _connect(post_delete, on_secret_deleted, secret, "secret.deleted")

    if service := _model("mailqueue", "MailService"):
        _connect(pre_save, on_mail_config_pre_save, service, "mail_service.pre_save")
        _connect(post_save, on_mail_service_saved, service, "mail_service.saved")
    if params := _model("mailqueue", "EmailParameter"):
        _connect(pre_save, on_mail_config_pre_save, params, "smtp_params.pre_save")
        _connect(post_save, on_smtp_params_saved, params, "smtp_params.saved")
        _connect(post_delete, on_smtp_params_deleted, params, "smtp_params.deleted")

    for name, noun in JOBS_MODELS.items():
        if model := _model("jobs", name):
            _connect(post_save, _jobs_saved(noun), model, f"jobs.{noun}.saved")
            _connect(post_delete, _jobs_deleted(noun), model, f"jobs.{noun}.deleted")

"""Admin for users and invitations; every action calls a service."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from accounts import api_keys, services
from accounts.models import Invitation, User, UserAPIKey
from config.errors import ApplicationError


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "last_login", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    ordering = ["username"]
    actions = ["activate", "deactivate", "reset_password"]
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    def save_model(self, request, obj, form, change):
        """A change of "active" goes through user_set_active (nobody deactivates
        themself); the other fields are saved as the form says."""
        if not (change and "is_active" in form.changed_data):
            return super().save_model(request, obj, form, change)
        active = obj.is_active
        obj.is_active = not active  # left as it was: the service decides
        super().save_model(request, obj, form, change)
        services.user_set_active(
            users=User.objects.filter(pk=obj.pk), active=active, acting_user=request.user
        )
        obj.refresh_from_db(fields=["is_active"])
        if obj.is_active != active:
            self.message_user(request, "You cannot deactivate yourself.", messages.ERROR)

    @admin.action(description="Activate selected users")
    def activate(self, request, queryset):
        count = services.user_set_active(users=queryset, active=True)
        self.message_user(request, f"{count} user(s) activated.", messages.SUCCESS)

    @admin.action(description="Deactivate selected users")
    def deactivate(self, request, queryset):
        count = services.user_set_active(users=queryset, active=False, acting_user=request.user)
        self.message_user(request, f"{count} user(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Reset password (the user gets a link by e-mail)")
    def reset_password(self, request, queryset):
        for user in queryset:
            services.user_password_reset(user=user)
        self.message_user(
            request, f"{queryset.count()} password(s) reset; the users were e-mailed a link."
        )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "status",
        "is_staff",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
    ]
    list_select_related = ["invited_by"]
    search_fields = ["email"]
    fields = ["email", "is_staff"]
    actions = ["resend", "revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ["email", "is_staff"] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            created = services.invitation_create(
                email=form.cleaned_data["email"],
                is_staff=form.cleaned_data.get("is_staff", False),
                invited_by=request.user,
            )
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            raise
        for field in Invitation._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except ApplicationError:
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.path)

    def delete_model(self, request, obj):
        """Deleting revokes, as the API does (the record stays)."""
        self._revoke(request, obj)

    def delete_queryset(self, request, queryset):
        for invitation in queryset:
            self._revoke(request, invitation)

    def _revoke(self, request, invitation) -> None:
        try:
            services.invitation_revoke(invitation=invitation)
        except ApplicationError as exc:
            self.message_user(request, f"{invitation.email}: {exc.message}", messages.WARNING)
        else:
            self.message_user(request, f"The invitation of {invitation.email} is revoked.")

    @admin.action(description="Resend invitation (new link, new expiry)")
    def resend(self, request, queryset):
        for invitation in queryset:
            try:
                services.invitation_resend(invitation=invitation)
            except ApplicationError as exc:
                self.message_user(request, f"{invitation.email}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"Invitation resent to {invitation.email}.")

    @admin.action(description="Revoke invitation")
    def revoke(self, request, queryset):
        for invitation in queryset:
            self._revoke(request, invitation)


@admin.register(UserAPIKey)
class UserAPIKeyAdmin(APIKeyModelAdmin):
    """Keys of every user; a new key is shown once in a message. Revoke, never delete
    (the history stays)."""

    list_display = [
        "prefix",
        "name",
        "user",
        "created",
        "expiry_date",
        "_has_expired",
        "revoked",
        "last_used_at",
    ]
    list_filter = ["revoked", "created"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    raw_id_fields = ["user"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        fields = (*super().get_readonly_fields(request, obj), "last_used_at")
        return (*fields, "user") if obj is not None else fields

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked=False):
            api_keys.api_key_revoke(api_key=api_key)
        self.message_user(request, "The selected API keys are revoked.", messages.SUCCESS)


# The library's own APIKey model is unused (keys belong to users: UserAPIKey).
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)

"""Secrets in the admin: the value is write-only (never shown after saving)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from config.errors import ApplicationError

from . import services
from .models import Secret


class SecretForm(forms.ModelForm):
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        help_text="Write-only: leave empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ["name", "owner", "description", "groups"]

    def clean(self):
        """The service's rules, shown on the form instead of failing on save."""
        data = super().clean()
        creating = self.instance.pk is None
        if creating and not data.get("value"):
            raise ValidationError({"value": "A new secret needs a value."})
        try:
            services.secret_validate(
                owner=data.get("owner") if creating else self.instance.owner,
                name=data.get("name") if creating else None,
                value=data.get("value") or None,
            )
        except ApplicationError as exc:
            field = next(iter(exc.details), None) if exc.details else None
            raise ValidationError({field: exc.message} if field in self.fields else exc.message)
        return data


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "owner", "description", "updated_at", "last_used_at"]
    list_filter = ["groups"]
    list_select_related = ["owner"]
    search_fields = ["name", "owner__username", "description"]
    filter_horizontal = ["groups"]
    readonly_fields = ["created_at", "updated_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields + (["name", "owner"] if obj else [])

    def save_model(self, request, obj, form, change):
        """Through the services: names, values and groups follow the API's rules."""
        data = form.cleaned_data
        groups = [g.name for g in data.get("groups", [])]
        try:
            if change:
                services.secret_update(
                    user=request.user,
                    secret=obj,
                    value=data.get("value") or None,
                    groups=groups,
                    description=data.get("description", ""),
                )
            else:
                saved = services.secret_create(
                    user=data["owner"],
                    name=data["name"],
                    value=data["value"],
                    groups=groups,
                    description=data.get("description", ""),
                )
                obj.pk = saved.pk
        except ApplicationError as exc:  # a race after clean(): say so, keep the page
            self.message_user(request, exc.message, messages.ERROR)

    def save_related(self, request, form, formsets, change):
        pass  # groups are set by the service

    def delete_model(self, request, obj):
        services.secret_delete(user=request.user, secret=obj)

    def delete_queryset(self, request, queryset):
        for secret in queryset:
            services.secret_delete(user=request.user, secret=secret)

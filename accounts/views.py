"""Pages of the accounts app: registration from an invitation, password reset."""

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse_lazy

from accounts import services
from config.errors import ApplicationError


class RegisterForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password (again)", widget=forms.PasswordInput)

    def clean(self):
        data = super().clean()
        if data.get("password1") != data.get("password2"):
            raise forms.ValidationError("The two passwords differ.")
        return data


def register(request, token: str | None = None):
    """GET shows the form for an invitation (or open registration); POST creates the
    account through ``user_register`` and shows what went wrong, field by field."""
    if token is None and not settings.OPEN_REGISTRATION:
        raise Http404("Registration is by invitation only.")
    invitation, problem = None, None
    if token is not None:
        try:
            invitation = services.invitation_get_usable(token=token)
        except ApplicationError as exc:
            problem = exc.message
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and not problem and form.is_valid():
        try:
            user = services.user_register(
                username=form.cleaned_data["username"],
                email=form.cleaned_data.get("email"),
                password=form.cleaned_data["password1"],
                invitation=token,
            )
        except ApplicationError as exc:
            for field, messages in exc.details.items():
                target = {"password": "password1"}.get(field, field)
                form.add_error(target if target in form.fields else None, messages)
            if not exc.details:
                form.add_error(None, exc.message)
        else:
            return render(request, "accounts/registered.html", {"user": user})
    return render(
        request,
        "accounts/register.html",
        {"form": form, "invitation": invitation, "problem": problem},
        status=400 if problem else 200,
    )


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("accounts:password_reset_complete")

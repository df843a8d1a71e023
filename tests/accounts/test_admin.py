import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import Invitation, User


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


def _action(client, model: str, action: str, ids):
    return client.post(
        reverse(f"admin:accounts_{model}_changelist"),
        {"action": action, "_selected_action": [str(i) for i in ids]},
        follow=True,
    )


@pytest.mark.django_db
def test_user_changelist_shows_last_login_and_joined(admin_client_, user):
    page = admin_client_.get(reverse("admin:accounts_user_changelist"))
    assert page.status_code == 200
    assert b"Last login" in page.content and b"Date joined" in page.content


@pytest.mark.django_db
def test_deactivate_and_activate_actions(admin_client_, user, other_user, superuser):
    _action(admin_client_, "user", "deactivate", [user.pk, other_user.pk, superuser.pk])
    assert set(User.objects.filter(is_active=False).values_list("username", flat=True)) == {
        "alice",
        "bob",
    }  # an admin cannot lock themself out
    _action(admin_client_, "user", "activate", [user.pk])
    user.refresh_from_db()
    assert user.is_active


@pytest.mark.django_db
def test_reset_password_action_mails_a_working_link(admin_client_, user, client, password):
    mail.outbox.clear()
    _action(admin_client_, "user", "reset_password", [user.pk])
    user.refresh_from_db()
    assert not user.has_usable_password()
    message = mail.outbox[-1]
    assert message.to == [user.email]
    link = next(line for line in message.body.splitlines() if "/accounts/reset/" in line)
    path = link.split("localhost:8000", 1)[1]
    admin_client_.logout()
    form = client.get(path, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-brand-new-pass-42", "new_password2": "a-brand-new-pass-42"},
    )
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-pass-42")


@pytest.mark.django_db
def test_invitation_admin_add_sends_invitation(admin_client_):
    mail.outbox.clear()
    response = admin_client_.post(
        reverse("admin:accounts_invitation_add"), {"email": "new@example.com"}, follow=True
    )
    assert response.status_code == 200
    invitation = Invitation.objects.get(email="new@example.com")
    assert invitation.sent_at and mail.outbox[-1].to == ["new@example.com"]


@pytest.mark.django_db
def test_invitation_admin_resend_and_revoke(admin_client_, staff_user):
    from accounts import services

    invitation = services.invitation_create(email="r@example.com", invited_by=staff_user)
    mail.outbox.clear()
    _action(admin_client_, "invitation", "resend", [invitation.pk])
    assert len(mail.outbox) == 1
    _action(admin_client_, "invitation", "revoke", [invitation.pk])
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    page = _action(admin_client_, "invitation", "resend", [invitation.pk])
    assert b"withdrawn" in page.content


@pytest.mark.django_db
def test_set_active_service_never_deactivates_the_acting_user(superuser, user):
    from accounts import services

    changed = services.user_set_active(
        users=User.objects.all(), active=False, acting_user=superuser
    )
    superuser.refresh_from_db()
    user.refresh_from_db()
    assert changed == 1 and superuser.is_active and not user.is_active


def _user_form(user, **changes) -> dict:
    data = {
        "username": user.username,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


@pytest.mark.django_db
def test_change_form_cannot_deactivate_oneself(admin_client_, superuser, user):
    """The change form goes through user_set_active: the self rule holds there too."""
    url = reverse("admin:accounts_user_change", args=[superuser.pk])
    page = admin_client_.post(url, _user_form(superuser, is_active="", email="r@example.com"))
    assert page.status_code == 302, page.content[:3000]
    superuser.refresh_from_db()
    assert superuser.is_active and superuser.email == "r@example.com"
    other = reverse("admin:accounts_user_change", args=[user.pk])
    assert admin_client_.post(other, _user_form(user, is_active="")).status_code == 302
    user.refresh_from_db()
    assert not user.is_active


@pytest.mark.django_db
def test_deleting_an_invitation_in_the_admin_revokes_it(admin_client_, superuser):
    from accounts import services

    invitation = services.invitation_create(email="new@example.com", invited_by=superuser)
    url = reverse("admin:accounts_invitation_delete", args=[invitation.pk])
    assert admin_client_.post(url, {"post": "yes"}).status_code == 302
    invitation.refresh_from_db()  # still there: revoked like DELETE /api/v1/invitations/{id}/
    assert invitation.status == "revoked"
    second = services.invitation_create(email="two@example.com", invited_by=superuser)
    admin_client_.post(
        reverse("admin:accounts_invitation_changelist"),
        {"action": "delete_selected", "_selected_action": [second.pk], "post": "yes"},
    )
    assert Invitation.objects.get(pk=second.pk).status == "revoked"

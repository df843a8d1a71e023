from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, User
from tests.helpers import assert_error

REGISTER_URL = "/api/v1/auth/register/"


def _token_from_mail(message) -> str:
    link = next(line for line in message.body.splitlines() if "/accounts/register/" in line)
    return link.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def invited(staff_user):
    """An invitation for carol@example.com and the token from its e-mail."""
    mail.outbox.clear()
    invitation = services.invitation_create(email="carol@example.com", invited_by=staff_user)
    return invitation, _token_from_mail(mail.outbox[-1])


@pytest.mark.django_db
def test_staff_invites_by_api_and_mail_has_html_and_text(staff_api):
    response = staff_api.post("/api/v1/invitations/", {"email": "dave@example.com"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    message = mail.outbox[-1]
    assert message.to == ["dave@example.com"]
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    token = _token_from_mail(message)
    assert token in html
    # only the hash is stored
    assert not Invitation.objects.filter(token_hash=token).exists()


@pytest.mark.django_db
def test_non_staff_cannot_invite(api):
    response = api.post("/api/v1/invitations/", {"email": "x@example.com"}, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")


@pytest.mark.django_db
def test_inviting_an_existing_account_is_409(staff_api, user):
    response = staff_api.post("/api/v1/invitations/", {"email": user.email.upper()}, format="json")
    assert_error(response, 409, "USER_EXISTS")


@pytest.mark.django_db
def test_invitation_happy_path_creates_account(anon_client, invited, password):
    invitation, token = invited
    response = anon_client.post(
        REGISTER_URL,
        {"username": "carol", "password": password, "invitation": token},
        format="json",
    )
    assert response.status_code == 201, response.content
    user = User.objects.get(username="carol")
    assert user.email == "carol@example.com"
    assert user.check_password(password)
    invitation.refresh_from_db()
    assert invitation.status == "accepted" and invitation.accepted_user == user


@pytest.mark.django_db
def test_used_invitation_is_refused(anon_client, invited, password):
    _, token = invited
    first = anon_client.post(
        REGISTER_URL, {"username": "carol", "password": password, "invitation": token}
    )
    assert first.status_code == 201
    again = anon_client.post(
        REGISTER_URL, {"username": "carol2", "password": password, "invitation": token}
    )
    assert_error(again, 400, "INVITATION_USED")
    assert not User.objects.filter(username="carol2").exists()


@pytest.mark.django_db
def test_expired_invitation_is_refused(anon_client, invited, password):
    invitation, token = invited
    Invitation.objects.filter(pk=invitation.pk).update(
        created_at=timezone.now() - timedelta(days=8), expires_at=timezone.now() - timedelta(days=1)
    )
    response = anon_client.post(
        REGISTER_URL, {"username": "carol", "password": password, "invitation": token}
    )
    error = assert_error(response, 400, "INVITATION_EXPIRED")
    assert "expired" in error["message"]
    assert not User.objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_revoked_invitation_is_refused(anon_client, staff_api, invited, password):
    invitation, token = invited
    assert staff_api.delete(f"/api/v1/invitations/{invitation.pk}/").status_code == 204
    response = anon_client.post(
        REGISTER_URL, {"username": "carol", "password": password, "invitation": token}
    )
    assert_error(response, 400, "INVITATION_REVOKED")


@pytest.mark.django_db
def test_unknown_invitation_token_is_refused(anon_client, password):
    response = anon_client.post(
        REGISTER_URL, {"username": "eve", "password": password, "invitation": "made-up"}
    )
    assert_error(response, 400, "INVITATION_INVALID")


@pytest.mark.django_db
def test_register_refused_without_invitation_when_open_registration_off(anon_client, password):
    response = anon_client.post(
        REGISTER_URL, {"username": "eve", "password": password, "email": "eve@example.com"}
    )
    assert_error(response, 403, "INVITATION_REQUIRED")
    assert not User.objects.filter(username="eve").exists()


@pytest.mark.django_db
def test_open_registration_allows_register_without_invitation(anon_client, password, settings):
    settings.OPEN_REGISTRATION = True
    response = anon_client.post(
        REGISTER_URL, {"username": "eve", "password": password, "email": "eve@example.com"}
    )
    assert response.status_code == 201
    assert User.objects.filter(username="eve", is_staff=False).exists()


@pytest.mark.django_db
def test_weak_password_is_refused_and_invitation_stays_usable(anon_client, invited, password):
    invitation, token = invited
    response = anon_client.post(
        REGISTER_URL, {"username": "carol", "password": "123", "invitation": token}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "password" in error["details"]
    invitation.refresh_from_db()
    assert invitation.status == "pending"


@pytest.mark.django_db
def test_new_invitation_revokes_the_earlier_one(staff_user):
    first = services.invitation_create(email="z@example.com", invited_by=staff_user)
    services.invitation_create(email="z@example.com", invited_by=staff_user)
    first.refresh_from_db()
    assert first.status == "revoked"


@pytest.mark.django_db
def test_resend_issues_a_new_link_and_kills_the_old_one(invited, anon_client, password):
    invitation, old_token = invited
    services.invitation_resend(invitation=invitation)
    new_token = _token_from_mail(mail.outbox[-1])
    assert new_token != old_token
    assert_error(
        anon_client.post(
            REGISTER_URL, {"username": "c", "password": password, "invitation": old_token}
        ),
        400,
        "INVITATION_INVALID",
    )
    ok = anon_client.post(
        REGISTER_URL, {"username": "carol", "password": password, "invitation": new_token}
    )
    assert ok.status_code == 201


@pytest.mark.django_db
def test_registration_page_creates_account(client, invited, password):
    _, token = invited
    page = client.get(f"/accounts/register/{token}/")
    assert page.status_code == 200 and b"carol@example.com" in page.content
    response = client.post(
        f"/accounts/register/{token}/",
        {"username": "carol", "password1": password, "password2": password},
    )
    assert response.status_code == 200
    assert b"Welcome, carol" in response.content
    assert User.objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_registration_page_explains_an_expired_link(client, invited):
    invitation, token = invited
    Invitation.objects.filter(pk=invitation.pk).update(
        created_at=timezone.now() - timedelta(days=9), expires_at=timezone.now() - timedelta(days=2)
    )
    page = client.get(f"/accounts/register/{token}/")
    assert page.status_code == 400
    assert b"expired" in page.content


@pytest.mark.django_db
def test_invitation_list_for_staff(staff_api, invited, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        body = staff_api.get("/api/v1/invitations/").json()
    assert body["count"] == 1
    assert body["results"][0]["invited_by"] == "staff"

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User


@pytest.mark.django_db
def test_create_user_from_prompt(monkeypatch, password):
    answers = iter([password, password])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    out = io.StringIO()
    call_command("create_user", "--username", "zoe", "--email", "zoe@example.com", stdout=out)
    user = User.objects.get(username="zoe")
    assert user.check_password(password) and not user.is_staff
    assert "Created user zoe" in out.getvalue()


@pytest.mark.django_db
def test_create_user_prompt_mismatch_is_refused(monkeypatch):
    answers = iter(["one-password-1", "another-password-2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="differ"):
        call_command("create_user", "--username", "zoe", "--email", "zoe@example.com")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_create_staff_user_from_stdin(monkeypatch, password):
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    call_command(
        "create_user",
        "--username",
        "sam",
        "--email",
        "sam@example.com",
        "--staff",
        "--password-stdin",
        stdout=io.StringIO(),
    )
    user = User.objects.get(username="sam")
    assert user.is_staff and not user.is_superuser and user.check_password(password)


@pytest.mark.django_db
def test_create_superuser_flag(monkeypatch, password):
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    call_command(
        "create_user",
        "--username",
        "su",
        "--email",
        "su@example.com",
        "--superuser",
        "--password-stdin",
        stdout=io.StringIO(),
    )
    assert User.objects.get(username="su").is_superuser


@pytest.mark.django_db
@pytest.mark.parametrize(
    "username,email,field",
    [("alice", "new@example.com", "username"), ("newname", "ALICE@EXAMPLE.COM", "email")],
)
def test_create_user_duplicate_is_a_clear_error(
    monkeypatch, make_user, password, username, email, field
):
    make_user(username="alice", email="alice@example.com")
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    with pytest.raises(CommandError, match=f"exists.*{field}"):
        call_command("create_user", "--username", username, "--email", email, "--password-stdin")
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_create_user_weak_password_is_refused(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    with pytest.raises(CommandError, match="password"):
        call_command(
            "create_user", "--username", "w", "--email", "w@example.com", "--password-stdin"
        )


@pytest.mark.django_db
def test_ensure_admin_generates_password_once(monkeypatch, settings):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    settings.ADMIN_USERNAME = "boss"
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    generated = out.getvalue().split("password: ")[1].split()[0]
    assert User.objects.get(username="boss").check_password(generated)
    again = io.StringIO()
    call_command("ensure_admin", stdout=again)
    assert "password" not in again.getvalue() and User.objects.count() == 1


@pytest.mark.django_db
def test_ensure_admin_uses_admin_password(monkeypatch, settings):
    monkeypatch.setenv("ADMIN_PASSWORD", "given-secret-123")
    settings.ADMIN_USERNAME = "boss"
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "given-secret-123" not in out.getvalue()
    user = User.objects.get(username="boss")
    assert user.is_superuser and user.check_password("given-secret-123")

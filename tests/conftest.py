"""Fixtures every app's tests share: users, API clients, and the service markers.

``@pytest.mark.postgres`` / ``@pytest.mark.redis`` tests are skipped (with the reason
shown) when the suite runs on SQLite / without REDIS_URL. With
SCRIPTORIUM_REQUIRE_SERVICES=1 (CI's second run) they fail instead of skipping.
"""

import os
import shutil
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from model_bakery import baker
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

REQUIRE_SERVICES = os.environ.get("SCRIPTORIUM_REQUIRE_SERVICES") == "1"
PASSWORD = "correct-horse-battery-staple"


def _missing(reason: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}, but SCRIPTORIUM_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _missing("needs PostgreSQL (set DATABASE_URL=postgres://...)")
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        _missing("needs Redis (set REDIS_URL=redis://...)")
    if item.get_closest_marker("e2e") and not shutil.which("chromium"):
        _missing("needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="session", autouse=True)
def _stop_warm_templates():
    """The warm templates a test process started end with it (a server's outlive its
    workers; a test session's must not)."""
    yield
    from executions.runner import templates

    templates.stop_started_here()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters and other cached state never leak between tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def password():
    return PASSWORD


@pytest.fixture
def make_user(db):
    """``make_user(**fields)`` -> a saved user whose password is PASSWORD."""

    def make(**fields):
        fields.setdefault("email", f"{fields.get('username') or uuid.uuid4().hex[:8]}@example.com")
        fields.setdefault("is_active", True)
        user = baker.make(settings.AUTH_USER_MODEL, **fields)
        user.set_password(PASSWORD)
        user.save()
        return user

    return make


@pytest.fixture
def user(make_user):
    return make_user(username="alice")


@pytest.fixture
def other_user(make_user):
    return make_user(username="bob")


@pytest.fixture
def staff_user(make_user):
    return make_user(username="staff", is_staff=True)


@pytest.fixture
def superuser(make_user):
    return make_user(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def client_for():
    """``client_for(user)`` -> an APIClient that sends the user's JWT access token."""

    def make(user):
        client = APIClient()
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def api(client_for, user):
    """An API client signed in as ``user``."""
    return client_for(user)


@pytest.fixture
def staff_api(client_for, staff_user):
    """An API client signed in as ``staff_user``."""
    return client_for(staff_user)

"""The login and register throttles key on the client address as the configured
proxies see it (NUM_PROXIES): a client cannot pick a new address per request with
X-Forwarded-For."""

import pytest
from django.conf import settings as django_settings

from tests.helpers import assert_error

TOKEN_URL = "/api/v1/auth/token/"
REGISTER_URL = "/api/v1/auth/register/"
LIMIT = 5  # test settings: 5 per minute for both scopes


def _login(client, **headers):
    return client.post(
        TOKEN_URL, {"username": "alice", "password": "wrong"}, format="json", **headers
    )


def _register(client, **headers):
    return client.post(
        REGISTER_URL,
        {"username": "x", "password": "long-enough-password"},
        format="json",
        **headers,
    )


@pytest.fixture
def num_proxies(settings):
    def set_to(n: int):
        settings.REST_FRAMEWORK = {**django_settings.REST_FRAMEWORK, "NUM_PROXIES": n}

    return set_to


def test_num_proxies_defaults_to_zero():
    assert django_settings.NUM_PROXIES == 0
    assert django_settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("call", [_login, _register], ids=["login", "register"])
def test_a_changing_forwarded_for_does_not_bypass_the_throttle(anon_client, user, call):
    for i in range(LIMIT):
        assert call(anon_client, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code != 429
    response = call(anon_client, HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert_error(response, 429, "THROTTLED")


@pytest.mark.django_db
@pytest.mark.parametrize("call", [_login, _register], ids=["login", "register"])
def test_behind_one_proxy_the_client_is_the_last_hop(anon_client, user, num_proxies, call):
    num_proxies(1)
    # The part a client writes itself changes; the hop our proxy appended does not.
    for i in range(LIMIT):
        response = call(anon_client, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}, 203.0.113.7")
        assert response.status_code != 429
    assert_error(call(anon_client, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7"), 429, "THROTTLED")
    # Another client behind the same proxy (same REMOTE_ADDR) has its own budget.
    assert call(anon_client, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code != 429

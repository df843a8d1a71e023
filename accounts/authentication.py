"""DRF authentication by API key: ``Authorization: Api-Key <key>`` acts as the key's
user. Listed in DEFAULT_AUTHENTICATION_CLASSES after JWT (a Bearer header never
reaches it). Models are imported lazily: DRF imports this module early."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

KEYWORD = "Api-Key"


class APIKeyAuthentication(BaseAuthentication):
    """``(user, api_key)`` for a valid key, None without an Api-Key header, 401 for
    a bad one (unknown, revoked, expired, inactive user). The key is never logged."""

    keyword = KEYWORD

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(
                f"Send one key: 'Authorization: {self.keyword} <key>'.", code="api_key_invalid"
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The API key is not valid.", code="api_key_invalid")
        from accounts.api_keys import api_key_authenticate

        api_key = api_key_authenticate(key=key, request=request)
        return api_key.user, api_key

    def authenticate_header(self, request):
        return self.keyword


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in the OpenAPI schema."""

    target_class = "accounts.authentication.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"'{KEYWORD} <key>', a key made at POST /api/v1/auth/api-keys/.",
        }

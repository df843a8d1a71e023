"""GET|POST /api/v1/auth/api-keys/, DELETE /api/v1/auth/api-keys/{id}/ (thin views)."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from accounts import api_keys
from accounts.models import UserAPIKey


class APIKeySerializer(serializers.ModelSerializer):
    expires_at = serializers.DateTimeField(source="expiry_date", read_only=True, allow_null=True)
    last_used_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When it was first used on its last day of use."
    )

    class Meta:
        model = UserAPIKey
        fields = ["id", "name", "prefix", "created", "expires_at", "revoked", "last_used_at"]
        read_only_fields = fields


class APIKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class APIKeyCreatedSerializer(APIKeySerializer):
    key = serializers.CharField(
        read_only=True,
        help_text="Send as 'Authorization: Api-Key <key>'. Shown only in this answer.",
    )

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class APIKeyViewSet(
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The signed-in user's own API keys; DELETE revokes (the record stays)."""

    serializer_class = APIKeySerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return api_keys.api_key_list(user=self.request.user)

    @extend_schema(request=APIKeyCreateSerializer, responses={201: APIKeyCreatedSerializer})
    def create(self, request):
        """Make a key; the answer holds the key, which is never shown again."""
        serializer = APIKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, key = api_keys.api_key_create(user=request.user, **serializer.validated_data)
        api_key.key = key
        return Response(APIKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        api_keys.api_key_revoke(api_key=instance)

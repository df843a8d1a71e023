"""Thin API views for secrets: list, create, change (value write-only), delete."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from config.errors import ApplicationError, NotFoundError

from . import selectors, services
from .models import Secret


class SecretSerializer(serializers.ModelSerializer):
    """A secret as anyone sees it: never its value."""

    owner = serializers.CharField(source="owner.username", read_only=True)
    groups = serializers.SerializerMethodField()

    class Meta:
        model = Secret
        fields = ["id", "name", "description", "owner", "groups", "created_at", "updated_at"]
        read_only_fields = fields

    def get_groups(self, secret) -> list[str]:
        return sorted(g.name for g in secret.groups.all())


class SecretWriteSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, help_text="An environment variable name")
    value = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False, help_text="Write-only"
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)
    groups = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Group names it is shared with"
    )


def _data(request) -> dict:
    serializer = SecretWriteSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class SecretViewSet(viewsets.GenericViewSet):
    """Secrets for runs. A script declares the ones it needs (``# Secrets: NAME``); a
    run gets those its user may use as environment variables, masked in its log."""

    serializer_class = SecretSerializer
    lookup_value_regex = r"\d+"
    error_codes = {
        "create": {409: ["SECRET_EXISTS"]},
        "partial_update": {403: ["PERMISSION_DENIED"]},
        "destroy": {403: ["PERMISSION_DENIED"]},
    }

    def get_queryset(self):
        return selectors.secret_list(user=self.request.user)

    def get_object(self):
        secret = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if secret is None:
            raise NotFoundError("No such secret.")
        return secret

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=SecretWriteSerializer, responses={201: SecretSerializer})
    def create(self, request):
        data = _data(request)
        missing = [f for f in ("name", "value") if f not in data]
        if missing:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "name and value are required.",
                {f: ["This field is required."] for f in missing},
            )
        secret = services.secret_create(
            user=request.user,
            name=data["name"],
            value=data["value"],
            groups=data.get("groups"),
            description=data.get("description", ""),
        )
        return Response(self.get_serializer(secret).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SecretWriteSerializer, responses=SecretSerializer)
    def partial_update(self, request, pk=None):
        data = _data(request)
        if "name" in data:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "A secret cannot be renamed; create a new one.",
                {"name": ["Read-only after creation."]},
            )
        secret = services.secret_update(
            user=request.user,
            secret=self.get_object(),
            value=data.get("value"),
            groups=data.get("groups"),
            description=data.get("description"),
        )
        return Response(self.get_serializer(secret).data)

    def destroy(self, request, pk=None):
        services.secret_delete(user=request.user, secret=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

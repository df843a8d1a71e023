"""Thin API views of the accounts app: JWT, me, register, invitations."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView

from accounts import services
from accounts.models import Invitation, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "is_staff",
            "is_superuser",
            "date_joined",
            "last_login",
        ]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, max_length=256, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True)
    invitation = serializers.CharField(required=False, allow_blank=True, max_length=128)


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, default=None)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "is_staff",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "sent_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "sent_at",
            "accepted_at",
            "revoked_at",
        ]


class ThrottledTokenObtainPairView(TokenObtainPairView):
    """POST {username, password} (JSON or form) -> {access, refresh}; throttled."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class MeView(APIView):
    @extend_schema(responses=UserSerializer)
    def get(self, request):
        """The signed-in user."""
        return Response(UserSerializer(request.user).data)


class RegisterView(APIView):
    error_codes = {
        "post": {
            400: ["INVITATION_INVALID", "INVITATION_EXPIRED", "INVITATION_USED"],
            403: ["INVITATION_REQUIRED"],
            409: ["USER_EXISTS"],
        }
    }
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(request=RegisterSerializer, responses={201: UserSerializer})
    def post(self, request):
        """Create an account from an invitation (or openly, when switched on)."""
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Staff invite people by e-mail; DELETE revokes (the record stays)."""

    error_codes = {"create": {409: ["USER_EXISTS"]}}
    permission_classes = [IsAdminUser]
    serializer_class = InvitationSerializer
    lookup_value_regex = r"\d+"
    queryset = Invitation.objects.select_related("invited_by")

    def perform_create(self, serializer):
        serializer.instance = services.invitation_create(
            email=serializer.validated_data["email"],
            is_staff=serializer.validated_data.get("is_staff", False),
            invited_by=self.request.user,
        )

    def perform_destroy(self, instance):
        services.invitation_revoke(invitation=instance)

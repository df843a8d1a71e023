"""API routes of the accounts app (mounted under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter
from rest_framework_simplejwt.views import TokenRefreshView, TokenVerifyView

from accounts import api, api_keys_api

router = SimpleRouter()
router.register("invitations", api.InvitationViewSet, basename="invitation")
router.register("auth/api-keys", api_keys_api.APIKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/token/", api.ThrottledTokenObtainPairView.as_view(), name="token_obtain"),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("auth/token/verify/", TokenVerifyView.as_view(), name="token_verify"),
    path("auth/me/", api.MeView.as_view(), name="me"),
    path("auth/register/", api.RegisterView.as_view(), name="register"),
    *router.urls,
]

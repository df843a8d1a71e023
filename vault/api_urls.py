"""API routes of the vault app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from vault.api import SecretViewSet

router = SimpleRouter()
router.register("secrets", SecretViewSet, basename="secret")
urlpatterns = router.urls

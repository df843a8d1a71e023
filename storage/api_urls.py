"""API routes of the storage app (mounted under /api/v1/)."""

urlpatterns = []

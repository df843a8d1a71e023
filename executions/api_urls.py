"""API routes of the executions app (mounted under /api/v1/)."""

urlpatterns = []

"""API routes of the scripts app (mounted under /api/v1/)."""

urlpatterns = []

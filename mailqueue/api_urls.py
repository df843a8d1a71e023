"""API routes of the mailqueue app (mounted under /api/v1/mail/)."""

urlpatterns = []

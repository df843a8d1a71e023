"""API routes of the audit app (mounted under /api/v1/)."""

from django.urls import path

from audit import api

urlpatterns = [
    path("audit/", api.AuditEventListView.as_view(), name="audit-list"),
]

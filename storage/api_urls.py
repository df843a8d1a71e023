"""API routes of the storage app (mounted under /api/v1/). Keys contain slashes."""

from django.urls import path

from storage import api

urlpatterns = [
    path("files/", api.FileListView.as_view(), name="file-list"),
    path("files/upload", api.FileUploadView.as_view(), name="file-upload"),
    # The same view with a trailing slash, for clients that add one (not in the schema).
    path("files/upload/", api.FileUploadView.as_view(schema=None)),
    path("files/<path:key>/info", api.FileInfoView.as_view(), name="file-info"),
    path("files/<path:key>", api.FileView.as_view(), name="file"),
]

"""API routes of the scripts app (mounted under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from scripts import api

router = SimpleRouter()
router.register("folders", api.FolderViewSet, basename="folder")
router.register("scripts", api.ScriptViewSet, basename="script")

urlpatterns = [
    path("tree/", api.TreeView.as_view(), name="library_tree"),
    *router.urls,
]

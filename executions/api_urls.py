"""API routes of the executions app (mounted under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from executions import api

router = SimpleRouter()
router.register("executions", api.ExecutionViewSet, basename="execution")

urlpatterns = [
    path(
        "executions/<int:pk>/files/<path:name>",
        api.ExecutionFileView.as_view(),
        name="execution-file",
    ),
    path("run/<path:logical_path>", api.SyncRunView.as_view(), name="sync-run"),
    *router.urls,
]

"""API routes of the jobs app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from jobs import api

router = SimpleRouter()
router.register("schedules", api.ScheduleViewSet, basename="schedule")
router.register("pipelines", api.PipelineViewSet, basename="pipeline")
router.register("pipeline-runs", api.PipelineRunViewSet, basename="pipeline-run")

urlpatterns = router.urls

"""API routes of the mailqueue app (mounted under /api/v1/mail/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from mailqueue import api

router = SimpleRouter()
router.register("queue", api.QueueViewSet, basename="mail-queue")
router.register("smtp-params", api.SmtpParamViewSet, basename="mail-smtp-params")

urlpatterns = [
    path("config/", api.ConfigView.as_view(), name="mail-config"),
    path("status/", api.StatusView.as_view(), name="mail-status"),
    path("service/", api.ServiceView.as_view(), name="mail-service"),
    path("process/", api.ProcessView.as_view(), name="mail-process"),
    path("test/", api.TestMailView.as_view(), name="mail-test"),
    path("test-connection/", api.TestConnectionView.as_view(), name="mail-test-connection"),
    path("dashboard/", api.DashboardView.as_view(), name="mail-dashboard"),
    *router.urls,
]

"""URLs: the admin, the API under /api/v1/ (one include per app), docs, health."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.api import api_not_found
from config.health import health

api_v1 = [
    path("", include("accounts.api_urls")),
    path("", include("scripts.api_urls")),
    path("", include("executions.api_urls")),
    path("", include("storage.api_urls")),
    path("mail/", include("mailqueue.api_urls")),
    path("", include("vault.api_urls")),
    path("", include("audit.api_urls")),
    path("", include("jobs.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc/",
        # Served from drf-spectacular-sidecar; the portal's template loads no web fonts.
        SpectacularRedocView.as_view(url_name="schema", template_name="portal/redoc.html"),
        name="redoc",
    ),
    path("health/", health, name="health"),
    path("", include("portal.urls")),  # the portal: pages for people (login, scripts, runs)
    re_path(r"^api/", api_not_found),  # last: unknown API paths answer in the error shape
]

handler400 = "config.api.handler400"
handler404 = "config.api.handler404"
handler500 = "config.api.handler500"

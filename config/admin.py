"""The admin site: Django's, with panels from apps on the index page."""

from django.contrib import admin

from config.registry import admin_panels


class ScriptoriumAdminSite(admin.AdminSite):
    site_header = "Scriptorium"
    site_title = "Scriptorium admin"
    index_title = "Scripts, runs and mail"

    def index(self, request, extra_context=None):
        """The app list, with each registered panel (storage use, sandbox, mail...)."""
        panels = []
        for name, build in admin_panels.items():
            try:
                panel = build(request)
            except Exception as exc:  # a broken panel must not break the admin
                panel = {"title": name, "rows": [("error", exc.__class__.__name__)]}
            if panel:
                panels.append(panel)
        extra_context = {**(extra_context or {}), "scriptorium_panels": panels}
        return super().index(request, extra_context)

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class ScriptoriumAdminConfig(AdminConfig):
    """The Django admin, with Scriptorium's site (panels on the index)."""

    default_site = "config.admin.ScriptoriumAdminSite"


class CoreConfig(AppConfig):
    """Project-wide pieces: health checks, worker_ping, error handling."""

    name = "config"
    verbose_name = "Scriptorium"

    def ready(self):
        from django.db.models.signals import post_migrate

        from config import health  # noqa: F401  (registers the core health checks)
        from config.registry import run_after_migrate

        post_migrate.connect(run_after_migrate, dispatch_uid="config.after_migrate")

from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    verbose_name = "Runs"

    def ready(self):
        from executions import (
            checks,  # noqa: F401  (timeout vs task queue system check)
            health,  # noqa: F401  (sandbox health check and admin panel)
            signals,  # noqa: F401  (reaper schedule)
        )

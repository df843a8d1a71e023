from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    verbose_name = "Runs"

    def ready(self):
        from executions import signals  # noqa: F401  (reaper schedule)

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs: schedules and pipelines"

    def ready(self):
        from jobs import signals  # noqa: F401  (pipelines advance, cleanup after e-mail)

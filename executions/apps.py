from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    verbose_name = "Runs"
    name = "executions"

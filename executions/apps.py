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
        from executions.examples import examples_guard
        from executions.selectors import script_run_count
        from scripts.hooks import register_run_counter, register_version_guard

        register_version_guard(examples_guard)  # new versions must pass their examples
        register_run_counter(script_run_count)  # the library shows and reports run counts

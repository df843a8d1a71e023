"""System checks of the executions app."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_queue_timeout_exceeds_longest_run(app_configs, **kwargs):
    """A run longer than django-q2's timeout is killed by the cluster, and one longer
    than its retry is handed to a second worker (FACTS.md)."""
    longest = getattr(settings, "RUN_TIMEOUT_MAX_SECONDS", 0)
    timeout = settings.Q_CLUSTER.get("timeout") or 0
    retry = settings.Q_CLUSTER.get("retry") or 0
    if timeout and longest + 60 > timeout or retry <= timeout:
        return [
            Warning(
                f"Q_TIMEOUT ({timeout} s, retry {retry} s) must exceed RUN_TIMEOUT_MAX_SECONDS "
                f"({longest} s) by a margin, and retry must exceed timeout.",
                hint="Raise Q_TIMEOUT or lower RUN_TIMEOUT_MAX_SECONDS.",
                id="executions.W001",
            )
        ]
    return []

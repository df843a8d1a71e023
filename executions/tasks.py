"""django-q2 entry points of the executions app (thin: ids in, services called)."""

from executions import services, worker


def run_execution(execution_id: int) -> str | None:
    """Run one queued execution (a duplicate delivery does nothing)."""
    execution = worker.execution_run(execution_id=execution_id)
    return execution.status if execution else None


def reap_lost_executions() -> int:
    """Mark runs whose worker stopped heartbeating as lost."""
    return services.executions_reap_lost()


def prune_old_executions() -> int:
    """Apply RUN_RETENTION_DAYS (0: keep every run)."""
    from django.conf import settings

    if settings.RUN_RETENTION_DAYS <= 0:
        return 0
    return services.executions_prune(older_than_days=settings.RUN_RETENTION_DAYS)

"""Keep the reaper schedule in place after migrations; a run's files go with it; the
signals runs send.

``execution_finished`` (``execution=``) is sent once a run reached a final status: by
the worker, by a cancel of a queued run and by the reaper. Receivers must be
idempotent (a duplicate is possible) and never break the sender: it is sent robustly
and a failing receiver is logged. ``report_queued`` (``execution=``, ``mail_ids=``,
``sent=``) is sent after a run's report was handed to EMAIL_BACKEND: ``mail_ids`` are
the mail queue rows it became (empty when the backend sent it directly).
"""

import contextvars
import logging

from django.db.models.signals import post_save, pre_delete
from django.dispatch import Signal, receiver

from config.registry import register_schedule
from executions.models import Execution

logger = logging.getLogger("scriptorium.executions")

execution_finished = Signal()
report_queued = Signal()


def _send_robust(signal: Signal, execution: Execution, **kwargs) -> None:
    for receiver_fn, response in signal.send_robust(
        sender=Execution, execution=execution, **kwargs
    ):
        if isinstance(response, Exception):
            logger.error(
                "signal receiver failed",
                exc_info=response,
                extra={"execution_id": execution.pk, "receiver": repr(receiver_fn)},
            )


def send_execution_finished(execution: Execution) -> None:
    """Tell the receivers (pipelines) that ``execution`` reached a final status."""
    _send_robust(execution_finished, execution)


def send_report_queued(execution: Execution, *, mail_ids: list[int], sent: int) -> None:
    """Tell the receivers (cleanup after e-mail) which queue rows the report became."""
    _send_robust(report_queued, execution, mail_ids=mail_ids, sent=sent)


_capturing: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "report_mail_ids", default=None
)


class captured_mail_rows:
    """``with captured_mail_rows() as ids:`` collects the pks of the mail queue rows
    (mailqueue.EmailDetail) created inside the block, in this thread only."""

    def __enter__(self) -> list[int]:
        self.ids: list[int] = []
        self.token = _capturing.set(self.ids)
        return self.ids

    def __exit__(self, *exc) -> None:
        _capturing.reset(self.token)


@receiver(post_save, sender="mailqueue.EmailDetail", dispatch_uid="executions_report_mail_rows")
def _remember_mail_row(sender, instance, created, raw=False, **kwargs):
    ids = _capturing.get()
    if created and not raw and ids is not None:
        ids.append(instance.pk)


REAPER_SCHEDULE = "executions: mark lost runs"
RETENTION_SCHEDULE = "executions: delete runs past RUN_RETENTION_DAYS"


register_schedule(
    "executions",
    name=REAPER_SCHEDULE,
    func="executions.tasks.reap_lost_executions",  # runs without heartbeat become lost
    every_minutes=1,
)
register_schedule(
    "executions",
    name=RETENTION_SCHEDULE,
    func="executions.tasks.prune_old_executions",  # a no-op while RUN_RETENTION_DAYS=0
    daily=True,
)


@receiver(pre_delete, sender=Execution, dispatch_uid="executions_files_go_with_the_run")
def delete_run_files(sender, instance, **kwargs):
    """However a run is deleted (admin, queryset, retention), its stored files go
    first (before the foreign key is set to NULL), through the storage service."""
    from storage.services import files_delete_for_execution

    files_delete_for_execution(execution_id=instance.pk)

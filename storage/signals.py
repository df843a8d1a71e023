"""Keep objects and rows together however rows are deleted (admin, querysets, runs)."""

from django.db.models.signals import post_delete, pre_delete

from storage import services
from storage.models import StoredFile


def _file_row_deleted(sender, instance, **kwargs):
    services.pending_deletion_record(key=instance.key)


def _execution_deleted(sender, instance, **kwargs):
    # Before the FK is set to NULL: the run's files go with it.
    services.files_delete_for_execution(execution_id=instance.pk)


def connect() -> None:
    """Called once from StorageConfig.ready()."""
    from executions.models import Execution

    post_delete.connect(_file_row_deleted, sender=StoredFile, dispatch_uid="storage_file_deleted")
    pre_delete.connect(
        _execution_deleted, sender=Execution, dispatch_uid="storage_execution_deleted"
    )

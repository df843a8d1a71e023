"""Keep objects and rows together however rows are deleted (admin, querysets, runs)."""

from django.db.models.signals import post_delete

from storage import services
from storage.models import StoredFile


def _file_row_deleted(sender, instance, **kwargs):
    services.pending_deletion_record(key=instance.key)


def connect() -> None:
    """Called once from StorageConfig.ready(). (A run's files go with the run: the
    executions app, above this one, calls files_delete_for_execution.)"""
    post_delete.connect(_file_row_deleted, sender=StoredFile, dispatch_uid="storage_file_deleted")

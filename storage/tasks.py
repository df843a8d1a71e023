"""django-q2 entry points of the storage app (thin: they call services)."""

from storage.cleanup import storage_cleanup


def storage_cleanup_task() -> dict:
    """The scheduled storage_cleanup (see storage.hooks); returns its counts."""
    return storage_cleanup().summary()

"""Writes the portal makes: starting a run from the run form (with its uploads)."""

from config.errors import ApplicationError
from executions import services as execution_services
from executions.models import Execution
from storage import services as storage_services

UPLOAD_PREFIX = "uploads"


def portal_run_start(
    *, user, script, inputs: dict, args: list[str] | None, uploads: list, email_me: bool
) -> Execution:
    """Store the uploaded files (owned by ``user``) and start the run through
    ``execution_start``, as the API does (``source="portal"``). ``email_me`` sends the
    report to the user's own address (VALIDATION_ERROR under email_to when they have
    none). When the run is refused, the files stored for it are deleted again."""
    if email_me and not user.email:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "Your account has no e-mail address.",
            {"email_to": ["Your account has no e-mail address; ask an administrator."]},
        )
    stored = []
    try:
        for upload in uploads:
            stored.append(
                storage_services.file_store(
                    fileobj=upload,
                    original_name=upload.name,
                    prefix=UPLOAD_PREFIX,
                    owner=user,
                    content_type=getattr(upload, "content_type", None),
                )
            )
        return execution_services.execution_start(
            user=user,
            script_ref=script.pk,
            inputs=inputs,
            args=args,
            input_files=[f.key for f in stored] or None,
            email_to=[user.email] if email_me else None,
            source="portal",
        )
    except BaseException:
        for stored_file in stored:
            storage_services.file_delete(stored_file=stored_file)
        raise

"""Structured (JSON) logs with a request id on every line logged during a request.

Long-running processes (the web server, the workers) log as configured (LOG_FORMAT,
LOG_LEVEL). Other management commands are for people: they log readable lines, and
only from COMMAND_LOG_LEVEL (WARNING) up, so their own output is not interleaved
with JSON records.
"""

import re
import sys
import uuid
from pathlib import Path

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_shared_processors = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

structlog.configure(
    processors=[
        *_shared_processors,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


# manage.py commands that serve or work for a long time: they keep LOG_FORMAT/LOG_LEVEL.
LONG_RUNNING_COMMANDS = frozenset(
    {"runserver", "qcluster", "run_worker", "runserver_plus", "gunicorn", "uvicorn"}
)


def running_command(argv: list[str] | None = None) -> str | None:
    """The management command this process runs (``manage.py NAME`` or ``django-admin
    NAME``), or None when it is not one (a WSGI/ASGI server, a test run)."""
    argv = sys.argv if argv is None else argv
    if len(argv) >= 2 and Path(argv[0]).name in ("manage.py", "django-admin"):
        return argv[1]
    return None


def build_logging(
    *, level: str, fmt: str, command: str | None = None, command_level: str = "WARNING"
) -> dict:
    """Return a LOGGING dict that renders every record (stdlib or structlog) as one
    JSON object per line (``fmt="json"``) or as readable console lines. For a
    management ``command`` that is not long-running, lines are readable and start at
    ``command_level`` whatever ``fmt`` and ``level`` say."""
    if command is not None and command not in LONG_RUNNING_COMMANDS:
        fmt = "console"
        level = command_level
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": _shared_processors,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.server": {"level": "WARNING"},
            "django.db.backends": {"level": "INFO"},
        },
    }


class RequestIdMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when it is safe, a new
    uuid otherwise), binds it to every log line of the request and echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response[REQUEST_ID_HEADER] = request_id
        return response


def get_logger(name: str):
    """A structlog logger whose lines carry the current request id, if any."""
    return structlog.get_logger(name)

"""The one error every service raises; ``config.api.exception_handler`` renders it."""

from typing import Any


class ApplicationError(Exception):
    """A rule was broken: ``code`` (UPPER_SNAKE) for programs, ``message`` for people,
    ``details`` (JSON-able) for the specifics, ``status`` the HTTP status to answer."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        status: int = 400,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status

    def __repr__(self) -> str:
        return f"ApplicationError({self.code!r}, {self.message!r}, status={self.status})"


class NotFoundError(ApplicationError):
    """Something the caller named does not exist, or is hidden from them (404)."""

    def __init__(self, message: str = "Not found.", details=None, *, code: str = "NOT_FOUND"):
        super().__init__(code, message, details, status=404)


class PermissionDeniedError(ApplicationError):
    """The caller may see the thing but not do this to it (403)."""

    def __init__(self, message: str = "You may not do this.", details=None):
        super().__init__("PERMISSION_DENIED", message, details, status=403)


class ConflictError(ApplicationError):
    """The request clashes with the current state (409)."""

    def __init__(self, code: str, message: str, details=None):
        super().__init__(code, message, details, status=409)

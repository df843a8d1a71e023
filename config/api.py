"""API conventions shared by every app: the one error shape, pagination, schema hooks.

Every error leaves the API as ``{"error": {"code", "message", "details"}}`` with the
right HTTP status, whether it came from a service (ApplicationError), from DRF
(validation, authentication, permissions, throttling, routing) or from a bug (500,
with no internals in the body; the traceback goes to the log with the request id).
"""

import logging

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from config.errors import ApplicationError
from config.parsers import RequestTooLarge

logger = logging.getLogger("scriptorium.api")

# DRF exception class -> our code. Checked in order; the first match wins.
_DRF_CODES = [
    (exceptions.ValidationError, "VALIDATION_ERROR"),
    (exceptions.ParseError, "PARSE_ERROR"),
    (exceptions.AuthenticationFailed, "AUTHENTICATION_FAILED"),
    (exceptions.NotAuthenticated, "NOT_AUTHENTICATED"),
    (exceptions.PermissionDenied, "PERMISSION_DENIED"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.Throttled, "THROTTLED"),
]

_GENERIC_MESSAGES = {
    "VALIDATION_ERROR": "The request is not valid.",
    "THROTTLED": "Too many requests; try again later.",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The one error shape."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _drf_error(exc: exceptions.APIException) -> tuple[str, str, dict]:
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
    if code is None:
        code = str(getattr(exc, "default_code", "error")).upper()
    if code == "AUTHENTICATION_FAILED" and hasattr(exc, "detail"):
        detail = exc.detail
        # simplejwt's InvalidToken carries a dict with a code and messages.
        if isinstance(detail, dict) and detail.get("code") == "token_not_valid":
            return "TOKEN_INVALID", "The token is invalid or expired.", {}
    details: dict = {}
    if isinstance(exc.detail, dict):
        details = exc.detail
        message = _GENERIC_MESSAGES.get(code, "The request is not valid.")
        if "detail" in details and len(details) == 1:
            message = str(details["detail"])
            details = {}
    elif isinstance(exc.detail, list):
        details = {"non_field_errors": exc.detail}
        message = str(exc.detail[0]) if exc.detail else _GENERIC_MESSAGES.get(code, "")
    else:
        message = str(exc.detail)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"wait_seconds": int(exc.wait + 0.999)}
    return code, message, details


def django_request_error(exc: Exception) -> tuple[int, str, str, dict] | None:
    """``(status, code, message, details)`` for the errors Django raises while it reads
    a request (its size and count limits, other suspicious or bad requests), or None
    for any other exception. Used inside DRF views and outside them (handler400)."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return (
            413,
            "REQUEST_TOO_LARGE",
            f"The form fields of a request are limited to {limit} bytes; "
            "send large data as a file.",
            {"limit_bytes": limit},
        )
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return (
            400,
            "TOO_MANY_FIELDS",
            f"A request may carry at most {limit} query or form fields.",
            {"limit": limit},
        )
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return (
            400,
            "TOO_MANY_FILES",
            f"A request may carry at most {limit} files.",
            {"limit": limit},
        )
    if isinstance(exc, SuspiciousOperation | BadRequest):
        return 400, "BAD_REQUEST", "The request could not be read.", {}
    return None


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: turn any exception into the one error shape."""
    headers = {}
    django_error = django_request_error(exc)
    if isinstance(exc, ApplicationError):
        code, message, details, status_code = exc.code, exc.message, exc.details, exc.status
        if isinstance(details.get("retry_after"), int):  # RATE_LIMITED (per-user run limits)
            headers["Retry-After"] = str(details["retry_after"])
    elif django_error is not None:
        status_code, code, message, details = django_error
    elif isinstance(exc, Http404):
        code, message, details, status_code = "NOT_FOUND", "Not found.", {}, 404
    elif isinstance(exc, DjangoPermissionDenied):
        code, message, details = "PERMISSION_DENIED", "You may not do this.", {}
        status_code = 403
    elif isinstance(exc, DjangoValidationError):
        code, message, status_code = "VALIDATION_ERROR", "The request is not valid.", 400
        details = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, exceptions.APIException):
        code, message, details = _drf_error(exc)
        status_code = exc.status_code
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait + 0.999))
    else:
        request = context.get("request")
        logger.exception(
            "Unhandled error in API view",
            extra={"path": getattr(request, "path", None)},
        )
        set_rollback()
        request_id = getattr(getattr(request, "_request", request), "request_id", None)
        return Response(
            error_body(
                "INTERNAL_ERROR",
                "An unexpected error occurred; it has been logged.",
                {"request_id": request_id} if request_id else {},
            ),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    set_rollback()
    return Response(error_body(code, message, details), status=status_code, headers=headers)


_DRF_CODES.append((RequestTooLarge, "REQUEST_TOO_LARGE"))


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """Any /api/ path nothing else matched, with any method: the error shape, also
    with DEBUG on (CSRF-exempt: there is nothing to protect, and the CSRF check would
    answer a POST/PATCH/DELETE with an HTML 403 page first)."""
    return JsonResponse(error_body("NOT_FOUND", "No such API endpoint."), status=404)


class ApiTrailingSlashMiddleware:
    """``POST /api/v1/executions`` works like ``.../executions/``: an /api/ path that
    does not resolve but does with a trailing slash is served as such, instead of
    Django's APPEND_SLASH redirect (which loses a POST body, or raises with DEBUG)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith("/api/") and not path.endswith("/"):
            from django.urls import Resolver404, resolve

            try:
                match = resolve(path)
            except Resolver404:
                match = None
            if match is None or match.func is api_not_found:
                try:
                    resolve(path + "/")
                except Resolver404:
                    pass
                else:
                    request.path_info = path + "/"
                    request.path = request.path + "/"
        return self.get_response(request)


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def handler404(request, exception=None):
    """404 for any URL: the error shape under /api/, Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse(error_body("NOT_FOUND", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler400(request, exception=None):
    """400 (and 413) outside DRF views: Django's request limits in the error shape
    under /api/, Django's page elsewhere."""
    if _wants_json(request):
        status_code, code, message, details = django_request_error(exception) or (
            400,
            "BAD_REQUEST",
            "The request could not be read.",
            {},
        )
        return JsonResponse(error_body(code, message, details), status=status_code)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: the error shape under /api/ (a session-authenticated unsafe
    request without its token), Django's page elsewhere."""
    if _wants_json(request):
        body = error_body("CSRF_FAILED", f"CSRF verification failed: {reason}")
        return JsonResponse(body, status=403)
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


def handler500(request):
    """500 outside DRF views: the error shape under /api/, Django's page elsewhere."""
    if _wants_json(request):
        body = error_body("INTERNAL_ERROR", "An unexpected error occurred; it has been logged.")
        return JsonResponse(body, status=500)
    from django.views.defaults import server_error

    return server_error(request)


class PassthroughRenderer(BaseRenderer):
    """Lets a client that asks for the bytes of a download or a log (``Accept:
    text/plain``, ``image/png``...) reach the view instead of a 406; the view answers
    with its own response, so this renders only errors, which JsonErrorsMixin turns
    into JSON."""

    media_type = "*/*"
    format = "raw"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


class JsonErrorsMixin:
    """For views that also answer in other media types (SSE, plain text): an error is
    always rendered as JSON and labelled application/json, whatever was negotiated."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M`` (at most 200) -> ``{count, next, previous, results}``."""

    page_size_query_param = "page_size"
    max_page_size = 200

"""The OpenAPI generator of the project (DRF's DEFAULT_SCHEMA_CLASS).

drf-spectacular documents what a view returns on success; this class adds what the
views really answer besides, in the one error shape, and groups operations by app:

- 400 on every operation (validation; too many query or form fields), 401 and 404 on
  every operation, 403 where the view authenticates, 413 and 415 where a request
  body is read, 429 where the view is throttled;
- statuses a view declares in its ``error_codes`` attribute, per action (viewsets) or
  method (plain views): ``error_codes = {"destroy": {409: ["FOLDER_NOT_EMPTY"]}}``;
  the codes are listed in the response's description.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

# First path segment under /api/v1/ -> tag. Order here is the order of the docs page.
TAGS = {
    "auth": "auth",
    "invitations": "invitations",
    "folders": "folders",
    "tree": "folders",
    "scripts": "scripts",
    "executions": "runs",
    "run": "runs",
    "files": "files",
    "mail": "mail",
    "secrets": "secrets",
    "audit": "audit",
    "schedules": "jobs",
    "pipelines": "jobs",
    "pipeline-runs": "jobs",
}
TAG_DESCRIPTIONS = {
    "auth": "JWT tokens, the signed-in user, registration.",
    "invitations": "Staff invite people by e-mail.",
    "folders": "The folder hierarchy of the script library.",
    "scripts": "Scripts, their versions, source and input schema.",
    "runs": "Start, follow (SSE), cancel and rerun runs; their logs and files.",
    "files": "The key-value file store (uploads, run outputs).",
    "mail": "The mail queue, its SMTP parameter sets and its service (staff only).",
    "secrets": "Named secrets runs get as environment variables (values write-only).",
    "audit": "The audit trail: who did what, when (staff only).",
    "jobs": "Schedules (cron or every N minutes) and pipelines of scripts, with their runs.",
}

GENERIC_ERRORS = {
    400: "Invalid input: VALIDATION_ERROR with field details, PARSE_ERROR, "
    "TOO_MANY_FIELDS, TOO_MANY_FILES.",
    401: "NOT_AUTHENTICATED, AUTHENTICATION_FAILED or TOKEN_INVALID.",
    403: "PERMISSION_DENIED (or CSRF_FAILED for a session without its token).",
    404: "NOT_FOUND (also a page past the end).",
    413: "REQUEST_TOO_LARGE (or the endpoint's own size limit).",
    415: "UNSUPPORTED_MEDIA_TYPE: a body in a media type the endpoint does not read.",
    429: "THROTTLED; Retry-After says when to try again.",
}
STATUS_NAMES = {
    400: "Invalid input",
    403: "Not allowed",
    409: "Conflict with the current state",
    413: "Too large",
    416: "Range not satisfiable",
    503: "Unavailable",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="UPPER_SNAKE, for programs")
    message = serializers.CharField(help_text="for people")
    details = serializers.DictField(help_text="field errors or other specifics")


class ErrorSerializer(serializers.Serializer):
    """The one error shape: ``{"error": {"code", "message", "details"}}``."""

    error = ErrorDetailSerializer()


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema with tags per app and the error responses."""

    def get_tags(self) -> list[str]:
        tokens = [t for t in self._tokenize_path() if t not in ("api", "v1")]
        return [TAGS.get(tokens[0], tokens[0])] if tokens else ["api"]

    def _get_response_bodies(self, direction="response"):
        # drf-spectacular's (private) hook for the responses of one operation; its
        # version is pinned in requirements/base.txt, and tests/config/test_schema.py
        # fails if the error responses go missing.
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status, description in self._error_statuses().items():
            key = str(status)
            if key in responses:
                continue
            responses[key] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=description),
                key,
                media_types=("application/json",),
            )
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> dict[int, str]:
        view = self.view
        statuses = {400: GENERIC_ERRORS[400], 401: GENERIC_ERRORS[401], 404: GENERIC_ERRORS[404]}
        if view.authentication_classes:
            statuses[403] = GENERIC_ERRORS[403]
        if self.method in BODY_METHODS:
            statuses[413] = GENERIC_ERRORS[413]
            statuses[415] = GENERIC_ERRORS[415]
        if view.throttle_classes:
            statuses[429] = GENERIC_ERRORS[429]
        handler = getattr(view, "action", None) or self.method.lower()
        for status, codes in (getattr(view, "error_codes", {}) or {}).get(handler, {}).items():
            if status in statuses:
                statuses[status] = f"{statuses[status]} Also {', '.join(codes)}."
            else:
                statuses[status] = f"{STATUS_NAMES.get(status, 'Error')}: {', '.join(codes)}."
        return statuses


def describe_tags(result, generator, request, public):
    """drf-spectacular post-processing hook: the tags, in TAGS order, described."""
    used = {
        tag
        for item in result.get("paths", {}).values()
        for op in item.values()
        if isinstance(op, dict)
        for tag in op.get("tags", [])
    }
    ordered = list(dict.fromkeys(TAGS.values())) + sorted(used - set(TAGS.values()))
    result["tags"] = [
        {
            "name": name,
            **({"description": TAG_DESCRIPTIONS[name]} if name in TAG_DESCRIPTIONS else {}),
        }
        for name in ordered
        if name in used
    ]
    return result

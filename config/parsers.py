"""Request parsers: DRF's, with bounds. Kept apart from config.api so that DRF's
settings can import them without importing DRF's views."""

import io

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.parsers import FormParser, JSONParser


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"
    default_detail = "The request body is too large."


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with two bounds: bodies over API_MAX_JSON_BYTES are refused
    (413 REQUEST_TOO_LARGE) without being read whole, and nesting too deep for the
    decoder is a 400 PARSE_ERROR instead of a RecursionError (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_JSON_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"JSON bodies are limited to {limit} bytes.")
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"JSON bodies are limited to {limit} bytes.")
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.")


class BoundedFormParser(FormParser):
    """DRF's urlencoded form parser, held to Django's own DATA_UPLOAD_MAX_MEMORY_SIZE
    (DRF reads the stream itself, so Django's check never runs): a larger body raises
    Django's RequestDataTooBig, which the exception handler answers with 413."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise RequestDataTooBig("Request body exceeded DATA_UPLOAD_MAX_MEMORY_SIZE.")
            stream = io.BytesIO(body)
        return super().parse(stream, media_type, parser_context)

"""Thin API views of the storage app: upload, download (with Range), info, delete, list."""

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import JsonErrorsMixin, PassthroughRenderer, error_body
from config.errors import ApplicationError
from config.schema import ErrorSerializer
from storage import selectors, services
from storage.keys import prefix_validate, upload_prefix_validate
from storage.models import StoredFile
from storage.streams import parse_range
from storage.uploads import LimitedUploadHandler

DEFAULT_PREFIX = "uploads"
DOWNLOAD_BLOCK_SIZE = 256 * 1024  # FileResponse's 4 KiB default costs 3x in throughput


class StoredFileSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True, default=None)
    execution = serializers.IntegerField(
        source="execution_id", read_only=True, allow_null=True, help_text="the run it came from"
    )

    class Meta:
        model = StoredFile
        fields = [
            "key",
            "original_name",
            "size",
            "content_type",
            "sha256",
            "owner",
            "execution",
            "created_at",
        ]
        read_only_fields = fields


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField()


class FileUploadView(APIView):
    """POST multipart ``file`` (+ ``?prefix=``) -> 201 ``{key, size, ...}``."""

    parser_classes = [MultiPartParser]
    error_codes = {"post": {400: ["INVALID_KEY"], 413: ["FILE_TOO_LARGE", "QUOTA_EXCEEDED"]}}

    def initialize_request(self, request, *args, **kwargs):
        # Before anything (CSRF checks included) reads the body.
        request.upload_handlers = [
            LimitedUploadHandler(request, max_bytes=settings.STORAGE_MAX_UPLOAD_BYTES)
        ]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("prefix", str, description="Key prefix (default uploads)")],
        request={"multipart/form-data": UploadSerializer},
        responses={201: StoredFileSerializer},
    )
    def post(self, request):
        """Store the uploaded file under ``<prefix>/<random>.<ext>`` (never the client's
        name); 413 FILE_TOO_LARGE / QUOTA_EXCEEDED, 400 INVALID_KEY."""
        prefix = upload_prefix_validate(request.query_params.get("prefix") or DEFAULT_PREFIX)
        serializer = UploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        try:
            stored = services.file_store(
                fileobj=upload,
                original_name=upload.name,
                prefix=prefix,
                owner=request.user,
            )
        finally:
            upload.close()
        return Response(StoredFileSerializer(stored).data, status=status.HTTP_201_CREATED)


class FileListView(generics.ListAPIView):
    """The files the caller may reach (own, their runs'; staff: all), newest first.
    ``?prefix=a/b`` and ``?execution=<id>`` filter."""

    serializer_class = StoredFileSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("prefix", str),
            OpenApiParameter("execution", int),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.files_visible_to(user=self.request.user).select_related("owner")
        prefix = self.request.query_params.get("prefix")
        if prefix:
            qs = qs.filter(key__startswith=prefix_validate(prefix) + "/")
        execution = self.request.query_params.get("execution")
        if execution:
            if not execution.isdigit():
                raise ApplicationError(
                    "VALIDATION_ERROR",
                    "The request is not valid.",
                    {"execution": ["A run id is a whole number."]},
                )
            qs = qs.filter(execution_id=int(execution))
        return qs


class FileInfoView(APIView):
    @extend_schema(responses=StoredFileSerializer)
    def get(self, request, key):
        """What is known about the file: name, size, type, sha256, owner, run."""
        stored = selectors.file_get_for_user(user=request.user, key=key)
        return Response(StoredFileSerializer(stored).data)


class FileView(JsonErrorsMixin, APIView):
    renderer_classes = [JSONRenderer, PassthroughRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER)],
        responses={
            (200, "*/*"): OpenApiTypes.BINARY,
            (206, "*/*"): OpenApiTypes.BINARY,
            416: OpenApiResponse(ErrorSerializer, description="RANGE_NOT_SATISFIABLE"),
        },
    )
    def get(self, request, key):
        """The file's bytes, streamed, as an attachment named as uploaded. One
        ``Range: bytes=a-b | a- | -n`` gives 206 with Content-Range; 416 if unsatisfiable."""
        stored = selectors.file_get_for_user(user=request.user, key=key)
        wanted = parse_range(request.headers.get("Range"), stored.size)
        if wanted is False:
            return Response(
                error_body(
                    "RANGE_NOT_SATISFIABLE",
                    "The requested range is outside the file.",
                    {"size": stored.size},
                ),
                status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                headers={"Content-Range": f"bytes */{stored.size}"},
            )
        start, end = wanted or (0, stored.size - 1)
        length = end - start + 1 if stored.size else 0
        stream = services.file_open(
            stored_file=stored, start=start, length=length if wanted else None
        )
        response = FileResponse(
            stream,
            status=206 if wanted else 200,
            content_type=stored.content_type,
            as_attachment=True,
            filename=stored.original_name,
        )
        response.block_size = DOWNLOAD_BLOCK_SIZE
        response["Content-Length"] = str(length)
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = f'"{stored.sha256}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-cache"
        if wanted:
            response["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        return response

    @extend_schema(responses={204: None})
    def delete(self, request, key):
        """Delete the file (its owner or staff); the object goes with the row."""
        stored = selectors.file_get_for_user(user=request.user, key=key)
        services.file_delete_for_user(user=request.user, stored_file=stored)
        return Response(status=status.HTTP_204_NO_CONTENT)

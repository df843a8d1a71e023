"""Thin API views of the script library: folders, tree, scripts, content, versions,
schema. Visibility and permissions come from selectors/services."""

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ApplicationError, NotFoundError
from config.parsers import BoundedFormParser, BoundedJSONParser
from scripts import permissions, selectors, services
from scripts import serializers as s
from scripts.models import Folder

_TRUE = {"1", "true", "yes", "on"}


def _folder_or_none(user, folder_id) -> Folder | None:
    if folder_id is None:
        return None
    folder = permissions.folders_readable_by(user=user).filter(pk=folder_id).first()
    if folder is None:
        raise ApplicationError(
            "VALIDATION_ERROR", "No such folder.", {"folder": [f"No folder {folder_id}."]}
        )
    return folder


class FolderViewSet(viewsets.GenericViewSet):
    """Folders the user can see (scripts.permissions). PATCH renames/moves (write
    permission) and shares (read_groups, write_groups, public, inherit_permissions:
    owner or staff); DELETE needs ?recursive=true when the folder is not empty."""

    error_codes = {
        "create": {409: ["FOLDER_EXISTS"]},
        "partial_update": {400: ["FOLDER_CYCLE"], 409: ["FOLDER_EXISTS"]},
        "destroy": {409: ["FOLDER_NOT_EMPTY"]},
    }
    lookup_value_regex = r"\d+"
    serializer_class = s.FolderSerializer

    def get_queryset(self, access_map=False):
        return (
            permissions.folders_readable_by(user=self.request.user, access_map=access_map)
            .select_related("owner")
            .prefetch_related("read_groups", "write_groups")
            .order_by("path")
        )

    def get_object(self):
        folder = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if folder is None:
            raise NotFoundError("No such folder.")
        return folder

    def list(self, request):
        access = permissions.folder_access_map(user=request.user)
        page = self.paginate_queryset(self.get_queryset(access_map=access))
        context = {**self.get_serializer_context(), "access": access}
        data = s.FolderSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=s.FolderWriteSerializer, responses={201: s.FolderSerializer})
    def create(self, request):
        data = _valid(s.FolderWriteSerializer, request.data)
        if not data.get("name"):
            raise ApplicationError(
                "VALIDATION_ERROR", "A name is required.", {"name": ["This field is required."]}
            )
        parent = _folder_or_none(request.user, data.get("parent"))
        folder = services.folder_create(user=request.user, name=data["name"], parent=parent)
        return Response(self.get_serializer(folder).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.FolderWriteSerializer, responses=s.FolderSerializer)
    def partial_update(self, request, pk=None):
        folder = self.get_object()
        data = _valid(s.FolderWriteSerializer, request.data)
        kwargs = {"name": data.get("name")}
        if "parent" in data:
            kwargs["parent"] = _folder_or_none(request.user, data["parent"])
        sharing = {k: data[k] for k in s.FolderWriteSerializer.SHARING if k in data}
        with transaction.atomic():
            if sharing:
                services.folder_share(user=request.user, folder=folder, **sharing)
            if kwargs["name"] is not None or "parent" in kwargs:
                services.folder_update(user=request.user, folder=folder, **kwargs)
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "recursive",
                OpenApiTypes.BOOL,
                description=(
                    "Delete the folder with everything inside (else 409 FOLDER_NOT_EMPTY)."
                ),
            )
        ],
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        recursive = request.query_params.get("recursive", "").lower() in _TRUE
        services.folder_delete(user=request.user, folder=self.get_object(), recursive=recursive)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class TreeView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Folders and scripts the user can see, nested, in a constant number of queries."""
        return Response(selectors.library_tree(user=request.user))


class ScriptViewSet(viewsets.GenericViewSet):
    """Scripts the user can see (hidden ones are 404). Owners and staff may change or
    delete; others get 403."""

    error_codes = {
        "create": {
            409: ["SCRIPT_EXISTS_REPLACE_REQUIRED", "EXAMPLE_FAILED"],
            413: ["SCRIPT_TOO_LARGE"],
        },
        "partial_update": {409: ["SCRIPT_EXISTS"]},
        "example_create": {409: ["EXAMPLE_EXISTS"]},
    }
    lookup_value_regex = r"\d+"
    serializer_class = s.ScriptSerializer
    parser_classes = [MultiPartParser, BoundedFormParser, BoundedJSONParser]

    def get_queryset(self, access_map=False):
        return (
            permissions.scripts_runnable_by(user=self.request.user, access_map=access_map)
            .select_related("owner", "current_version__uploaded_by")
            .defer("current_version__source")
            .order_by("logical_path")
        )

    def get_object(self):
        script = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if script is None:
            raise NotFoundError("No such script.")
        return script

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "folder",
                OpenApiTypes.STR,
                description="A folder id (its direct scripts) or 'root'.",
            ),
            OpenApiParameter(
                "search",
                OpenApiTypes.STR,
                description="Words in the name, title, description or path.",
            ),
        ]
    )
    def list(self, request):
        access = permissions.folder_access_map(user=request.user)
        queryset = self.get_queryset(access_map=access)
        folder = request.query_params.get("folder")
        if folder in ("root", "null", "none"):
            queryset = queryset.filter(folder__isnull=True)
        elif folder:
            if not folder.isdigit():
                raise ApplicationError(
                    "VALIDATION_ERROR",
                    "folder must be an id or 'root'.",
                    {"folder": ["An id or 'root'."]},
                )
            queryset = queryset.filter(folder_id=int(folder))
        for word in request.query_params.get("search", "").split():
            queryset = queryset.filter(
                Q(name__icontains=word)
                | Q(display_name__icontains=word)
                | Q(description__icontains=word)
                | Q(logical_path__icontains=word)
            )
        page = self.paginate_queryset(queryset)
        context = {**self.get_serializer_context(), "access": access}
        data = s.ScriptSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    @extend_schema(
        request={"multipart/form-data": s.ScriptUploadSerializer},
        responses={201: s.ScriptSerializer, 200: s.ScriptSerializer},
    )
    def create(self, request):
        """Upload a script (multipart ``file``); ``replace=true`` adds a version to an
        existing one. 201 when something was added, 200 when the bytes were identical."""
        data = _valid(s.ScriptUploadSerializer, request.data)
        folder = _folder_or_none(request.user, data.get("folder"))
        upload = data["file"]
        content = upload.read(settings.SCRIPT_MAX_UPLOAD_BYTES + 1)
        version = services.script_upload(
            user=request.user,
            file_name=upload.name,
            content=content,
            folder=folder,
            display_name=data.get("display_name", ""),
            description=data.get("description", ""),
            replace=data["replace"],
            force=data["force"],
        )
        created = getattr(version, "is_new", False)
        self.kwargs["pk"] = version.script_id
        body = {**self.get_serializer(self.get_object()).data, "warnings": version.warnings}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=s.ScriptUpdateSerializer, responses=s.ScriptSerializer)
    def partial_update(self, request, pk=None):
        script = self.get_object()
        data = dict(_valid(s.ScriptUpdateSerializer, request.data))
        if "folder" in data:
            data["folder"] = _folder_or_none(request.user, data["folder"])
        services.script_update(user=request.user, script=script, **data)
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.script_delete(user=request.user, script=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _version(self, request):
        number = request.query_params.get("version")
        if number is not None and not number.isdigit():
            raise ApplicationError(
                "VALIDATION_ERROR", "version must be a number.", {"version": ["A whole number."]}
            )
        script = self.get_object()
        if number is None:
            return script, selectors.script_version_get(script=script)
        return script, selectors.script_version_get(script=script, number=int(number))

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="Default: current")],
        responses=s.ContentSerializer,
    )
    @action(detail=True, methods=["get"])
    def content(self, request, pk=None):
        """The source of the current version (or ``?version=N``)."""
        script, version = self._version(request)
        if "source" in version.get_deferred_fields():
            version.refresh_from_db(fields=["source"])
        return Response(
            {"number": version.number, "sha256": version.sha256, "source": version.source}
        )

    @extend_schema(request=None, responses=s.ExampleSerializer(many=True))
    @action(detail=True, methods=["get"])
    def examples(self, request, pk=None):
        """The script's examples: new versions must pass them (409 EXAMPLE_FAILED on
        upload unless force=true)."""
        page = self.paginate_queryset(self.get_object().examples.all())
        return self.get_paginated_response(s.ExampleSerializer(page, many=True).data)

    @extend_schema(request=s.ExampleSerializer, responses={201: s.ExampleSerializer})
    @examples.mapping.post
    def example_create(self, request, pk=None):
        """Add an example (owner or staff)."""
        script = self.get_object()
        data = _valid(s.ExampleSerializer, request.data)
        example = services.example_create(user=request.user, script=script, **data)
        return Response(s.ExampleSerializer(example).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"examples/(?P<example_id>\d+)",
        url_name="example-detail",
    )
    def example_delete(self, request, pk=None, example_id=None):
        """Remove an example (owner or staff)."""
        example = self.get_object().examples.filter(pk=example_id).first()
        if example is None:
            raise NotFoundError("No such example.")
        services.example_delete(user=request.user, example=example)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=s.VersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """Every version, newest first (without the source)."""
        versions = selectors.script_versions(script=self.get_object())
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(s.VersionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="Default: current")],
        responses=s.SchemaSerializer,
    )
    @action(detail=True, methods=["get"], url_path="schema", url_name="schema")
    def input_schema(self, request, pk=None):
        """The JSON Schema of a run's inputs and the requirements of the version."""
        script, version = self._version(request)
        version.script = script
        return Response(
            {
                "version": version.number,
                "kind": version.kind,
                "call_style": version.call_style,
                "input_schema": selectors.script_version_schema(version=version),
                "requirements": selectors.script_version_requirements(version=version),
            }
        )

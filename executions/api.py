"""Thin API views of the executions app: runs, sync run, log, SSE events, files."""

from django.conf import settings
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import JsonErrorsMixin, PassthroughRenderer
from config.errors import NotFoundError
from executions import selectors, services
from executions.events import event_stream
from executions.logbook import log_text
from executions.models import Artifact, Execution


class ArtifactSerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="stored_file.key", read_only=True)
    content_type = serializers.CharField(source="stored_file.content_type", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["name", "category", "size", "content_type", "key", "url"]

    def get_url(self, artifact) -> str:
        return f"/api/v1/executions/{artifact.execution_id}/files/{artifact.name}"


class ExecutionSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default=None)
    duration_seconds = serializers.FloatField(read_only=True)
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    files = ArtifactSerializer(source="artifacts", many=True, read_only=True)
    schedule = serializers.IntegerField(
        source="schedule_id",
        read_only=True,
        allow_null=True,
        help_text="the schedule that fired it",
    )

    class Meta:
        model = Execution
        fields = [
            "id",
            "script",
            "script_path",
            "version_number",
            "status",
            "source",
            "schedule",
            "inputs",
            "argv",
            "input_files",
            "options",
            "requested_by",
            "rerun_of",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "exit_code",
            "result",
            "error",
            "progress",
            "peak_memory_kb",
            "cpu_time_ms",
            "log_size",
            "log_truncated",
            "files",
        ]
        read_only_fields = fields

    def get_error(self, execution) -> dict | None:
        if not execution.error_code:
            return None
        return {"code": execution.error_code, "message": execution.error_message}

    def get_progress(self, execution) -> dict:
        return {"percent": execution.progress_percent, "message": execution.progress_message}


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of dropping them silently."""

    def validate(self, attrs):
        unknown = (
            sorted(set(self.initial_data) - set(self.fields))
            if hasattr(self.initial_data, "keys")
            else []
        )
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field for this endpoint."] for name in unknown}
            )
        return attrs


TIMEOUT_HELP = (
    "seconds, positive; above RUN_TIMEOUT_MAX_SECONDS it is clamped to it "
    "(the stored run shows the timeout that applies)"
)


class ExecutionCreateSerializer(StrictSerializer):
    script = serializers.CharField(max_length=1300, help_text="Script id or logical path")
    data = serializers.JSONField(
        required=False,
        help_text="Inputs (function scripts, or command scripts with declared parameters)",
    )
    args = serializers.ListField(
        child=serializers.CharField(max_length=10000, allow_blank=True),
        required=False,
        max_length=500,
    )
    # Counts and ranges are the service's rules (one place): passed through here.
    input_files = serializers.ListField(
        child=serializers.CharField(max_length=1024),
        required=False,
        help_text=f"file keys, at most {services.INPUT_FILES_MAX}",
    )
    email_to = serializers.ListField(
        child=serializers.CharField(max_length=254),
        required=False,
        help_text=f"report recipients, at most {services.EMAIL_TO_MAX}",
    )
    timeout = serializers.IntegerField(required=False, help_text=TIMEOUT_HELP)


class ExecutionAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class SyncRunRequestSerializer(StrictSerializer):
    data = serializers.JSONField(required=False)
    timeout = serializers.IntegerField(required=False, help_text=TIMEOUT_HELP)


class SyncRunResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField(allow_null=True)
    result = serializers.JSONField(allow_null=True)
    execution_time = serializers.FloatField(allow_null=True)
    execution_id = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.DictField(allow_null=True)


# One Server-Sent Event, as the schema describes each event of the stream.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["log", "progress", "status"]},
        "data": {
            "type": "string",
            "description": "JSON: log {text}; progress {percent, message}; status {status, "
            "error_code, error_message, exit_code} (status 'deleted' when the run is gone)",
        },
        "id": {"type": "string", "description": "log events: the chunk number"},
        "retry": {"type": "integer"},
    },
    "required": ["event", "data"],
}


class EventStreamRenderer(renderers.BaseRenderer):
    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)


def _execution_or_404(request, pk) -> Execution:
    return selectors.execution_get_for_user(user=request.user, pk=pk)


class ExecutionViewSet(
    JsonErrorsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Runs: list (yours; staff see all), start (202), detail, cancel, rerun, log,
    live events (SSE) and files. Errors are JSON on every action, SSE included."""

    serializer_class = ExecutionSerializer
    error_codes = {
        "create": {
            409: ["SCRIPT_DISABLED", "SCRIPT_HAS_NO_VERSION"],
            413: ["INPUT_TOO_LARGE"],
            429: ["RATE_LIMITED"],
        },
        "cancel": {409: ["EXECUTION_FINISHED"]},
        "rerun": {
            409: ["SCRIPT_DELETED", "SCRIPT_DISABLED", "SCRIPT_HAS_NO_VERSION"],
            429: ["RATE_LIMITED"],
        },
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Execution.objects.none()
        return selectors.executions_for_user(
            user=self.request.user,
            status=self.request.query_params.get("status"),
            script=self.request.query_params.get("script"),
            source=self.request.query_params.get("source"),
            schedule=self.request.query_params.get("schedule"),
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="queued, running, succeeded, ..."),
            OpenApiParameter("script", str, description="script id or logical path"),
            OpenApiParameter(
                "source", str, description="api, sync, admin, portal, rerun, schedule, pipeline"
            ),
            OpenApiParameter("schedule", int, description="runs fired by this schedule id"),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ExecutionCreateSerializer, responses={202: ExecutionAcceptedSerializer})
    def create(self, request):
        """Start a run; it is queued for a worker (poll it, or follow its events)."""
        serializer = ExecutionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        execution = services.execution_start(
            user=request.user,
            script_ref=data["script"],
            inputs=data.get("data"),
            args=data.get("args"),
            input_files=data.get("input_files"),
            email_to=data.get("email_to"),
            timeout=data.get("timeout"),
        )
        execution.refresh_from_db(fields=["status"])
        return Response({"id": execution.pk, "status": execution.status}, status=202)

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running run."""
        execution = services.execution_cancel(
            user=request.user, execution=_execution_or_404(request, pk)
        )
        return Response(ExecutionSerializer(execution).data)

    @extend_schema(request=None, responses={202: ExecutionAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Start the same script again with the same inputs."""
        execution = services.execution_rerun(
            user=request.user, execution=_execution_or_404(request, pk)
        )
        execution.refresh_from_db(fields=["status"])
        return Response({"id": execution.pk, "status": execution.status}, status=202)

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    @action(
        detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, PassthroughRenderer]
    )
    def log(self, request, pk=None):
        """The whole log as text/plain."""
        execution = _execution_or_404(request, pk)
        return HttpResponse(
            log_text(execution_id=execution.pk), content_type="text/plain; charset=utf-8"
        )

    @extend_schema(
        responses={(200, "text/event-stream"): SSE_EVENT_SCHEMA},
        parameters=[OpenApiParameter("Last-Event-ID", int, OpenApiParameter.HEADER)],
    )
    @action(
        detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, EventStreamRenderer]
    )
    def events(self, request, pk=None):
        """Server-Sent Events: ``log`` (id = chunk number; resume with Last-Event-ID),
        ``progress`` and ``status``; the stream ends after the final status."""
        execution = _execution_or_404(request, pk)
        try:
            last_seq = int(
                request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id", 0)
            )
        except ValueError:
            last_seq = 0
        response = StreamingHttpResponse(
            event_stream(execution_id=execution.pk, last_seq=max(0, last_seq)),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    @extend_schema(responses=ArtifactSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def files(self, request, pk=None):
        """The files the run left, with their categories."""
        execution = _execution_or_404(request, pk)
        artifacts = execution.artifacts.select_related("stored_file")
        return Response(ArtifactSerializer(artifacts, many=True).data)


class ExecutionFileView(JsonErrorsMixin, APIView):
    renderer_classes = [renderers.JSONRenderer, PassthroughRenderer]

    @extend_schema(responses={(200, "*/*"): OpenApiTypes.BINARY})
    def get(self, request, pk: int, name: str):
        """Download one of the run's files."""
        from storage.services import file_open

        execution = _execution_or_404(request, pk)
        artifact = execution.artifacts.select_related("stored_file").filter(name=name).first()
        if artifact is None:
            raise NotFoundError("The run has no file by that name.")
        return FileResponse(
            file_open(stored_file=artifact.stored_file),
            as_attachment=True,
            filename=name.rsplit("/", 1)[-1],
            content_type=artifact.stored_file.content_type,
        )


class SyncRunView(APIView):
    error_codes = {
        "post": {409: ["SCRIPT_DISABLED", "SCRIPT_HAS_NO_VERSION"], 429: ["RATE_LIMITED"]}
    }

    @extend_schema(
        request=SyncRunRequestSerializer,
        responses={200: SyncRunResponseSerializer, 202: SyncRunResponseSerializer},
    )
    def post(self, request, logical_path: str):
        """Run a script and wait for its result (up to SYNC_RUN_WAIT seconds; past
        that, 202 with the execution id while it goes on). A script error is
        ``success: false`` with the error, not an HTTP error."""
        serializer = SyncRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        execution = services.execution_start(
            user=request.user,
            script_ref=logical_path,
            inputs=serializer.validated_data.get("data"),
            timeout=serializer.validated_data.get("timeout"),
            source="sync",
            claim=True,  # recorded as running: this process runs it now
        )
        execution = services.execution_run_and_wait(
            execution=execution, wait_seconds=settings.SYNC_RUN_WAIT
        )
        finished = execution.is_finished
        body = {
            "success": (execution.status == Execution.Status.SUCCEEDED) if finished else None,
            "result": execution.result if finished else None,
            "execution_time": execution.duration_seconds,
            "execution_id": execution.pk,
            "status": execution.status,
            "error": (
                {"code": execution.error_code, "message": execution.error_message}
                if execution.error_code
                else None
            ),
        }
        return Response(body, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)

"""Thin API views of the jobs app: schedules, pipelines, pipeline runs."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from executions.api import StrictSerializer
from jobs import selectors, services
from jobs.models import Pipeline, PipelineRun, PipelineRunStep, Schedule, ScheduleFiring


class ScheduleFiringSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFiring
        fields = [
            "id",
            "due_at",
            "fired_at",
            "outcome",
            "execution",
            "pipeline_run",
            "error_code",
            "message",
        ]
        read_only_fields = fields


class ScheduleSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    script_path = serializers.CharField(
        source="script.logical_path", default=None, read_only=True, allow_null=True
    )
    next_run_at = serializers.DateTimeField(
        source="q_schedule.next_run",
        default=None,
        read_only=True,
        allow_null=True,
        help_text="the next firing (none while disabled)",
    )
    skipped_firings = serializers.IntegerField(source="skipped_count", read_only=True)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "owner",
            "script",
            "script_path",
            "pipeline",
            "data",
            "args",
            "cron",
            "every_minutes",
            "enabled",
            "email_to",
            "next_run_at",
            "last_fired_at",
            "last_outcome",
            "last_execution",
            "last_pipeline_run",
            "skipped_firings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ScheduleDetailSerializer(ScheduleSerializer):
    recent_firings = serializers.SerializerMethodField()

    class Meta(ScheduleSerializer.Meta):
        fields = [*ScheduleSerializer.Meta.fields, "recent_firings"]
        read_only_fields = fields

    @extend_schema_field(ScheduleFiringSerializer(many=True))
    def get_recent_firings(self, schedule) -> list[dict]:
        firings = selectors.schedule_firings(schedule=schedule)
        return ScheduleFiringSerializer(firings, many=True).data


class ScheduleWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    script = serializers.CharField(
        max_length=1300,
        required=False,
        allow_null=True,
        help_text="Script id or logical path (or give pipeline)",
    )
    pipeline = serializers.CharField(
        max_length=200, required=False, allow_null=True, help_text="Pipeline id or name"
    )
    data = serializers.JSONField(required=False, help_text="Fixed inputs (a JSON object)")
    args = serializers.ListField(
        child=serializers.CharField(max_length=10000, allow_blank=True),
        required=False,
        allow_null=True,
        max_length=500,
    )
    cron = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text='5-field cron expression ("*/15 * * * *"), in TIME_ZONE; or every_minutes',
    )
    every_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=services.EVERY_MINUTES_MAX
    )
    enabled = serializers.BooleanField(required=False)
    email_to = serializers.ListField(
        child=serializers.CharField(max_length=254),
        required=False,
        help_text=f"report recipients, at most {services.EMAIL_TO_MAX}",
    )


def _schedule_changes(data: dict) -> dict:
    """Serializer fields -> the service's keyword arguments (only those given)."""
    names = {"script": "script_ref", "pipeline": "pipeline_ref"}
    return {names.get(key, key): value for key, value in data.items()}


class ScheduleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Schedules: yours (staff see all). Each firing starts a run as the schedule's
    owner (source "schedule"); a firing while the previous run is still running, or
    over the owner's limits, is skipped and recorded."""

    serializer_class = ScheduleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Schedule.objects.none()
        return selectors.schedules_for_user(user=self.request.user)

    def get_serializer_class(self):
        return ScheduleDetailSerializer if self.action == "retrieve" else ScheduleSerializer

    def _detail(self, pk) -> Response:
        schedule = selectors.schedule_get_for_user(user=self.request.user, pk=pk)
        return Response(ScheduleDetailSerializer(schedule).data)

    def retrieve(self, request, pk=None):
        """One schedule with its latest firings."""
        return self._detail(pk)

    @extend_schema(request=ScheduleWriteSerializer, responses={201: ScheduleDetailSerializer})
    def create(self, request):
        """Create a schedule of a script (or a pipeline) you may run."""
        serializer = ScheduleWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        schedule = services.schedule_create(
            user=request.user, **_schedule_changes(serializer.validated_data)
        )
        detail = selectors.schedule_get_for_user(user=request.user, pk=schedule.pk)
        return Response(ScheduleDetailSerializer(detail).data, status=201)

    @extend_schema(request=ScheduleWriteSerializer, responses=ScheduleDetailSerializer)
    def partial_update(self, request, pk=None):
        """Change a schedule (its owner or staff): ``enabled: false`` stops its firings."""
        schedule = selectors.schedule_get_for_user(user=request.user, pk=pk)
        serializer = ScheduleWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.schedule_update(
            user=request.user, schedule=schedule, **_schedule_changes(serializer.validated_data)
        )
        return self._detail(pk)

    def destroy(self, request, pk=None):
        """Delete a schedule; its runs are kept."""
        schedule = selectors.schedule_get_for_user(user=request.user, pk=pk)
        services.schedule_delete(user=request.user, schedule=schedule)
        return Response(status=204)

    @extend_schema(responses=ScheduleFiringSerializer(many=True))
    @action(detail=True, methods=["get"])
    def firings(self, request, pk=None):
        """Every firing of the schedule, newest first: started, or why not."""
        schedule = selectors.schedule_get_for_user(user=request.user, pk=pk)
        page = self.paginate_queryset(schedule.firings.order_by("-due_at", "-id"))
        return self.get_paginated_response(ScheduleFiringSerializer(page, many=True).data)


class PipelineStepSerializer(serializers.Serializer):
    position = serializers.IntegerField(read_only=True)
    script = serializers.IntegerField(source="script_id", read_only=True, allow_null=True)
    script_path = serializers.CharField(read_only=True)


class PipelineSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    steps = PipelineStepSerializer(many=True, read_only=True)

    class Meta:
        model = Pipeline
        fields = ["id", "name", "description", "owner", "steps", "created_at", "updated_at"]
        read_only_fields = fields


class PipelineStepInputSerializer(serializers.Serializer):
    script = serializers.CharField(max_length=1300, help_text="Script id or logical path")

    def to_internal_value(self, data):
        """Refuses keys it does not know (as StrictSerializer, which cannot be nested)."""
        if isinstance(data, dict) and set(data) - set(self.fields):
            raise serializers.ValidationError(
                {name: ["Unknown field for a step."] for name in sorted(set(data) - {"script"})}
            )
        return super().to_internal_value(data)


class PipelineCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    steps = PipelineStepInputSerializer(many=True, help_text="in order")


class PipelineRunRequestSerializer(StrictSerializer):
    data = serializers.JSONField(required=False, help_text="The first step's input")


class PipelineRunAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class PipelineRunStepSerializer(serializers.ModelSerializer):
    execution_status = serializers.CharField(
        source="execution.status", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = PipelineRunStep
        fields = [
            "position",
            "script",
            "script_path",
            "status",
            "execution",
            "execution_status",
            "error_code",
            "error_message",
        ]
        read_only_fields = fields


class PipelineRunSerializer(serializers.ModelSerializer):
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", default=None, read_only=True, allow_null=True
    )
    steps = PipelineRunStepSerializer(many=True, read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "pipeline",
            "pipeline_name",
            "status",
            "result",
            "error",
            "inputs",
            "source",
            "schedule_id",
            "requested_by",
            "steps",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_error(self, run) -> dict | None:
        if not run.error_code:
            return None
        return {"code": run.error_code, "message": run.error_message}


class PipelineViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Pipelines: scripts run one after the other, each step's result (a JSON object)
    merged over the next step's input. Yours (staff see all)."""

    serializer_class = PipelineSerializer
    error_codes = {
        "create": {409: ["PIPELINE_EXISTS"]},
        "run": {
            409: ["PIPELINE_EMPTY", "SCRIPT_DISABLED", "SCRIPT_HAS_NO_VERSION", "SCRIPT_DELETED"],
            413: ["INPUT_TOO_LARGE"],
            429: ["RATE_LIMITED"],
        },
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Pipeline.objects.none()
        return selectors.pipelines_for_user(user=self.request.user)

    @extend_schema(request=PipelineCreateSerializer, responses={201: PipelineSerializer})
    def create(self, request):
        """Create a pipeline: a name and ordered steps, each a script you may run."""
        serializer = PipelineCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        pipeline = services.pipeline_create(
            user=request.user,
            name=data["name"],
            steps=[dict(step) for step in data["steps"]],
            description=data.get("description", ""),
        )
        pipeline = selectors.pipeline_get_for_user(user=request.user, pk=pipeline.pk)
        return Response(PipelineSerializer(pipeline).data, status=201)

    def destroy(self, request, pk=None):
        """Delete a pipeline (and its schedules); the steps' runs are kept."""
        pipeline = selectors.pipeline_get_for_user(user=request.user, pk=pk)
        services.pipeline_delete(user=request.user, pipeline=pipeline)
        return Response(status=204)

    @extend_schema(
        request=PipelineRunRequestSerializer, responses={202: PipelineRunAcceptedSerializer}
    )
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Start a run of the pipeline with ``data`` as the first step's input."""
        pipeline = selectors.pipeline_get_for_user(user=request.user, pk=pk)
        serializer = PipelineRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.pipeline_run_start(
            user=request.user, pipeline=pipeline, data=serializer.validated_data.get("data")
        )
        run.refresh_from_db(fields=["status"])
        return Response({"id": run.pk, "status": run.status}, status=202)


class PipelineRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Pipeline runs you started (staff see all): status, the last step's result, and
    each step with its run's id and status (succeeded, failed, skipped, ...)."""

    serializer_class = PipelineRunSerializer
    error_codes = {"cancel": {409: ["PIPELINE_RUN_FINISHED"]}}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PipelineRun.objects.none()
        return selectors.pipeline_runs_for_user(user=self.request.user)

    @extend_schema(request=None, responses=PipelineRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a running pipeline run: its current step's run is cancelled."""
        run = selectors.pipeline_run_get_for_user(user=request.user, pk=pk)
        services.pipeline_run_cancel(user=request.user, run=run)
        run = selectors.pipeline_run_get_for_user(user=request.user, pk=pk)
        return Response(PipelineRunSerializer(run).data)

"""Thin API views of the mail queue (staff only), under /api/v1/mail/.

Names: the queue rows and the SMTP parameter sets are rows of the legacy tables and
keep the legacy camelCase names (``sendFlag``, ``paramCode``, ``smtpServer``...), so
that programs written for the legacy service read them unchanged. Everything else
(config, status, dashboard, test e-mail, process) uses snake_case like the rest of
the API.
"""

import base64
import binascii

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ApplicationError
from mailqueue import schedule, selectors, services
from mailqueue.crypto import MAX_PASSWORD_LENGTH
from mailqueue.models import EmailDetail, EmailParameter, IntervalUnit, SendFlag, SslFlag

TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


@extend_schema_field(
    {
        "type": "string",
        "pattern": TIME_OF_DAY_PATTERN,
        "example": "22:00",
        "description": 'A time of day, "HH:MM" ("HH:MM:SS" is accepted).',
    }
)
class TimeOfDayField(serializers.TimeField):
    """A time of day written ``HH:MM`` (the legacy service's format); ``HH:MM:SS`` is
    read too."""

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], **kwargs)


def _limited(name: str) -> serializers.IntegerField:
    low, high = services.CONFIG_LIMITS[name]
    return serializers.IntegerField(min_value=low, max_value=high)


class ConfigSerializer(serializers.Serializer):
    start_time = TimeOfDayField()
    end_time = TimeOfDayField(help_text="equal to start_time: all day; earlier: over midnight")
    interval = _limited("interval")
    interval_unit = serializers.ChoiceField(choices=IntervalUnit.values)
    db_request_timeout = _limited("db_request_timeout")
    db_connection_timeout = _limited("db_connection_timeout")
    max_retries = _limited("max_retries")
    batch_size = _limited("batch_size")


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["running", "stopped"])
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    last_activity = serializers.DateTimeField(allow_null=True)
    last_run = serializers.DateTimeField(allow_null=True)
    next_run = serializers.DateTimeField(allow_null=True, help_text="window applied")
    window_open = serializers.BooleanField()


class DatabaseCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    database = serializers.CharField()
    vendor = serializers.CharField(required=False)
    ms = serializers.FloatField()
    error = serializers.CharField(required=False)


class DashboardScheduleSerializer(serializers.Serializer):
    exists = serializers.BooleanField()
    start_time = TimeOfDayField()
    end_time = TimeOfDayField()
    interval = serializers.IntegerField()
    interval_unit = serializers.CharField()
    next_run = serializers.DateTimeField(allow_null=True)


class DashboardTotalsSerializer(serializers.Serializer):
    processed = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    retried = serializers.IntegerField()


class QueueCountsSerializer(serializers.Serializer):
    waiting = serializers.IntegerField()
    retrying = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()


class ParamHealthSerializer(serializers.Serializer):
    param_code = serializers.CharField()
    exists = serializers.BooleanField()
    is_active = serializers.BooleanField()
    healthy = serializers.BooleanField()
    status = serializers.CharField()
    last_error = serializers.CharField(allow_blank=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    last_ok_at = serializers.DateTimeField(allow_null=True)


class DashboardSerializer(serializers.Serializer):
    database = DatabaseCheckSerializer()
    schedule = DashboardScheduleSerializer()
    service = StatusSerializer()
    totals = DashboardTotalsSerializer()
    queue = QueueCountsSerializer()
    param_sets = ParamHealthSerializer(many=True)


class ServiceActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["start", "stop"])


class TestMailSerializer(serializers.Serializer):
    email = serializers.EmailField()
    param_code = serializers.CharField(required=False, allow_blank=True, max_length=50)


class TestMailResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the queue row (dd_srno)")
    send_flag = serializers.ChoiceField(choices=SendFlag.values, help_text="the row's dd_SendFlag")
    status = serializers.ChoiceField(
        choices=services.TEST_MAIL_STATUSES,
        help_text="sent: an SMTP server accepted it; console: only written to the "
        "console (no parameter set); fallback: handed to MAILQUEUE_FALLBACK_BACKEND; "
        "queued: another processor is busy; retrying/failed/config: sending failed",
    )
    message = serializers.CharField()
    reason = serializers.CharField(allow_blank=True, help_text="the server's answer, if any")


class ProcessResultSerializer(serializers.Serializer):
    processed = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    retried = serializers.IntegerField()
    deferred = serializers.IntegerField()
    busy = serializers.BooleanField()


class QueueSerializer(serializers.ModelSerializer):
    """A row of Digital_Emaildetails; NULL legacy columns are null."""

    id = serializers.IntegerField(source="srno", read_only=True)
    to = serializers.CharField(source="to_emails", max_length=500, allow_null=True)
    cc = serializers.CharField(
        source="cc_emails", required=False, allow_blank=True, allow_null=True
    )
    body = serializers.CharField(source="body_text", write_only=True, required=False)
    sendFlag = serializers.CharField(source="send_flag", read_only=True)
    paramCode = serializers.CharField(
        source="param_code", required=False, allow_blank=True, allow_null=True
    )
    retryCount = serializers.IntegerField(source="retry_count", read_only=True)
    sentDate = serializers.DateTimeField(source="sent_date", read_only=True, allow_null=True)
    bounceReason = serializers.CharField(source="bounce_reason", read_only=True, allow_null=True)
    lastRetryDate = serializers.DateTimeField(
        source="last_retry_date", read_only=True, allow_null=True
    )
    hasDocument = serializers.BooleanField(source="has_document", read_only=True, default=False)
    document = serializers.CharField(
        write_only=True, required=False, help_text="the attachment, base64"
    )

    class Meta:
        model = EmailDetail
        fields = [
            "id",
            "to",
            "cc",
            "subject",
            "body",
            "sendFlag",
            "paramCode",
            "retryCount",
            "sentDate",
            "bounceReason",
            "lastRetryDate",
            "filename",
            "hasDocument",
            "document",
        ]


class SslFlagField(serializers.ChoiceField):
    """SMTPSSLFlag: SslFlag's values; written in any case, blank read as N (the
    service's normalisation)."""

    def __init__(self, **kwargs):
        super().__init__(choices=SslFlag.choices, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(services.ssl_flag_normalize(data))


class SmtpParamSerializer(serializers.ModelSerializer):
    """A row of tbl_EMailParameters; NULL legacy columns are null."""

    paramCode = serializers.CharField(source="param_code", max_length=50)
    smtpServer = serializers.CharField(source="smtp_server", max_length=255, allow_null=True)
    smtpPort = serializers.IntegerField(
        source="smtp_port", min_value=1, max_value=65535, allow_null=True
    )
    smtpAccountName = serializers.CharField(
        source="smtp_account_name",
        max_length=255,
        required=False,
        allow_blank=True,
        allow_null=True,
    )
    smtpPassword = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=MAX_PASSWORD_LENGTH,
        trim_whitespace=False,
        help_text="write-only; omit to keep the stored one, empty to clear it",
    )
    hasPassword = serializers.SerializerMethodField()
    smtpMailId = serializers.EmailField(source="smtp_mail_id", max_length=255, allow_null=True)
    applicationName = serializers.CharField(
        source="application_name",
        max_length=255,
        required=False,
        allow_blank=True,
        allow_null=True,
    )
    smtpSslFlag = SslFlagField(source="smtp_ssl_flag", required=False, allow_null=True)
    isActive = serializers.BooleanField(source="active", required=False)

    class Meta:
        model = EmailParameter
        fields = [
            "paramCode",
            "smtpServer",
            "smtpPort",
            "smtpAccountName",
            "smtpPassword",
            "hasPassword",
            "smtpMailId",
            "applicationName",
            "smtpSslFlag",
            "isActive",
        ]

    def get_hasPassword(self, obj) -> bool:
        return bool(obj.smtp_password)


def _param_fields(data: dict) -> dict:
    fields = {k: v for k, v in data.items() if k not in ("active", "param_code")}
    if "active" in data:
        fields["is_active"] = data["active"]
    return fields


class ConfigView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=ConfigSerializer)
    def get(self, request):
        """The schedule window, interval, timeouts, retries and batch size."""
        return Response(ConfigSerializer(services.service_get()).data)

    @extend_schema(request=ConfigSerializer, responses=ConfigSerializer)
    def put(self, request):
        """Change the configuration (PUT takes every field; PATCH some)."""
        serializer = ConfigSerializer(data=request.data, partial=request.method == "PATCH")
        serializer.is_valid(raise_exception=True)
        service = services.service_configure(**serializer.validated_data)
        return Response(ConfigSerializer(service).data)

    @extend_schema(request=ConfigSerializer, responses=ConfigSerializer)
    def patch(self, request):
        return self.put(request)


class StatusView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=StatusSerializer)
    def get(self, request):
        """running/stopped, started_at, last_activity, last_run, next_run."""
        return Response(StatusSerializer(selectors.service_status()).data)


class ServiceView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=ServiceActionSerializer, responses=StatusSerializer)
    def post(self, request):
        """Start or stop the service (remembered across restarts)."""
        serializer = ServiceActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["action"] == "start":
            service = schedule.service_start()
        else:
            service = schedule.service_stop()
        return Response(StatusSerializer(selectors.service_status(service=service)).data)


class ProcessView(APIView):
    permission_classes = [IsAdminUser]
    error_codes = {"post": {409: ["PROCESSOR_BUSY"]}}

    @extend_schema(request=None, responses=ProcessResultSerializer)
    def post(self, request):
        """Run one batch now (window and service state ignored); its counts."""
        from mailqueue.processor import process_batch

        result = process_batch(wait=10)
        if result.busy:
            raise ApplicationError(
                "PROCESSOR_BUSY", "Another processor is running; try again.", status=409
            )
        return Response(result.as_dict())


class TestMailView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=TestMailSerializer, responses=TestMailResultSerializer)
    def post(self, request):
        """Queue a test e-mail and send it at once; what really happened to it."""
        serializer = TestMailSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row, outcome = services.mail_send_test(
            email=serializer.validated_data["email"],
            param_code=serializer.validated_data.get("param_code") or None,
        )
        body = {"id": row.srno, "send_flag": row.send_flag, **outcome}
        return Response(TestMailResultSerializer(body).data)


class TestConnectionView(APIView):
    permission_classes = [IsAdminUser]
    error_codes = {"post": {503: ["LEGACY_DB_UNREACHABLE"]}}

    @extend_schema(request=None, responses=DatabaseCheckSerializer)
    def post(self, request):
        """Is the mail database reachable, and how fast (ms)?"""
        return Response(DatabaseCheckSerializer(services.legacy_test_connection()).data)


class DashboardView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=DashboardSerializer)
    def get(self, request):
        """Database, schedule, service, totals, queue counts, parameter-set health."""
        return Response(DashboardSerializer(selectors.dashboard()).data)


class QueueViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """The queue: filter with ?flag=N|Y|F, paramCode, to, since, until, search."""

    permission_classes = [IsAdminUser]
    error_codes = {"requeue": {409: ["MAIL_ALREADY_SENT"]}}
    serializer_class = QueueSerializer
    lookup_value_regex = r"\d+"  # dd_srno

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return selectors.queue_rows()
        params = self.request.query_params
        flag = params.get("flag")
        if flag and flag not in SendFlag.values:
            raise ApplicationError(
                "VALIDATION_ERROR", "Unknown flag.", {"flag": [f"One of {SendFlag.values}."]}
            )
        since, until = (self._date(params, name) for name in ("since", "until"))
        return selectors.queue_rows(
            flag=flag,
            param_code=params.get("paramCode"),
            to=params.get("to"),
            since=since,
            until=until,
            search=params.get("search"),
        )

    @staticmethod
    def _date(params, name):
        value = params.get(name)
        if not value:
            return None
        field = serializers.DateTimeField()
        try:
            return field.to_internal_value(value)
        except serializers.ValidationError as exc:
            raise ApplicationError("VALIDATION_ERROR", "Bad date.", {name: exc.detail})

    def perform_create(self, serializer):
        data = serializer.validated_data
        document = None
        if data.get("document"):
            try:
                document = base64.b64decode(data["document"], validate=True)
            except (binascii.Error, ValueError):
                raise ApplicationError(
                    "VALIDATION_ERROR", "Bad document.", {"document": ["Not valid base64."]}
                )
        serializer.instance = services.mail_enqueue(
            to=data["to_emails"],
            cc=data.get("cc_emails", ""),
            subject=data.get("subject") or "",
            body=data.get("body_text") or "",
            param_code=data.get("param_code") or None,
            document=document,
            filename=data.get("filename"),
        )
        serializer.instance.has_document = document is not None

    @extend_schema(request=None, responses=QueueSerializer)
    @action(detail=True, methods=["post"])
    def requeue(self, request, pk=None):
        """Send this e-mail again (back to N, retries reset)."""
        row = self.get_object()
        services.mail_requeue(srnos=[row.srno])
        return Response(QueueSerializer(self.get_queryset().get(pk=row.srno)).data)


class SmtpParamViewSet(viewsets.ModelViewSet):
    """SMTP parameter sets (tbl_EMailParameters); the password is write-only."""

    permission_classes = [IsAdminUser]
    error_codes = {"create": {409: ["PARAM_EXISTS"]}, "destroy": {409: ["PARAM_IN_USE"]}}
    serializer_class = SmtpParamSerializer
    queryset = EmailParameter.objects.all()
    lookup_field = "param_code"
    lookup_url_kwarg = "code"
    http_method_names = ["get", "post", "put", "patch", "delete"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = services.smtp_param_create(
            param_code=data.pop("param_code"),
            password=data.pop("smtpPassword", None),
            **_param_fields(data),
        )

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if "param_code" in data and data["param_code"] != serializer.instance.param_code:
            raise ApplicationError(
                "VALIDATION_ERROR",
                "The code cannot change.",
                {"paramCode": ["Create a new parameter set instead."]},
            )
        data.pop("param_code", None)
        serializer.instance = services.smtp_param_update(
            param=serializer.instance,
            password=data.pop("smtpPassword", None),
            **_param_fields(data),
        )

    def perform_destroy(self, instance):
        services.smtp_param_delete(param=instance)

"""GET /api/v1/audit/: the audit trail, for staff (thin view)."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser

from audit import selectors
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "actor_repr",
            "target_type",
            "target_id",
            "target_repr",
            "details",
            "ip",
        ]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(
        required=False,
        max_length=64,
        help_text="An action code (script.uploaded), or a family: script. or script.*",
    )
    actor = serializers.CharField(
        required=False, max_length=150, help_text="A user id or a username."
    )
    since = serializers.DateTimeField(required=False, help_text="Events at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="Events before this time.")
    target_type = serializers.CharField(
        required=False, max_length=100, help_text="e.g. scripts.script"
    )
    target_id = serializers.CharField(required=False, max_length=64)


@extend_schema(parameters=[AuditFilterSerializer])
class AuditEventListView(generics.ListAPIView):
    """Who did what, when: newest first, paginated, staff only."""

    permission_classes = [IsAdminUser]
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        filters = AuditFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.audit_event_list(**filters.validated_data)

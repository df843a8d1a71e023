"""Serializers of the scripts API (shapes only; rules live in services)."""

from rest_framework import serializers

from scripts import permissions
from scripts.models import Folder, Script, ScriptVersion


class FolderSerializer(serializers.ModelSerializer):
    """A folder with its own sharing settings and what the caller may do with it. Pass
    ``access`` (scripts.permissions.folder_access_map) in the context when listing."""

    owner = serializers.CharField(source="owner.username", read_only=True, default=None)
    read_groups = serializers.SerializerMethodField(
        help_text="Groups that may see it and run its scripts (its own setting)"
    )
    write_groups = serializers.SerializerMethodField(
        help_text="Groups that may also write into it (its own setting)"
    )
    can_read = serializers.SerializerMethodField()
    can_write = serializers.SerializerMethodField()
    can_share = serializers.SerializerMethodField()
    can_edit = serializers.SerializerMethodField(help_text="Same as can_write")

    class Meta:
        model = Folder
        fields = [
            "id",
            "name",
            "parent",
            "path",
            "owner",
            "inherit_permissions",
            "public",
            "read_groups",
            "write_groups",
            "can_read",
            "can_write",
            "can_share",
            "can_edit",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_read_groups(self, folder) -> list[str]:
        return sorted(g.name for g in folder.read_groups.all())

    def get_write_groups(self, folder) -> list[str]:
        return sorted(g.name for g in folder.write_groups.all())

    def _access(self, folder) -> permissions.FolderAccess:
        access = self.context.get("access", False)
        if access is None:  # staff
            return permissions.FULL_ACCESS
        if access is not False and folder.pk in access:
            return access[folder.pk]
        return permissions.folder_access(user=self.context["request"].user, folder=folder)

    def get_can_read(self, folder) -> bool:
        return self._access(folder).read

    def get_can_write(self, folder) -> bool:
        return self._access(folder).write

    def get_can_share(self, folder) -> bool:
        return self._access(folder).share

    def get_can_edit(self, folder) -> bool:
        return self._access(folder).write


class FolderWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    parent = serializers.IntegerField(allow_null=True, required=False)
    read_groups = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=1000,
        help_text="Group names that may see it and run its scripts (owner or staff)",
    )
    write_groups = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=1000,
        help_text="Group names that may also write into it (owner or staff)",
    )
    public = serializers.BooleanField(
        required=False, help_text="Every active user may see it (owner or staff)"
    )
    inherit_permissions = serializers.BooleanField(
        required=False,
        help_text="Take the parent's groups and 'public' (default for a new subfolder)",
    )

    SHARING = ("read_groups", "write_groups", "public", "inherit_permissions")


class VersionSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True, default=None)

    class Meta:
        model = ScriptVersion
        fields = ["number", "sha256", "size", "kind", "call_style", "uploaded_by", "created_at"]
        read_only_fields = fields


class ScriptSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True, default=None)
    current_version = VersionSerializer(read_only=True)
    can_edit = serializers.SerializerMethodField()

    class Meta:
        model = Script
        fields = [
            "id",
            "name",
            "display_name",
            "description",
            "folder",
            "logical_path",
            "owner",
            "enabled",
            "output_kind",
            "timeout_seconds",
            "memory_mb",
            "network_allowed",
            "extra_requirements",
            "current_version",
            "can_edit",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "logical_path",
            "owner",
            "current_version",
            "created_at",
            "updated_at",
        ]

    def get_can_edit(self, script) -> bool:
        return permissions.script_can_edit(
            user=self.context["request"].user,
            script=script,
            access_map=self.context.get("access", False),
        )


class ScriptUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False)
    folder = serializers.IntegerField(allow_null=True, required=False)
    display_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    output_kind = serializers.ChoiceField(Script.OutputKind.choices, required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    memory_mb = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    network_allowed = serializers.BooleanField(allow_null=True, required=False)
    extra_requirements = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, max_length=100
    )


class ScriptUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    display_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    folder = serializers.IntegerField(allow_null=True, required=False)
    replace = serializers.BooleanField(required=False, default=False)
    force = serializers.BooleanField(
        required=False, default=False, help_text="Accept a new version whose examples fail"
    )


class ExampleSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    inputs = serializers.JSONField(required=False, help_text="Function scripts: the data")
    args = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, allow_blank=True),
        required=False,
        help_text="Command scripts: the command line",
    )
    expected_result = serializers.JSONField(required=False, allow_null=True)
    expected_exit_code = serializers.IntegerField(required=False, allow_null=True)


class ContentSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    sha256 = serializers.CharField()
    source = serializers.CharField()


class SchemaSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    kind = serializers.CharField()
    call_style = serializers.CharField()
    input_schema = serializers.DictField()
    requirements = serializers.ListField(child=serializers.CharField())

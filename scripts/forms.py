"""Admin forms of the script library: they run the services' pure checks in clean() so
that a bad upload or a taken name shows as a form error; saving calls the services."""

from django import forms
from django.core.exceptions import ValidationError

from config.errors import ApplicationError
from scripts import services
from scripts.inspection import inspect_source
from scripts.models import Folder, Script


def _as_validation_error(exc: ApplicationError, field: str) -> ValidationError:
    return ValidationError({field: exc.message})


class FolderAdminForm(forms.ModelForm):
    class Meta:
        model = Folder
        fields = ["name", "parent", "inherit_permissions", "public", "read_groups", "write_groups"]

    def clean(self):
        data = super().clean()
        parent = data.get("parent")
        try:
            name = services._clean_folder_name(data.get("name", ""))
            services._check_folder_name_free(parent, name, exclude_pk=self.instance.pk)
        except ApplicationError as exc:
            raise _as_validation_error(exc, "name") from None
        if (
            self.instance.pk
            and parent is not None
            and (parent.pk == self.instance.pk or parent.path.startswith(self.instance.path + "/"))
        ):
            raise ValidationError({"parent": "A folder cannot move into itself."})
        data["name"] = name
        return data


class _SourceFileMixin:
    def clean_source_file(self):
        upload = self.cleaned_data.get("source_file")
        if not upload:
            return None
        from django.conf import settings

        content = upload.read(settings.SCRIPT_MAX_UPLOAD_BYTES + 1)
        try:
            name = services.validate_file_name(self._file_name(upload))
            source = services._decode(content, name)
            self.inspection = inspect_source(source, filename=name)
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None
        self.content = content
        return upload

    def _file_name(self, upload) -> str:
        return upload.name


class ScriptAddForm(_SourceFileMixin, forms.ModelForm):
    source_file = forms.FileField(label="Script file (.py)")

    class Meta:
        model = Script
        fields = ["folder", "display_name", "description"]

    def clean(self):
        data = super().clean()
        upload = data.get("source_file")
        if upload and Script.objects.filter(folder=data.get("folder"), name=upload.name).exists():
            raise ValidationError(
                {"source_file": "A script with this name exists there; replace it from its page."}
            )
        return data


class ScriptChangeForm(_SourceFileMixin, forms.ModelForm):
    source_file = forms.FileField(
        label="Replace source",
        required=False,
        help_text="Upload a new version (the file name is ignored; earlier versions stay).",
    )

    class Meta:
        model = Script
        fields = [*services.EDITABLE_SCRIPT_FIELDS, "owner"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "owner" in self.fields:  # scripts.services.script_owner_set: active users only
            self.fields["owner"].queryset = self.fields["owner"].queryset.filter(is_active=True)

    def _file_name(self, upload) -> str:
        return self.instance.name

    def clean(self):
        data = super().clean()
        name, folder = data.get("name"), data.get("folder")
        if name:
            try:
                services.validate_file_name(name)
                services._check_script_name_free(folder, name, self.instance.pk)
            except ApplicationError as exc:
                raise _as_validation_error(exc, "name") from None
        extra = data.get("extra_requirements")
        if extra is not None and not isinstance(extra, list):
            raise ValidationError({"extra_requirements": 'A JSON list, e.g. ["requests>=2"].'})
        return data

"""Admin of the script library: folders as a tree, scripts with their source, versions,
entry point, schema, requirements and runs; uploads and replacements go through the
services."""

import json

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.utils.html import format_html

from config.errors import ApplicationError
from scripts import selectors, services
from scripts.forms import FolderAdminForm, ScriptAddForm, ScriptChangeForm
from scripts.highlight import highlight
from scripts.models import (
    ExampleResult,
    Folder,
    Script,
    ScriptExample,
    ScriptParameter,
    ScriptVersion,
)


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(Folder)
class FolderAdmin(admin.ModelAdmin):
    form = FolderAdminForm
    """Folders with who may use them; saving goes through folder_create/folder_update
    and folder_share (the rules: scripts.permissions)."""

    list_display = ["tree_name", "path", "owner", "shared_with", "script_count"]
    list_select_related = ["owner"]
    search_fields = ["path"]
    ordering = ["path"]
    filter_horizontal = ["read_groups", "write_groups"]
    readonly_fields = ["path", "owner"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(n_scripts=Count("scripts", distinct=True))
            .prefetch_related("read_groups", "write_groups")
        )

    @admin.display(description="Folder", ordering="path")
    def tree_name(self, folder):
        depth = folder.path.count("/")
        return format_html("{}{} {}", "\u2003" * depth, "\U0001f4c1", folder.name)

    @admin.display(description="Shared with")
    def shared_with(self, folder):
        if folder.parent_id is not None and folder.inherit_permissions:
            return "as its parent"
        readers = ", ".join(g.name for g in folder.read_groups.all())
        writers = ", ".join(g.name for g in folder.write_groups.all())
        parts = ["everyone (read)" if folder.public else "", readers and f"read: {readers}"]
        parts.append(writers and f"write: {writers}")
        return "; ".join(p for p in parts if p) or "owner only"

    @admin.display(description="Scripts", ordering="n_scripts")
    def script_count(self, folder):
        return folder.n_scripts

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with transaction.atomic():
            if change:
                original = Folder.objects.get(pk=obj.pk)
                saved = services.folder_update(
                    user=request.user, folder=original, name=data["name"], parent=data["parent"]
                )
            else:
                saved = services.folder_create(
                    user=request.user, name=data["name"], parent=data["parent"]
                )
            services.folder_share(
                user=request.user,
                folder=saved,
                read_groups=[g.name for g in data.get("read_groups") or []],
                write_groups=[g.name for g in data.get("write_groups") or []],
                public=bool(data.get("public")),
                inherit_permissions=bool(data.get("inherit_permissions")),
            )
        for field in Folder._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        """The groups were saved by folder_share (not by the form's save_m2m)."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        try:
            services.folder_delete(user=request.user, folder=obj, recursive=True)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request, queryset):
        for folder in queryset.order_by("-path"):  # children first
            if Folder.objects.filter(pk=folder.pk).exists():
                try:
                    services.folder_delete(user=request.user, folder=folder, recursive=True)
                except ApplicationError as exc:
                    self.message_user(request, f"{folder.path}: {exc.message}", messages.ERROR)


class ScriptParameterInline(admin.TabularInline):
    model = ScriptParameter
    extra = 0
    fields = [
        "position",
        "name",
        "flag",
        "type",
        "required",
        "default",
        "choices",
        "minimum",
        "maximum",
        "pattern",
        "help",
    ]
    verbose_name_plural = "Parameters (command scripts: they give the schema and argv)"


class ScriptExampleForm(forms.ModelForm):
    class Meta:
        model = ScriptExample
        fields = ["name", "inputs", "args", "expected_result", "expected_exit_code"]

    def clean(self):
        """The rule of ``services.example_create``: an example expects something."""
        data = super().clean()
        if data.get("expected_result") is None and data.get("expected_exit_code") is None:
            raise forms.ValidationError("Give an expected result or an expected exit code.")
        args = data.get("args")
        if args is not None and not (
            isinstance(args, list) and all(isinstance(a, str) for a in args)
        ):
            raise forms.ValidationError({"args": "A list of strings (the command line)."})
        if data.get("inputs") is not None and not isinstance(data.get("inputs"), dict):
            raise forms.ValidationError({"inputs": "An object (the run's data)."})
        return data


class ScriptExampleInline(admin.TabularInline):
    model = ScriptExample
    form = ScriptExampleForm
    extra = 0
    verbose_name_plural = "Examples (every new version must pass them; see each version)"


class ExampleResultInline(admin.TabularInline):
    model = ExampleResult
    extra = 0
    can_delete = False
    fields = ["example_name", "passed", "detail", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "Example results of this version"

    def has_add_permission(self, request, obj=None):
        return False


class ScriptVersionInline(admin.TabularInline):
    model = ScriptVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["number", "sha256", "size", "kind", "call_style", "uploaded_by", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("uploaded_by").defer("source")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Script)
class ScriptAdmin(admin.ModelAdmin):
    list_display = [
        "logical_path",
        "display_name",
        "owner",
        "enabled",
        "kind",
        "version",
        "output_kind",
    ]
    list_select_related = ["owner", "current_version"]
    list_filter = ["enabled", "output_kind", "current_version__kind"]
    search_fields = ["logical_path", "display_name", "description"]
    readonly_fields = [
        "logical_path",
        "entry_point",
        "input_schema",
        "requirements",
        "warnings_",
        "runs",
        "source",
    ]
    change_form_template = None

    def get_queryset(self, request):
        return super().get_queryset(request).defer("current_version__source")

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = ScriptChangeForm if obj else ScriptAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["source_file", "folder", "display_name", "description"]
        return [*ScriptChangeForm.Meta.fields, "source_file", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_inlines(self, request, obj):
        return [ScriptParameterInline, ScriptExampleInline, ScriptVersionInline] if obj else []

    @admin.display(description="Kind", ordering="current_version__kind")
    def kind(self, script):
        return script.current_version.kind if script.current_version else "-"

    @admin.display(description="Version", ordering="current_version__number")
    def version(self, script):
        return script.current_version.number if script.current_version else "-"

    def _current(self, script):
        return ScriptVersion.objects.filter(pk=script.current_version_id).first()

    @admin.display(description="Entry point")
    def entry_point(self, script):
        version = self._current(script)
        if version is None:
            return "no version"
        return f"{version.get_kind_display()}; {version.get_call_style_display()}"

    @admin.display(description="Input schema")
    def input_schema(self, script):
        version = self._current(script)
        return _pretty_json(selectors.script_version_schema(version=version)) if version else "-"

    @admin.display(description="Requirements")
    def requirements(self, script):
        version = self._current(script)
        if version is None:
            return "-"
        return ", ".join(selectors.script_version_requirements(version=version)) or "none"

    @admin.display(description="Notes from inspection")
    def warnings_(self, script):
        version = self._current(script)
        if version is None:
            return "-"
        from scripts.inspection import inspect_source

        found = inspect_source(version.source, filename=script.name).warnings
        return format_html("<br>".join(["{}"] * len(found)), *found) if found else "none"

    @admin.display(description="Runs")
    def runs(self, script):
        return selectors.script_run_count(script=script)

    @admin.display(description="Source (current version)")
    def source(self, script):
        version = self._current(script)
        return highlight(version.source) if version else "-"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            upload = data["source_file"]
            version = services.script_upload(
                user=request.user,
                file_name=upload.name,
                content=form.content,
                folder=data.get("folder"),
                display_name=data.get("display_name", ""),
                description=data.get("description", ""),
            )
            saved = version.script
        else:
            original = Script.objects.get(pk=obj.pk)
            fields = {f: data[f] for f in form.changed_data if f in ScriptChangeForm.Meta.fields}
            owner = fields.pop("owner", _missing := object())
            with transaction.atomic():
                saved = services.script_update(user=request.user, script=original, **fields)
                if owner is not _missing:
                    services.script_owner_set(user=request.user, script=saved, owner=owner)
            if data.get("source_file"):
                version = services.script_upload(
                    user=request.user,
                    file_name=saved.name,
                    content=form.content,
                    folder=saved.folder,
                    replace=True,
                )
                if not version.is_new:
                    self.message_user(request, "The uploaded source is identical; no new version.")
            saved.refresh_from_db()
        for field in Script._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def delete_view(self, request, object_id, extra_context=None):
        script = Script.objects.filter(pk=object_id).first()
        if script is not None:
            runs = selectors.script_run_count(script=script)
            extra_context = {**(extra_context or {}), "runs_kept": runs}
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        try:
            runs = services.script_delete(user=request.user, script=obj)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{runs} run(s) of {obj.logical_path} are kept.")

    def delete_queryset(self, request, queryset):
        """Each script through script_delete; one that may not go is reported (the
        others still go), never a 500 page."""
        for script in queryset:
            try:
                services.script_delete(user=request.user, script=script)
            except ApplicationError as exc:
                self.message_user(request, f"{script.logical_path}: {exc.message}", messages.ERROR)


@admin.register(ScriptVersion)
class ScriptVersionAdmin(admin.ModelAdmin):
    list_display = [
        "script",
        "number",
        "kind",
        "call_style",
        "sha256",
        "size",
        "uploaded_by",
        "created_at",
    ]
    list_select_related = ["script", "uploaded_by"]
    list_filter = ["kind"]
    search_fields = ["script__logical_path", "sha256"]
    fields = [
        "script",
        "number",
        "sha256",
        "size",
        "kind",
        "call_style",
        "uploaded_by",
        "created_at",
        "schema",
        "requirements",
        "highlighted_source",
    ]
    readonly_fields = fields
    inlines = [ExampleResultInline]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).defer("source")
            if request.resolver_match and (request.resolver_match.url_name.endswith("changelist"))
            else super().get_queryset(request)
        )

    @admin.display(description="Input schema (as uploaded)")
    def schema(self, version):
        return _pretty_json(version.input_schema)

    @admin.display(description="Source")
    def highlighted_source(self, version):
        return highlight(version.source)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

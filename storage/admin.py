"""Admin of the storage app: files (owner, size, type, run, download) and pending
deletions. Files are made by uploads and runs, never typed in; deleting goes through
storage.services so that objects go with their rows."""

from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from storage import services
from storage.models import PendingDeletion, StoredFile


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = [
        "original_name",
        "key",
        "owner",
        "human_size",
        "content_type",
        "run",
        "created_at",
        "download",
    ]
    list_select_related = ["owner", "execution"]
    list_filter = ["content_type", ("execution", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["key", "original_name", "owner__username", "sha256"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "key",
        "original_name",
        "human_size",
        "content_type",
        "sha256",
        "owner",
        "run",
        "created_at",
        "download",
    ]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="size", ordering="size")
    def human_size(self, obj):
        return filesizeformat(obj.size)

    @admin.display(description="produced by run", ordering="execution")
    def run(self, obj):
        if obj.execution_id is None:
            return "-"
        url = reverse("admin:executions_execution_change", args=[obj.execution_id])
        return format_html('<a href="{}">#{}</a>', url, obj.execution_id)

    @admin.display(description="download")
    def download(self, obj):
        url = reverse("file", kwargs={"key": obj.key})
        return format_html('<a href="{}">download</a>', url)

    def delete_model(self, request, obj):
        services.file_delete(stored_file=obj)

    def delete_queryset(self, request, queryset):
        for stored in queryset:
            services.file_delete(stored_file=stored)


@admin.register(PendingDeletion)
class PendingDeletionAdmin(admin.ModelAdmin):
    """Objects whose rows are gone but whose deletion failed; storage_cleanup retries."""

    list_display = ["key", "created_at", "attempts", "last_error"]
    search_fields = ["key"]
    readonly_fields = ["key", "created_at", "attempts", "last_error"]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry deleting the objects now")
    def retry(self, request, queryset):
        keys = list(queryset.values_list("key", flat=True))
        done = sum(services.pending_deletion_process(key=key) for key in keys)
        level = messages.SUCCESS if done == len(keys) else messages.WARNING
        self.message_user(request, f"{done} of {len(keys)} objects deleted.", level)

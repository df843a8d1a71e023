"""The audit trail in the admin: read-only for staff, filters and search."""

from django.contrib import admin

from audit.models import AuditEvent


class ActionFamilyFilter(admin.SimpleListFilter):
    """By family (script, run, auth...): the part of the action before the dot."""

    title = "area"
    parameter_name = "area"

    def lookups(self, request, model_admin):
        actions = AuditEvent.objects.order_by().values_list("action", flat=True).distinct()
        families = sorted({a.split(".", 1)[0] for a in actions})
        return [(f, f) for f in families]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=f"{self.value()}.")
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_repr", "action", "target_type", "target_repr", "ip"]
    list_filter = [ActionFamilyFilter, "action", ("actor", admin.RelatedOnlyFieldListFilter)]
    date_hierarchy = "created_at"
    search_fields = ["actor_repr", "action", "target_repr", "target_id", "ip"]
    readonly_fields = [
        "created_at",
        "actor",
        "actor_repr",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "details",
        "ip",
    ]
    fields = readonly_fields
    list_select_related = ["actor"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

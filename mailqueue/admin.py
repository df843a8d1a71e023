"""Admin of the mail queue: the queue (filters, attachment download, requeue and
send-now actions), SMTP parameter sets (write-only password, test e-mail action) and a
dashboard page. Every action calls a service."""

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from config.errors import ApplicationError
from mailqueue import selectors, services
from mailqueue.models import EmailDetail, EmailParameter, MailService, SslFlag


@admin.register(EmailDetail)
class EmailDetailAdmin(admin.ModelAdmin):
    list_display = [
        "srno",
        "to_emails",
        "subject",
        "send_flag",
        "retry_count",
        "sent_date",
        "param_code",
        "attachment",
        "bounce_reason",
    ]
    list_filter = ["send_flag", "sent_date", "last_retry_date", "param_code"]
    list_select_related = False  # no relations: the legacy table stands alone
    search_fields = ["to_emails", "cc_emails", "subject"]
    actions = ["requeue", "send_now"]
    readonly_fields = [
        "srno",
        "send_flag",
        "retry_count",
        "sent_date",
        "bounce_reason",
        "last_retry_date",
        "attachment",
    ]
    fields = [
        "srno",
        "to_emails",
        "cc_emails",
        "subject",
        "body_text",
        "param_code",
        "attachment",
        "send_flag",
        "retry_count",
        "sent_date",
        "last_retry_date",
        "bounce_reason",
    ]

    def get_queryset(self, request):
        return selectors.queue_rows()

    def has_add_permission(self, request):
        return False  # e-mails enter through the backend, the API or other systems

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="attachment")
    def attachment(self, obj):
        if not getattr(obj, "has_document", False):
            return "-"
        url = reverse("admin:mailqueue_emaildetail_document", args=[obj.srno])
        return format_html('<a href="{}">{}</a>', url, obj.filename or "attachment")

    def get_urls(self):
        urls = [
            path(
                "<int:srno>/document/",
                self.admin_site.admin_view(self.document_view),
                name="mailqueue_emaildetail_document",
            ),
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="mailqueue_dashboard",
            ),
        ]
        return urls + super().get_urls()

    def document_view(self, request, srno):
        """Download a row's dd_document as dd_filename."""
        if not self.has_view_permission(request):
            raise Http404
        row = EmailDetail.objects.filter(pk=srno).values("document", "filename").first()
        if not row or row["document"] is None:
            raise Http404("No attachment.")
        import mimetypes

        name = row["filename"] or f"attachment-{srno}.bin"
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = HttpResponse(bytes(row["document"]), content_type=mimetype)
        response["Content-Disposition"] = f'attachment; filename="{name.replace(chr(34), "")}"'
        return response

    def dashboard_view(self, request):
        """Database, schedule, service, totals and parameter-set health."""
        if not self.has_view_permission(request):
            raise Http404
        context = {
            **self.admin_site.each_context(request),
            "title": "Mail queue dashboard",
            "dashboard": selectors.dashboard(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/mailqueue/dashboard.html", context)

    @admin.action(description="Requeue (send again, retries reset)")
    def requeue(self, request, queryset):
        try:
            count = services.mail_requeue(srnos=list(queryset.values_list("srno", flat=True)))
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        else:
            self.message_user(request, f"{count} e-mail(s) requeued.")

    @admin.action(description="Send now")
    def send_now(self, request, queryset):
        result = services.mail_send_now(srnos=list(queryset.values_list("srno", flat=True)))
        level = messages.SUCCESS if not (result.failed or result.deferred) else messages.WARNING
        counts = ", ".join(f"{k} {v}" for k, v in result.as_dict().items() if k != "busy")
        self.message_user(request, f"Send now: {counts}.", level)


class EmailParameterForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored password.",
    )
    clear_password = forms.BooleanField(required=False)
    # The same values the API accepts (one definition: mailqueue.models.SslFlag).
    smtp_ssl_flag = forms.ChoiceField(choices=SslFlag.choices, initial=SslFlag.NO)

    class Meta:
        model = EmailParameter
        fields = ["param_code", *services.PARAM_FIELDS]


@admin.register(EmailParameter)
class EmailParameterAdmin(admin.ModelAdmin):
    form = EmailParameterForm
    list_display = [
        "param_code",
        "smtp_server",
        "smtp_port",
        "smtp_mail_id",
        "smtp_ssl_flag",
        "is_active",
        "health",
    ]
    list_select_related = False
    actions = ["send_test"]

    def get_readonly_fields(self, request, obj=None):
        return ["param_code"] if obj else []

    @admin.display(description="health")
    def health(self, obj):
        health = {p["param_code"]: p for p in selectors.param_health()}.get(obj.param_code)
        if not health or health["status"] == "unknown":
            return "-"
        return health["status"] + (f": {health['last_error']}" if health["last_error"] else "")

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in services.PARAM_FIELDS}
        password = form.cleaned_data.get("password") or None
        if form.cleaned_data.get("clear_password"):
            password = ""
        try:
            if change:
                fresh = EmailParameter.objects.get(pk=obj.pk)
                services.smtp_param_update(param=fresh, password=password, **data)
            else:
                services.smtp_param_create(
                    param_code=form.cleaned_data["param_code"], password=password, **data
                )
        except ApplicationError as exc:
            self.message_user(request, f"{exc.message} {exc.details}", messages.ERROR)

    def delete_model(self, request, obj):
        try:
            services.smtp_param_delete(param=obj)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request, queryset):
        """The "Delete selected" action: each set through smtp_param_delete (the in-use rule); a
        set that waiting mail still uses stays, with a message."""
        for param in queryset:
            try:
                services.smtp_param_delete(param=param)
            except ApplicationError as exc:
                self.message_user(request, f"{param.param_code}: {exc.message}", messages.ERROR)

    @admin.action(description="Send a test e-mail to me")
    def send_test(self, request, queryset):
        if not request.user.email:
            self.message_user(request, "Your account has no e-mail address.", messages.ERROR)
            return
        for param in queryset:
            row, outcome = services.mail_send_test(
                email=request.user.email, param_code=param.param_code
            )
            level = {"sent": messages.SUCCESS, "queued": messages.WARNING}.get(
                outcome["status"], messages.ERROR
            )
            text = f"{param.param_code}: {outcome['status']}: {outcome['message']}"
            self.message_user(request, f"{text} {outcome['reason']}".strip(), level)


class MailServiceForm(forms.ModelForm):
    """The service's configuration; its rules are the service's (the same as the
    API's): the ranges of CONFIG_LIMITS and service_config_errors."""

    class Meta:
        model = MailService
        fields = list(services.CONFIG_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (low, high) in services.CONFIG_LIMITS.items():
            self.fields[name].widget.attrs.update(min=low, max=high)

    def clean(self):
        cleaned = super().clean()
        changes = {
            name: cleaned[name]
            for name in self.changed_data
            if name in services.CONFIG_FIELDS and name in cleaned
        }
        errors = services.service_config_errors(changes, service=self.instance)
        for name, messages_ in errors.items():
            self.add_error(name if name in self.fields else None, messages_)
        return cleaned


@admin.register(MailService)
class MailServiceAdmin(admin.ModelAdmin):
    """The one configuration row: the window, interval, timeouts, retries and batch
    size (saved through services.service_configure), and the state, read-only."""

    form = MailServiceForm
    state_fields = [
        "is_started",
        "started_at",
        "stopped_at",
        "last_activity",
        "last_run",
        "total_processed",
        "total_sent",
        "total_failed",
        "total_retried",
    ]
    readonly_fields = state_fields
    fieldsets = [
        ("Configuration", {"fields": list(services.CONFIG_FIELDS)}),
        ("State", {"fields": state_fields}),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        service = services.service_get()
        return HttpResponseRedirect(
            reverse("admin:mailqueue_mailservice_change", args=[service.pk])
        )

    def save_model(self, request, obj, form, change):
        changes = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.CONFIG_FIELDS
        }
        try:
            services.service_configure(**changes)
        except ApplicationError as exc:  # changed meanwhile; the form checked the rest
            self.message_user(request, f"{exc.message} {exc.details}", messages.ERROR)

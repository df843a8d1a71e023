from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender, using="default", **kwargs):
    if using != "default":
        return
    from mailqueue.schedule import service_ensure

    service_ensure()


class MailqueueConfig(AppConfig):
    verbose_name = "Mail queue"
    name = "mailqueue"

    def ready(self):
        from config.registry import register_admin_panel, register_health_check
        from mailqueue import selectors, services
        from vault.hooks import register_rotator

        register_rotator("SMTP password(s)", services.smtp_passwords_rotate)  # rotate_secrets
        register_health_check("mail")(selectors.health_check)
        register_admin_panel("mail")(selectors.admin_panel)
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="mailqueue.ensure")

from django.apps import AppConfig


def _after_migrate(using: str) -> None:
    from mailqueue.schedule import service_ensure

    service_ensure()


class MailqueueConfig(AppConfig):
    verbose_name = "Mail queue"
    name = "mailqueue"

    def ready(self):
        from config.registry import (
            register_admin_panel,
            register_after_migrate,
            register_health_check,
        )
        from mailqueue import selectors, services
        from vault.hooks import register_rotator

        register_rotator("SMTP password(s)", services.smtp_passwords_rotate)  # rotate_secrets
        register_health_check("mail")(selectors.health_check)
        register_admin_panel("mail")(selectors.admin_panel)
        register_after_migrate("mailqueue")(_after_migrate)

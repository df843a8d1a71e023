from django.apps import AppConfig


class MailqueueConfig(AppConfig):
    verbose_name = "Mail queue"
    name = "mailqueue"

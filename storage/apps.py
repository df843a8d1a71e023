from django.apps import AppConfig


class StorageConfig(AppConfig):
    verbose_name = "Files"
    name = "storage"

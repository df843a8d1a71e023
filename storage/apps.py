from django.apps import AppConfig


class StorageConfig(AppConfig):
    verbose_name = "Files"
    name = "storage"

    def ready(self):
        from storage import hooks, signals

        signals.connect()
        hooks.register()

from django.apps import AppConfig


class ScriptsConfig(AppConfig):
    verbose_name = "Script library"
    name = "scripts"

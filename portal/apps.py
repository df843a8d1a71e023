from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Pages for people who are not staff: scripts, run forms, runs, history.
    Also draws the admin index's charts (registered as admin panels)."""

    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from config.registry import register_admin_panel
        from portal import charts

        register_admin_panel("runs_chart")(charts.runs_panel)
        register_admin_panel("mail_chart")(charts.mail_panel)

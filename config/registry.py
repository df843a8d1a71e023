"""Extension points that apps fill from ``AppConfig.ready()``: health checks and the
panels shown on the admin index. Keeps /health/ and the admin index free of app code."""

from collections.abc import Callable
from typing import Any

HealthCheck = Callable[[], dict[str, Any]]
AdminPanel = Callable[[Any], dict[str, Any] | None]

health_checks: dict[str, HealthCheck] = {}
admin_panels: dict[str, AdminPanel] = {}


def register_health_check(name: str) -> Callable[[HealthCheck], HealthCheck]:
    """Register ``fn() -> {"ok": bool, ...}`` under ``name`` in /health/'s checks.
    A check that raises counts as failed."""

    def decorator(fn: HealthCheck) -> HealthCheck:
        health_checks[name] = fn
        return fn

    return decorator


def register_admin_panel(name: str) -> Callable[[AdminPanel], AdminPanel]:
    """Register ``fn(request) -> {"title": str, "rows": [(label, value), ...]}`` to be
    shown on the admin index (None hides the panel)."""

    def decorator(fn: AdminPanel) -> AdminPanel:
        admin_panels[name] = fn
        return fn

    return decorator

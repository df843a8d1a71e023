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


# --- After migrate: one way for every app to set up what must exist (schedules...) ---
AfterMigrate = Callable[[str], None]
after_migrate_steps: dict[str, list[AfterMigrate]] = {}


def register_after_migrate(app_label: str) -> Callable[[AfterMigrate], AfterMigrate]:
    """Register ``fn(using)`` to run after ``migrate`` has migrated ``app_label`` (on
    the default database). Idempotent steps only: it runs on every migrate."""

    def decorator(fn: AfterMigrate) -> AfterMigrate:
        steps = after_migrate_steps.setdefault(app_label, [])
        if fn not in steps:
            steps.append(fn)
        return fn

    return decorator


def register_schedule(
    app_label: str, *, name: str, func: str, every_minutes: int | None = None, daily=False
) -> None:
    """A django-q2 schedule of ``app_label`` (every N minutes, or daily) that exists
    after every migrate; an existing one is left as the operator changed it."""
    if (every_minutes is None) == (not daily):
        raise ValueError("give every_minutes or daily=True")

    def ensure(using: str) -> None:
        from django_q.models import Schedule

        kind = {"schedule_type": Schedule.DAILY} if daily else {
            "schedule_type": Schedule.MINUTES, "minutes": every_minutes,
        }  # fmt: skip
        Schedule.objects.using(using).get_or_create(
            name=name, defaults={"func": func, "repeats": -1, **kind}
        )

    ensure.__qualname__ = f"ensure_schedule[{name}]"
    register_after_migrate(app_label)(ensure)


def run_after_migrate(sender, app_config=None, using="default", **kwargs) -> None:
    """The post_migrate receiver (connected once, by config's AppConfig): the steps
    registered for the app just migrated."""
    if app_config is None or using != "default":
        return
    for step in after_migrate_steps.get(app_config.label, []):
        step(using)

"""The sandbox on /health/ ("sandbox" check) and on the admin index ("Sandbox" panel):
the backend in use and what protects a run (uid, namespaces, network, rlimits)."""

import os
import stat
from pathlib import Path

from django.conf import settings

from config.registry import register_admin_panel, register_health_check

from .runner import sandbox


def _reachable(path: Path) -> bool:
    """Every existing ancestor of ``path`` is searchable by other users (the run uid)."""
    current = path
    while not current.exists() and current.parent != current:
        current = current.parent
    for part in [current, *current.parents]:
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    return True


@register_health_check("sandbox")
def check_sandbox() -> dict:
    """ok when the configured backend can run and, when scripts run as another uid,
    the workspaces and environments directories are reachable by it."""
    info = sandbox.describe()
    info["ok"] = bool(info["backend"])
    if sandbox.run_user() is not None:
        for name in ("WORKSPACES_DIR", "ENVS_DIR"):
            reachable = _reachable(Path(getattr(settings, name)))
            info[f"{name.lower()}_reachable"] = reachable
            # The runner makes DATA_DIR's own directories reachable on first use;
            # a parent outside DATA_DIR that is not is a deployment error.
            data_dir = Path(settings.DATA_DIR)
            if not reachable and not _reachable(data_dir.parent):
                info["ok"] = False
    return info


@register_admin_panel("sandbox")
def sandbox_panel(request) -> dict | None:
    """Rows for staff: backend, uid, namespaces, network and the rlimits."""
    if not getattr(request.user, "is_staff", False):
        return None
    info = sandbox.describe()
    rows = [
        ("Backend", info["backend"] or f"unavailable: {info.get('bwrap_problem', '')}"),
        ("Available", ", ".join(info["available"])),
        ("Runs as uid", f"{info['uid']}" + ("" if info["unprivileged"] else " (root!)")),
        ("Namespaces", ", ".join(info["namespaces"]) or "none (rlimit backend)"),
        (
            "Network",
            f"{info['network_default']} by default; "
            + ("blocked when off" if info["network_enforced"] else "NOT enforced by rlimit"),
        ),
    ]
    rows += [(name, str(value)) for name, value in info["rlimits"].items()]
    if info.get("bwrap_problem"):
        rows.append(("bubblewrap", info["bwrap_problem"]))
    return {"title": "Sandbox", "rows": rows}

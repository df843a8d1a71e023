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
    """ok when a backend can run scripts; ``isolating`` says whether it keeps runs away
    from the server (ns, bwrap) or only limits their resources (rlimit). Under rlimit
    with its own run uids, the workspaces and environments must be reachable by them."""
    info = sandbox.describe()
    info["ok"] = bool(info["backend"])
    if info["backend"] == "rlimit" and os.geteuid() == 0:
        for name in ("WORKSPACES_DIR", "ENVS_DIR"):
            reachable = _reachable(Path(getattr(settings, name)))
            info[f"{name.lower()}_reachable"] = reachable
            # The runner makes DATA_DIR's own directories reachable on first use;
            # a parent outside DATA_DIR that is not is a deployment error.
            data_dir = Path(settings.DATA_DIR)
            if not reachable and not _reachable(data_dir.parent):
                info["ok"] = False
                info["problem"] = (
                    f"{data_dir.parent} is not searchable by other users: the rlimit backend's "
                    "run uids cannot reach the environments (use ns or bwrap, or move DATA_DIR)"
                )
    return info


def sandbox_rows() -> list[tuple[str, str]]:
    """What protects runs, in plain words (the admin index, ``manage.py sandbox``)."""
    info = sandbox.describe()
    backend = info["backend"] or f"unavailable: {info.get('problem', '')}"
    if info["backend"]:
        backend += " (isolates runs)" if info["isolating"] else " (limits resources only!)"
    rows = [
        ("Backend", backend),
        ("Available", ", ".join(info["available"])),
        ("Runs as", str(info["uid"])),
        ("Namespaces", ", ".join(info["namespaces"]) or "none"),
        ("Per-run cgroup", info["cgroup"]),
        (
            "Network",
            f"{info['network_default']} by default; "
            + (
                "own loopback only, allowed traffic through the policy proxy"
                if info["network_enforced"]
                else "NOT isolated (the host's network)"
            ),
        ),
    ]
    if info.get("warning"):
        rows.append(("Warning", info["warning"]))
    rows += [(name, str(value)) for name, value in info["rlimits"].items()]
    for name in ("ns", "bwrap"):
        if info.get(f"{name}_problem"):
            rows.append((f"{name} unavailable", info[f"{name}_problem"]))
    return rows


@register_admin_panel("sandbox")
def sandbox_panel(request) -> dict | None:
    """Rows for staff: backend, uid, namespaces, cgroup, network and the rlimits."""
    if not getattr(request.user, "is_staff", False):
        return None
    return {"title": "Sandbox", "rows": sandbox_rows()}

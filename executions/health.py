"""The sandbox on /health/ ("sandbox" check) and on the admin index ("Sandbox" panel):
the backend in use and what protects a run (uid, namespaces, network, rlimits). Warm
templates likewise ("warm_templates" check, "Warm templates" panel, linking to the
admin's page of them: executions/admin_warm.py)."""

import os
import stat
from pathlib import Path

from django.conf import settings
from django.urls import reverse
from django.utils.html import format_html

from config.registry import register_admin_panel, register_health_check

from .runner import sandbox, templates


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


# --- Warm templates (issue 10) --------------------------------------------------------


def warm_problem() -> str:
    """'' when runs fork from warm templates here, else why not: RUN_WARM off, not
    root, no cgroups, an old kernel (templates.problem) or a backend other than ns."""
    problem = templates.problem()
    if problem:
        return problem
    try:
        backend = sandbox.backend_name()
    except sandbox.SandboxUnavailable as exc:
        return f"needs the ns backend ({exc}; runs are cold)"
    return "" if backend == "ns" else f"needs the ns backend (the backend is {backend})"


def warm_templates() -> list[dict]:
    """templates.status() of this instance: [] where warm runs were never possible
    (RUN_WARM off, not root: RUN_WARM_DIR is root's), so nothing is read or made then.
    The figures come from the sandboxed templates: escape them wherever they are shown."""
    if templates.problem():
        return []
    return templates.status()


@register_health_check("warm_templates")
def check_warm_templates() -> dict:
    """Always ok: a template that failed or is missing only makes runs start cold, which
    serves them (slower), so it never makes /health/ degraded. ``enabled`` says whether
    runs fork from warm templates here (``problem`` says why not); ``templates`` lists
    this instance's, as they report themselves (their preloaded module names are left
    out: /health/ is public, the admin's page shows them)."""
    problem = warm_problem()
    try:
        rows = warm_templates()
    except OSError as exc:  # RUN_WARM_DIR unreadable: reported, still ok
        rows, problem = [], problem or f"cannot read RUN_WARM_DIR ({exc.__class__.__name__})"
    shown = [
        {
            **{k: v for k, v in row.items() if k not in ("key", "preloaded")},
            "preloaded_count": len(row["preloaded"]),
        }
        for row in rows
    ]
    return {"ok": True, "enabled": not problem, "problem": problem, "templates": shown}


def duration_text(seconds) -> str:
    """12 s, 3 min 4 s, 2 h 5 min; "-" for None."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def memory_text(kb) -> str:
    """45.2 MB; "-" for None."""
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def warm_summary(rows: list[dict]) -> str:
    """e.g. "2 ready, 1 starting" or "none"."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


@register_admin_panel("warm_templates")
def warm_panel(request) -> dict | None:
    """For staff: whether runs fork warm here, one row per template (environment: state,
    runs served, memory, age) and a link to the page with every detail."""
    if not getattr(request.user, "is_staff", False):
        return None
    problem = warm_problem()
    rows = warm_templates()
    lines = [
        ("Warm runs", problem or "on"),
        ("Templates", warm_summary(rows)),
    ]
    for row in rows[:8]:
        runs = "-" if row["runs"] is None else row["runs"]
        lines.append(
            (
                row["environment"][:12],
                f"{row['state']}, {runs} runs, {memory_text(row['memory_kb'])}, "
                f"{duration_text(row['age_seconds'])} old",
            )
        )
    url = reverse("admin:executions_warm_templates")
    lines.append(("Details", format_html('<a href="{}">Warm templates</a>', url)))
    return {"title": "Warm templates", "rows": lines}

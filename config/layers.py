"""The one place that says which app may import which (``manage.py import_graph``
checks it; tests/config/test_import_graph.py runs that check in CI).

Apps are in layers, lowest first. An app may import the apps of the layers below its
own, never those of its own layer or above: the apps above plug into the ones below
through hooks, signals and registries the lower app offers (scripts.hooks,
config.registry, Django signals), or by string references Django resolves (model
foreign keys "executions.Execution", url includes, task names).
"""

LAYERS: list[tuple[str, ...]] = [
    ("config",),  # settings, errors, the API's plumbing, registries, health
    ("audit",),  # the audit trail: every app may record an event
    ("accounts",),  # users, invitations, API keys; the one definition of staff/active
    ("storage", "vault"),  # files; secrets
    ("scripts",),  # the library: folders, scripts, versions, permissions
    ("mailqueue",),  # the legacy mail queue; the EMAIL_BACKEND run reports go through
    ("executions",),  # runs: they use scripts, storage, vault (and mail via Django)
    ("jobs",),  # schedules and pipelines of runs
    ("portal",),  # pages for people: reads every app below
]

# Import cycles between the modules of one app that are known and not yet undone:
# the check lists them as known and fails on any other cycle (and on these once they
# change). Each one says why it is here. Remove an entry when its cycle is gone.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def layer_of(app: str) -> int | None:
    """The layer number of ``app`` (0 = lowest), or None for a package without one."""
    for number, apps in enumerate(LAYERS):
        if app in apps:
            return number
    return None


def project_apps() -> list[str]:
    """Every layered app, lowest layer first."""
    return [app for apps in LAYERS for app in apps]

"""Apps import downward only (config/layers.py) and no app has an import cycle: the
check of ``manage.py import_graph`` runs here, so both CI runs execute it."""

import textwrap
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from config import import_graph


def test_the_project_imports_downward_only_without_cycles():
    graph = import_graph.build(settings.BASE_DIR)
    assert graph.upward == [], import_graph.render(graph)
    assert graph.cycles == [], import_graph.render(graph)
    # what issue 14 saw is gone
    assert "executions" not in graph.apps["scripts"]
    assert "executions" not in graph.apps["storage"]
    assert "mailqueue" not in graph.apps["vault"]


def test_the_command_prints_the_graph_and_says_ok():
    out = StringIO()
    call_command("import_graph", stdout=out)
    text = out.getvalue()
    assert "executions -> " in text and "scripts" in text.split("executions -> ")[1]
    assert text.rstrip().endswith("OK")


def _write(root, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


@pytest.fixture
def bad_project(tmp_path):
    _write(
        tmp_path,
        {
            "config/__init__.py": "",
            "scripts/__init__.py": "",
            "scripts/admin.py": """
                def run_page():
                    from executions.services import start  # function-level counts too
            """,
            "scripts/models.py": "from config import errors\n",
            "executions/__init__.py": "",
            "executions/services.py": "from . import selectors\nfrom scripts import models\n",
            "executions/selectors.py": "def f():\n    from executions.services import x\n",
        },
    )
    (tmp_path / "config/errors.py").write_text("")
    return tmp_path


def test_an_upward_import_and_a_cycle_are_found(bad_project):
    graph = import_graph.build(bad_project, apps=["config", "scripts", "executions"])
    assert not graph.ok
    assert [(e.source, e.target, e.path, e.line) for e in graph.upward] == [
        ("scripts.admin", "executions.services", "scripts/admin.py", 3)
    ]
    assert graph.cycles == [["executions.selectors", "executions.services"]]
    assert graph.apps["executions"] == {"scripts": graph.apps["executions"]["scripts"]}
    text = import_graph.render(graph)
    assert "scripts/admin.py:3  scripts.admin -> executions.services" in text
    assert "executions.selectors <-> executions.services" in text


def test_the_command_fails_on_them(bad_project, settings):
    settings.BASE_DIR = bad_project
    out = StringIO()
    with pytest.raises(CommandError, match="1 upward import"):
        call_command("import_graph", stdout=out)
    assert "not allowed" in out.getvalue()

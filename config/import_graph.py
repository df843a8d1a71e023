"""The project's import graph, read from the AST of every module of its apps (imports
inside functions and ``if TYPE_CHECKING:`` blocks count like the others), and its two
rules: an app imports only apps of lower layers (config.layers), and no app has an
import cycle between its own modules.

Used by ``manage.py import_graph`` and by tests/config/test_import_graph.py.
"""

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from config.layers import KNOWN_CYCLES, LAYERS, layer_of, project_apps


@dataclass(frozen=True)
class Edge:
    """One import statement: module ``source`` imports module ``target``."""

    source: str
    target: str
    path: str
    line: int


@dataclass
class Graph:
    """The app-level graph (with the statements behind each edge), the module-level
    edges inside each app, and what breaks the rules."""

    apps: dict[str, dict[str, list[Edge]]] = field(default_factory=dict)
    inside: dict[str, list[Edge]] = field(default_factory=dict)
    upward: list[Edge] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)
    known_cycles: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.upward and not self.cycles


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(imported name, line) for every import in ``tree``; ``from a import b`` gives
    ``a.b`` when that is a module, else ``a`` (resolved against known modules later)."""
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found += [((prefix, alias.name), node.lineno) for alias in node.names]
    return found


def _resolve(name, modules: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies in; for ``(a, b)`` (from
    ``from a import b``) the module ``a.b`` when it exists, else ``a``'s."""
    if isinstance(name, tuple):
        prefix, attribute = name
        if f"{prefix}.{attribute}" in modules:
            return f"{prefix}.{attribute}"
        name = prefix
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(found)


def build(root: Path, apps: list[str] | None = None) -> Graph:
    """Read every ``.py`` file of ``apps`` (default: the layered apps found under
    ``root``) and return the graph with its rule breaks."""
    apps = [a for a in (apps or project_apps()) if (root / a).is_dir()]
    files = {
        _module_name(root, path): path
        for app in apps
        for path in sorted((root / app).rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    modules = set(files)
    graph = Graph(apps={app: {} for app in apps}, inside={app: [] for app in apps})
    for module, path in files.items():
        app = module.split(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen: set[tuple[str, int]] = set()
        for name, line in _imports(tree, module, path.name == "__init__.py"):
            target = _resolve(name, modules)
            if target is None or target == module or (target, line) in seen:
                continue
            seen.add((target, line))
            edge = Edge(module, target, str(path.relative_to(root)), line)
            target_app = target.split(".")[0]
            if target_app == app:
                graph.inside[app].append(edge)
                continue
            graph.apps[app].setdefault(target_app, []).append(edge)
            mine, theirs = layer_of(app), layer_of(target_app)
            if mine is None or theirs is None or theirs >= mine:
                graph.upward.append(edge)
    for app, edges in graph.inside.items():
        adjacency: dict[str, set[str]] = defaultdict(set)
        for edge in edges:
            adjacency[edge.source].add(edge.target)
        nodes = [m for m in modules if m.split(".")[0] == app]
        for cycle in _cycles(nodes, adjacency):
            known = frozenset(cycle) in KNOWN_CYCLES
            (graph.known_cycles if known else graph.cycles).append(cycle)
    return graph


def render(graph: Graph) -> str:
    """The graph as text: the layers, who imports whom, and what breaks the rules."""
    lines = ["Layers (an app imports only apps of lower layers; config/layers.py):"]
    for number, apps in enumerate(LAYERS):
        lines.append(f"  {number}  {', '.join(apps)}")
    lines += ["", "App imports (every module's AST, function-level imports included):"]
    width = max((len(app) for app in graph.apps), default=0)
    for app in sorted(graph.apps, key=lambda a: (layer_of(a) or 0, a)):
        targets = sorted(graph.apps[app], key=lambda a: (layer_of(a) or 0, a))
        lines.append(f"  {app:<{width}} -> {', '.join(targets) if targets else '(nothing)'}")
    lines.append("")
    if graph.upward:
        lines.append("Imports that go up or sideways (not allowed):")
        for edge in graph.upward:
            lines.append(f"  {edge.path}:{edge.line}  {edge.source} -> {edge.target}")
    else:
        lines.append("Imports that go up or sideways: none")
    if graph.cycles:
        lines.append("Import cycles inside an app (not allowed):")
        for cycle in graph.cycles:
            lines.append(f"  {' <-> '.join(cycle)}")
    else:
        lines.append("Import cycles inside an app: none")
    for cycle in graph.known_cycles:
        reason = KNOWN_CYCLES[frozenset(cycle)]
        lines.append(f"Known cycle (config/layers.py KNOWN_CYCLES): {' <-> '.join(cycle)}")
        lines.append(f"  why: {reason}")
    return "\n".join(lines)

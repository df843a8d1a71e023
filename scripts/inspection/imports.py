"""The modules a script imports, as the runner's warm templates preload them: the
top-level name of every absolute ``import`` (standard library included; relative
imports, ``__future__`` and the script's own module left out), in source order."""

import ast
import functools

MAX_MODULES = 64


@functools.lru_cache(maxsize=512)
def imported_modules(source: str, *, filename: str = "script.py") -> tuple[str, ...]:
    """Top-level module names the source imports anywhere (also inside functions and
    ``try`` blocks: preloading one that is missing costs nothing). Empty when the
    source does not parse. At most MAX_MODULES names."""
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError):
        return ()
    own = filename.rsplit("/", 1)[-1].removesuffix(".py")
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top and top not in ("__future__", own) and top.isidentifier():
                found.setdefault(top, None)
    return tuple(found)[:MAX_MODULES]

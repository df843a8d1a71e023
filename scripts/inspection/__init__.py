"""Inspection: the only code that reads a script's source. It parses (``ast``), never
executes, and finds the entry point, the JSON Schema of a function script's inputs and
the script's requirements.

``inspect_source(source, filename=...)`` -> :class:`Inspection`. A source that does not
parse raises ``ApplicationError("SCRIPT_SYNTAX_ERROR", ..., {"line", "column", ...})``.
"""

import ast
from dataclasses import dataclass, field

from config.errors import ApplicationError
from scripts.inspection.requirements import find_requirements
from scripts.inspection.secrets import declared_secrets
from scripts.inspection.signature import ANY_OBJECT_SCHEMA, function_schema

__all__ = ["Inspection", "inspect_source", "parse_source"]


@dataclass
class Inspection:
    """What inspection found. ``kind`` is "function" or "command"; ``call_style`` is
    "data" (main(data: dict)), "kwargs" (typed main, or main() without parameters) or
    "argv" (command script);
    ``input_schema`` is {} for command scripts (their schema comes from declared
    parameters); ``warnings`` are human-readable notes (never fatal)."""

    kind: str
    call_style: str
    input_schema: dict
    requirements: list[str]
    warnings: list[str] = field(default_factory=list)
    description: str = ""


def parse_source(source: str, *, filename: str) -> ast.Module:
    """Parse ``source``; a syntax error becomes SCRIPT_SYNTAX_ERROR (400) with line and
    column (1-based) and the offending line's text."""
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        line, column = exc.lineno or 0, exc.offset or 0
        raise ApplicationError(
            "SCRIPT_SYNTAX_ERROR",
            f"{filename} does not parse: {exc.msg} (line {line}, column {column}).",
            {"line": line, "column": column, "text": (exc.text or "").rstrip("\n")},
        ) from None
    except ValueError as exc:  # e.g. source with NUL bytes
        raise ApplicationError(
            "SCRIPT_SYNTAX_ERROR",
            f"{filename} does not parse: {exc}.",
            {"line": 0, "column": 0, "text": ""},
        ) from None


def _find_main(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    main = None
    for node in tree.body:  # the last top-level definition wins, as at run time
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main":
            main = node
    return main


def _has_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = fn.args
    return bool(a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg)


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


def _has_main_guard(tree: ast.Module) -> bool:
    """True when the module has a top-level ``if __name__ == "__main__":`` block."""
    return any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)


def _calls_main_at_top_level(tree: ast.Module) -> bool:
    """True when module-level code calls ``main`` (``main()``, ``exit(main())``,
    ``sys.exit(main())``...): the script calls its own entry point when it runs.
    Calls inside function, class and lambda bodies do not count."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "main"
        ):
            return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def inspect_source(source: str, *, filename: str) -> Inspection:
    """Inspect a script without running it.

    The call rules, the same as at run time:

    - a top-level ``def main`` with parameters makes a function script: call_style
      "data" for ``main(data: dict)``-like signatures, else "kwargs" with a schema
      inferred from the annotations. An ``if __name__ == "__main__":`` block does not
      change that (it is for running the file by hand; the runner skips it);
    - a top-level ``def main()`` without parameters makes a function script too
      (call_style "kwargs", a schema that accepts only ``{}``): the runner calls
      ``main()`` and its return value is the result. Unless the module runs it itself:
      with an ``if __name__ == "__main__":`` block or a module-level call such as
      ``exit(main())``, it is a command script, as under ``python script.py``;
    - anything else (no ``main``, ``async def main``) is a command script
      (call_style "argv").

    Requirements come from PEP 723 metadata, ``# Requirements:`` comments and imports
    (see ``requirements.find_requirements``)."""
    tree = parse_source(source, filename=filename)
    warnings: list[str] = []
    requirements = find_requirements(source, tree, filename=filename, warnings=warnings)
    warnings += declared_secrets(source)[1]
    main = _find_main(tree)
    description = (ast.get_docstring(tree) or "").strip().split("\n\n")[0]
    if main is not None and isinstance(main, ast.AsyncFunctionDef):
        warnings.append("async def main is not supported; the script runs as a command script.")
        main = None
    if main is None or (
        not _has_parameters(main) and (_has_main_guard(tree) or _calls_main_at_top_level(tree))
    ):
        return Inspection("command", "argv", {}, requirements, warnings, description)
    call_style, schema = function_schema(main, warnings=warnings)
    if call_style == "data":
        schema = dict(ANY_OBJECT_SCHEMA, **{k: v for k, v in schema.items() if k != "type"})
    return Inspection("function", call_style, schema, requirements, warnings, description)

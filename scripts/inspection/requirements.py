"""A script's requirements from its three sources, in this order: PEP 723 inline
metadata (``# /// script`` ... ``dependencies = [...]``), ``# Requirements: a, b>=1``
comments, and imports found by ``ast`` (mapped to distributions by the table in
``import_map``). Standard-library modules, the runner's own helper modules, relative
imports and optional imports (inside ``try: ... except ImportError``) are never
requirements. Version specifiers and markers are kept as written; a distribution
named twice keeps its first (most explicit) form."""

import ast
import re
import sys
import tomllib

from scripts.inspection.import_map import IMPORT_TO_DISTRIBUTION, PROVIDED_MODULES

# The reference regular expression from PEP 723.
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_REQ_COMMENT = re.compile(r"(?im)^[ \t]*#[ \t]*requirements?[ \t]*:[ \t]*(?P<list>.+?)[ \t]*$")
# A PEP 508 requirement: a name, optional [extras], then specifiers/markers/URL.
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[^\]]*\])?"
    r"\s*(?P<rest>(?:[<>=!~;@(].*)?)$"
)
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_direct_reference(requirement: str) -> bool:
    """True for ``name @ url`` (a file, git or web address): such requirements are never
    installed (the installer runs on the server, where an address could reach the
    server's own network or files)."""
    match = _REQUIREMENT.match(requirement.strip())
    return bool(match) and match.group("rest").lstrip().startswith("@")


def requirement_name(requirement: str) -> str | None:
    """The normalised name of a requirement string, or None when it is not one (or is
    a direct reference, see ``is_direct_reference``)."""
    match = _REQUIREMENT.match(requirement.strip())
    if not match or match.group("rest").lstrip().startswith("@"):
        return None
    return normalize(match.group("name"))


def _pep723(source: str, warnings: list[str]) -> list[str]:
    blocks = [m for m in _PEP723.finditer(source) if m.group("type") == "script"]
    if not blocks:
        return []
    if len(blocks) > 1:
        warnings.append("More than one '# /// script' block; only the first is read.")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        warnings.append(f"The '# /// script' block is not valid TOML: {exc}.")
        return []
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        warnings.append("'dependencies' in the '# /// script' block must be a list of strings.")
        return []
    return deps


def _split_list(text: str) -> list[str]:
    """Split ``a, b>=1,<2, c`` on commas that start a new requirement."""
    items: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if items and part[0] in "<>=!~":
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def _comments(source: str) -> list[str]:
    found = []
    for match in _REQ_COMMENT.finditer(source):
        found.extend(_split_list(match.group("list")))
    return found


def _optional_import_nodes(tree: ast.Module) -> set[int]:
    """ids of import nodes inside a ``try`` that catches ImportError."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            kinds = handler.type
            elts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
            caught |= {getattr(e, "id", getattr(e, "attr", None)) for e in elts if e is not None}
            if handler.type is None:
                caught.add("BaseException")
        if caught & _IMPORT_ERRORS:
            for stmt in node.body:
                optional |= {id(n) for n in ast.walk(stmt)}
    return optional


def _imports(tree: ast.Module, filename: str, warnings: list[str]) -> list[str]:
    own = filename.rsplit("/", 1)[-1].removesuffix(".py")
    optional = _optional_import_nodes(tree)
    stdlib = sys.stdlib_module_names
    modules: dict[str, bool] = {}  # top-level module -> optional?
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports are the script's own modules
        for name in names:
            top = name.split(".")[0]
            if top in stdlib or top in PROVIDED_MODULES or top == own or top == "__future__":
                continue
            key = name if name in IMPORT_TO_DISTRIBUTION else top
            modules[key] = modules.get(key, True) and id(node) in optional
    result = []
    for module, is_optional in sorted(modules.items(), key=lambda kv: kv[0].lower()):
        if is_optional:
            warnings.append(
                f"Optional import {module!r} (guarded by ImportError) is not installed."
            )
            continue
        result.append(IMPORT_TO_DISTRIBUTION.get(module, module))
    return result


def merge_requirements(*groups: list[str], warnings: list[str] | None = None) -> list[str]:
    """Concatenate requirement lists, dropping invalid strings (with a warning) and later
    duplicates of a distribution (by normalised name); specifiers are kept as written."""
    seen: set[str] = set()
    merged: list[str] = []
    for group in groups:
        for requirement in group:
            requirement = " ".join(str(requirement).split())
            name = requirement_name(requirement)
            if name is None:
                if warnings is not None:
                    why = (
                        "a direct reference (name @ address), which is never installed"
                        if is_direct_reference(requirement)
                        else "not a valid requirement"
                    )
                    warnings.append(f"{requirement!r} is {why}; ignored.")
                continue
            if name not in seen:
                seen.add(name)
                merged.append(requirement)
    return merged


def find_requirements(
    source: str, tree: ast.Module, *, filename: str, warnings: list[str]
) -> list[str]:
    """The script's requirements (see the module docstring for the rules)."""
    return merge_requirements(
        _pep723(source, warnings),
        _comments(source),
        _imports(tree, filename, warnings),
        warnings=warnings,
    )

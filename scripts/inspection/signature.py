"""The JSON Schema of a function script's inputs, inferred from ``main``'s signature
(annotations, defaults) and its docstring (``Args:`` / ``Parameters`` sections).

Only the syntax tree is read: annotations are recognised by name (``int``,
``typing.Optional``, ``datetime.date``...), never evaluated.
"""

import ast
import json
import re

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ANY_OBJECT_SCHEMA = {"$schema": JSON_SCHEMA_DIALECT, "type": "object"}

_SCALARS = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "time": {"type": "string", "format": "time"},
    "Any": {},
    "object": {},
}
_ARRAYS = {"list", "List", "Sequence", "Iterable", "Collection", "MutableSequence"}
_TUPLES = {"tuple", "Tuple"}
_SETS = {"set", "Set", "frozenset", "FrozenSet", "AbstractSet", "MutableSet"}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping"}
_DATA_ANNOTATIONS = _MAPPINGS | {"Any", "object"}


def _name(node: ast.expr) -> str | None:
    """``int`` -> "int", ``typing.Optional`` -> "Optional", ``datetime.date`` -> "date"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _nullable(schema: dict) -> dict:
    if not schema:
        return schema  # "anything" already admits null
    kind = schema.get("type")
    if isinstance(kind, str) and set(schema) <= {
        "type",
        "format",
        "items",
        "enum",
        "uniqueItems",
        "additionalProperties",
        "prefixItems",
    }:
        result = dict(schema, type=[kind, "null"])
        if "enum" in result and None not in result["enum"]:
            result["enum"] = [*result["enum"], None]
        return result
    if isinstance(kind, list):
        return schema if "null" in kind else dict(schema, type=[*kind, "null"])
    if {"type": "null"} in schema.get("anyOf", []):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _union(members: list[ast.expr], warnings: list[str], where: str) -> dict:
    has_none = any(isinstance(m, ast.Constant) and m.value is None for m in members)
    schemas = [
        annotation_schema(m, warnings, where)
        for m in members
        if not (isinstance(m, ast.Constant) and m.value is None)
    ]
    if any(s == {} for s in schemas):
        return {}
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return _nullable(schema) if has_none else schema


def _flatten_bitor(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flatten_bitor(node.left) + _flatten_bitor(node.right)
    return [node]


def _literal_enum(args: list[ast.expr], warnings: list[str], where: str) -> dict:
    values = []
    for arg in args:
        try:
            values.append(ast.literal_eval(arg))
        except ValueError:
            warnings.append(f"{where}: Literal value {ast.unparse(arg)} is not a constant.")
    types = {type(v) for v in values}
    schema: dict = {"enum": values}
    type_names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if len(types) == 1 and next(iter(types)) in type_names:
        schema = {"type": type_names[next(iter(types))], "enum": values}
    return schema


def _subscript_schema(node: ast.Subscript, warnings: list[str], where: str) -> dict:
    outer = _name(node.value)
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if outer in _ARRAYS or outer in _SETS:
        schema = {"type": "array", "items": annotation_schema(args[0], warnings, where)}
        if outer in _SETS:
            schema["uniqueItems"] = True
        return schema
    if outer in _TUPLES:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return {"type": "array", "items": annotation_schema(args[0], warnings, where)}
        items = [annotation_schema(a, warnings, where) for a in args]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if outer in _MAPPINGS:
        value = annotation_schema(args[-1], warnings, where) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value or True}
    if outer == "Optional":
        return _nullable(annotation_schema(args[0], warnings, where))
    if outer == "Union":
        return _union(args, warnings, where)
    if outer == "Literal":
        return _literal_enum(args, warnings, where)
    if outer == "Annotated":
        schema = dict(annotation_schema(args[0], warnings, where))
        notes = [a.value for a in args[1:] if isinstance(a, ast.Constant)]
        if notes and isinstance(notes[0], str):
            schema["description"] = notes[0]
        return schema
    warnings.append(f"{where}: annotation {ast.unparse(node)} is not understood; any value.")
    return {}


def annotation_schema(node: ast.expr | None, warnings: list[str], where: str) -> dict:
    """The JSON Schema for one annotation node ({} means any value)."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"type": "null"}
        if isinstance(node.value, str):  # a forward reference: "int", "list[str]"
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                warnings.append(f"{where}: annotation {node.value!r} does not parse; any value.")
                return {}
            return annotation_schema(inner, warnings, where)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(_flatten_bitor(node), warnings, where)
    if isinstance(node, ast.Subscript):
        return _subscript_schema(node, warnings, where)
    name = _name(node)
    if name in _SCALARS:
        return dict(_SCALARS[name])
    if name in _ARRAYS or name in _TUPLES:
        return {"type": "array"}
    if name in _SETS:
        return {"type": "array", "uniqueItems": True}
    if name in _MAPPINGS:
        return {"type": "object"}
    warnings.append(f"{where}: annotation {ast.unparse(node)} is not understood; any value.")
    return {}


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(?::\s*(.*))?$")
_HEADING = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google-style ``Args:`` section or a
    NumPy-style ``Parameters`` / ``----------`` section."""
    lines = doc.expandtabs().splitlines()
    params: dict[str, str] = {}
    summary_lines: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        google = _SECTION.match(stripped)
        numpy = (
            stripped in ("Parameters", "Other Parameters")
            and i + 1 < len(lines)
            and set(lines[i + 1].strip()) == {"-"}
        )
        if not (google or numpy):
            if not params and not _HEADING.match(stripped):
                summary_lines.append(stripped)
            i += 1
            continue
        base = _indent(line)
        i += 2 if numpy else 1
        current = None
        item_indent = None
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if not stripped:
                i += 1
                if numpy and i < len(lines) and _indent(lines[i]) <= base and lines[i].strip():
                    break
                continue
            indent = _indent(line)
            if indent < base or (indent == base and not numpy):
                break
            if (
                numpy
                and indent == base
                and i + 1 < len(lines)
                and set(lines[i + 1].strip()) == {"-"}
            ):
                break
            match = (_NUMPY_ITEM if numpy else _GOOGLE_ITEM).match(stripped)
            if match and (item_indent is None or indent <= item_indent):
                item_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = "" if numpy else match.group(3).strip()
            elif current is not None:
                params[current] = (params[current] + " " + stripped).strip()
            i += 1
    summary = " ".join(" ".join(summary_lines).split())
    return summary, params


def _default(node: ast.expr, warnings: list[str], where: str):
    """(has_default, value): the default when it is a JSON-able literal."""
    try:
        value = ast.literal_eval(node)
        if isinstance(value, tuple):
            value = list(value)
        json.dumps(value)
        return True, value
    except (ValueError, TypeError, SyntaxError, RecursionError):
        warnings.append(f"{where}: default {ast.unparse(node)} is not a JSON literal; omitted.")
        return False, None


def _is_data_signature(fn: ast.FunctionDef) -> bool:
    """``main(data)``, ``main(data: dict)``, ``main(data: dict[str, Any])``, ``main(data: Any)``:
    one parameter called ``data``, unannotated or annotated as a mapping / any value."""
    a = fn.args
    params = a.posonlyargs + a.args
    if len(params) != 1 or a.kwonlyargs or a.vararg or a.kwarg:
        return False
    ann = params[0].annotation
    if params[0].arg != "data":
        return False
    if ann is None:
        return True
    outer = ann.value if isinstance(ann, ast.Subscript) else ann
    return _name(outer) in _DATA_ANNOTATIONS


def function_schema(fn: ast.FunctionDef, *, warnings: list[str]) -> tuple[str, dict]:
    """(call_style, schema) for a function script's ``main``: ("data", any object) for
    ``main(data: dict)``, else ("kwargs", an object schema with one property per
    parameter, ``required`` for those without defaults, descriptions from the docstring;
    for ``main()`` an object with no properties, so only ``{}`` is accepted)."""
    summary, docs = parse_docstring(ast.get_docstring(fn) or "")
    if _is_data_signature(fn):
        schema = dict(ANY_OBJECT_SCHEMA)
        if summary:
            schema["description"] = summary
        return "data", schema
    a = fn.args
    if a.posonlyargs:
        warnings.append("main: positional-only parameters cannot be passed by name.")
    if a.vararg:
        warnings.append(f"main: *{a.vararg.arg} receives nothing (inputs are passed by name).")
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults, strict=True)) + list(
        zip(a.kwonlyargs, a.kw_defaults, strict=True)
    )
    properties: dict[str, dict] = {}
    required: list[str] = []
    for arg, default in pairs:
        where = f"main({arg.arg})"
        schema = annotation_schema(arg.annotation, warnings, where)
        if default is None:
            required.append(arg.arg)
        else:
            has_default, value = _default(default, warnings, where)
            if has_default:
                if value is None:
                    schema = _nullable(schema)
                schema["default"] = value
        if docs.get(arg.arg) and "description" not in schema:
            schema["description"] = docs[arg.arg]
        properties[arg.arg] = schema
    schema = {"$schema": JSON_SCHEMA_DIALECT, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if a.kwarg is None:
        schema["additionalProperties"] = False
    elif a.kwarg.annotation is not None:
        extra = annotation_schema(a.kwarg.annotation, warnings, f"main(**{a.kwarg.arg})")
        schema["additionalProperties"] = extra or True
    if summary:
        schema["description"] = summary
    return "kwargs", schema

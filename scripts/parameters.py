"""Declared parameters of command scripts -> the JSON Schema of their inputs and argv."""

from collections.abc import Iterable

from scripts.inspection.signature import JSON_SCHEMA_DIALECT
from scripts.models import ScriptParameter

_TYPES = {
    ScriptParameter.Type.STRING: "string",
    ScriptParameter.Type.INTEGER: "integer",
    ScriptParameter.Type.NUMBER: "number",
    ScriptParameter.Type.BOOLEAN: "boolean",
    ScriptParameter.Type.FILE: "string",
}


def parameter_schema(parameter: ScriptParameter) -> dict:
    """The JSON Schema of one declared parameter."""
    schema: dict = {"type": _TYPES.get(parameter.type, "string")}
    if parameter.type == ScriptParameter.Type.FILE:
        schema["description"] = "The name of an input file."
    if parameter.choices:
        schema["enum"] = list(parameter.choices)
    if parameter.type in (ScriptParameter.Type.INTEGER, ScriptParameter.Type.NUMBER):
        if parameter.minimum is not None:
            schema["minimum"] = parameter.minimum
        if parameter.maximum is not None:
            schema["maximum"] = parameter.maximum
    if parameter.pattern and schema["type"] == "string":
        schema["pattern"] = parameter.pattern
    if parameter.help:
        schema["description"] = parameter.help
    if parameter.default is not None:
        schema["default"] = parameter.default
    return schema


def parameters_schema(parameters: Iterable[ScriptParameter]) -> dict:
    """The object schema of a command script's inputs (no extra keys allowed)."""
    parameters = list(parameters)
    schema = {
        "$schema": JSON_SCHEMA_DIALECT,
        "type": "object",
        "properties": {p.name: parameter_schema(p) for p in parameters},
        "additionalProperties": False,
    }
    required = [p.name for p in parameters if p.required]
    if required:
        schema["required"] = required
    return schema


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameters_argv(parameters: Iterable[ScriptParameter], inputs: dict) -> list[str]:
    """argv from validated inputs, in declared order (position, then id). A value that is
    absent falls back to the declared default; still absent (or None) -> left out.
    ``--flag`` booleans appear alone when true and not at all when false; other flags
    are followed by their value; positional parameters give their value alone."""
    argv: list[str] = []
    for p in sorted(parameters, key=lambda p: (p.position, p.id or 0)):
        value = inputs.get(p.name, p.default)
        if value is None:
            continue
        if p.flag:
            if p.type == ScriptParameter.Type.BOOLEAN:
                if value:
                    argv.append(p.flag)
                continue
            argv.extend([p.flag, _text(value)])
        else:
            argv.append(_text(value))
    return argv

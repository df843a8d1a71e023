"""Inspection: entry point, schema inference, docstrings, warnings; never runs code."""

import pytest

from config.errors import ApplicationError
from scripts.inspection import inspect_source
from scripts.inspection.signature import parse_docstring


def schema_of(signature: str, body: str = "") -> dict:
    source = f"from typing import *\nfrom datetime import date, datetime\n{signature}\n{body}"
    result = inspect_source(source, filename="s.py")
    assert result.kind == "function" and result.call_style == "kwargs", result
    return result.input_schema


def prop(signature: str) -> dict:
    return schema_of(signature)["properties"]["x"]


@pytest.mark.parametrize(
    "annotation, expected",
    [
        ("str", {"type": "string"}),
        ("int", {"type": "integer"}),
        ("float", {"type": "number"}),
        ("bool", {"type": "boolean"}),
        ("dict", {"type": "object"}),
        ("dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        ("list", {"type": "array"}),
        ("list[int]", {"type": "array", "items": {"type": "integer"}}),
        ("List[str]", {"type": "array", "items": {"type": "string"}}),
        (
            "list[list[float]]",
            {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        ),
        ("set[str]", {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        ("tuple[int, ...]", {"type": "array", "items": {"type": "integer"}}),
        ('Literal["csv", "json"]', {"type": "string", "enum": ["csv", "json"]}),
        ("Literal[1, 2]", {"type": "integer", "enum": [1, 2]}),
        ("Optional[int]", {"type": ["integer", "null"]}),
        ("int | None", {"type": ["integer", "null"]}),
        ("None | str", {"type": ["string", "null"]}),
        ("Union[int, str]", {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        ("date", {"type": "string", "format": "date"}),
        ("datetime", {"type": "string", "format": "date-time"}),
        ('"int"', {"type": "integer"}),
        ("Any", {}),
        ('Annotated[int, "How many"]', {"type": "integer", "description": "How many"}),
    ],
)
def test_every_annotation_type(annotation, expected):
    assert prop(f"def main(x: {annotation}): ...") == expected


def test_unannotated_parameter_is_any_value():
    assert prop("def main(x): ...") == {}


def test_unknown_annotation_is_any_value_with_a_warning():
    result = inspect_source("class Foo: ...\ndef main(x: Foo): ...", filename="s.py")
    assert result.input_schema["properties"]["x"] == {}
    assert any("Foo" in w for w in result.warnings)


def test_defaults_required_and_optional_literal():
    schema = schema_of(
        'def main(name: str, count: int = 3, mode: Literal["a", "b"] = "b", '
        "tags: list[str] = (), note: str = None, *, flag: bool = True): ..."
    )
    props = schema["properties"]
    assert schema["required"] == ["name"]
    assert props["count"] == {"type": "integer", "default": 3}
    assert props["mode"] == {"type": "string", "enum": ["a", "b"], "default": "b"}
    assert props["tags"]["default"] == []
    assert props["note"] == {"type": ["string", "null"], "default": None}
    assert props["flag"] == {"type": "boolean", "default": True}
    assert schema["additionalProperties"] is False


def test_optional_literal_admits_null_in_enum():
    assert prop('def main(x: Optional[Literal["a"]] = None): ...') == {
        "type": ["string", "null"],
        "enum": ["a", None],
        "default": None,
    }


def test_non_literal_default_is_omitted_with_a_warning():
    result = inspect_source("import os\ndef main(x: str = os.sep): ...", filename="s.py")
    assert result.input_schema["properties"]["x"] == {"type": "string"}
    assert result.input_schema.get("required") is None
    assert any("os.sep" in w for w in result.warnings)


def test_kwargs_allows_extra_properties():
    schema = schema_of("def main(a: int, **rest: str): ...")
    assert schema["additionalProperties"] == {"type": "string"}


def test_google_docstring_gives_descriptions():
    schema = schema_of(
        "def main(name: str, count: int = 1):",
        '    """Greet someone.\n\n    Args:\n        name (str): Who to greet,\n'
        "            in full.\n        count: How many times.\n\n    Returns:\n"
        '        dict: nothing.\n    """\n',
    )
    assert schema["description"] == "Greet someone."
    assert schema["properties"]["name"]["description"] == "Who to greet, in full."
    assert schema["properties"]["count"]["description"] == "How many times."


def test_numpy_docstring_gives_descriptions():
    doc = (
        "Sum.\n\nParameters\n----------\na : int\n    First.\nb : int\n    Second.\n\n"
        "Returns\n-------\nint\n"
    )
    assert parse_docstring(doc) == ("Sum.", {"a": "First.", "b": "Second."})


@pytest.mark.parametrize(
    "source",
    [
        "def main(data: dict):\n    return data\n",
        "def main(data: dict[str, object]) -> dict: ...\n",
        "def main(data): ...\n",
        "from typing import Any\ndef main(data: Any): ...\n",
    ],
)
def test_data_signature_means_any_object(source):
    result = inspect_source(source, filename="s.py")
    assert (result.kind, result.call_style) == ("function", "data")
    assert result.input_schema["type"] == "object"
    assert "properties" not in result.input_schema


@pytest.mark.parametrize(
    "source",
    [
        "print('hello')\n",
        "def main():\n    print('hi')\n\nif __name__ == '__main__':\n    main()\n",
        "def helper(x: int): ...\n",
        "class K:\n    def main(self, x: int): ...\n",
    ],
)
def test_command_scripts(source):
    result = inspect_source(source, filename="s.py")
    assert (result.kind, result.call_style, result.input_schema) == ("command", "argv", {})


def test_a_single_dict_parameter_not_called_data_is_a_keyword():
    result = inspect_source("def main(options: dict): ...\n", filename="s.py")
    assert result.call_style == "kwargs"
    assert result.input_schema["required"] == ["options"]


def test_async_main_is_a_command_script_with_a_warning():
    result = inspect_source("async def main(x: int): ...\n", filename="s.py")
    assert result.kind == "command" and result.warnings


def test_syntax_error_reports_line_and_column():
    with pytest.raises(ApplicationError) as info:
        inspect_source("x = 1\ndef main(:\n    pass\n", filename="bad.py")
    assert info.value.code == "SCRIPT_SYNTAX_ERROR"
    assert info.value.details["line"] == 2
    assert info.value.details["column"] >= 1
    assert "line 2" in info.value.message


def test_inspection_never_executes(tmp_path):
    marker = tmp_path / "ran"
    source = (
        f"open({str(marker)!r}, 'w').write('x')\n"
        "def main(a: int = __import__('os').getpid()): ...\n"
    )
    inspect_source(source, filename="s.py")
    assert not marker.exists()


@pytest.mark.parametrize(
    "source",
    [
        "def main() -> dict:\n    return {'a': 1}\n",
        "import sys\ndef main():\n    print('hi')\n\ndef helper():\n    main()\n",
        "def main():\n    return {}\n\nclass K:\n    x = main\n\nf = lambda: main()\n",
    ],
)
def test_parameterless_main_that_nothing_calls_is_a_function_script(source):
    """Nothing in the module runs main(), so the runner calls it (no inputs) and its
    return value is the result, instead of a command run that does nothing."""
    found = inspect_source(source, filename="x.py")
    assert (found.kind, found.call_style) == ("function", "kwargs")
    assert found.input_schema["properties"] == {}
    assert found.input_schema["additionalProperties"] is False
    assert "required" not in found.input_schema
    assert not any("nothing calls" in w for w in found.warnings)


def test_parameterless_main_takes_its_description_from_the_docstring():
    found = inspect_source('def main():\n    """Count things."""\n    return {}\n', filename="x.py")
    assert found.input_schema["description"] == "Count things."


@pytest.mark.parametrize(
    "source",
    [
        "def main():\n    print('hi')\n\nif __name__ == '__main__':\n    main()\n",
        "def main():\n    return 0\n\nif '__main__' == __name__:\n    raise SystemExit(main())\n",
        "def main():\n    print('unused')\n\nif __name__ == '__main__':\n    print('other')\n",
        "def main():\n    return 0\n\nexit(main())\n",
        "import sys\ndef main():\n    return 0\n\nsys.exit(main())\n",
        "def main():\n    print('hi')\n\nmain()\n",
        "def main():\n    return 0\n\ntry:\n    code = main()\nfinally:\n    print('done')\n",
    ],
)
def test_parameterless_main_the_module_runs_itself_is_a_command_script(source):
    """A ``__main__`` block or a module-level call runs main under ``python script.py``:
    the script stays a command script and the runner does not call main again."""
    found = inspect_source(source, filename="x.py")
    assert (found.kind, found.call_style, found.input_schema) == ("command", "argv", {})
    assert not found.warnings


def test_main_with_parameters_and_a_main_block_stays_a_function_script():
    found = inspect_source(
        "def main(name: str = 'x'):\n    return {'n': name}\n\n"
        "if __name__ == '__main__':\n    print(main('world'))\n",
        filename="x.py",
    )
    assert (found.kind, found.call_style) == ("function", "kwargs")
    assert found.input_schema["properties"] == {"name": {"type": "string", "default": "x"}}

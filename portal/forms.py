"""The run form, generated from a script version's JSON Schema.

The form only turns what was typed into JSON values (numbers, booleans, lists, dates as
ISO strings, JSON objects); it never judges them. Every rule of the schema is checked by
``executions.services.execution_start``, and its field-by-field errors are put back
beside the fields (``RunForm.add_service_errors``). Empty optional fields are left out,
so that the script's own defaults apply.
"""

import json
import shlex
from dataclasses import dataclass

from django import forms

# Names of the form's own fields: they cannot clash with a parameter's name.
ARGS_FIELD = "__args"
FILES_FIELD = "__files"
EMAIL_FIELD = "__email_me"

DATE_FORMATS = {"date": "date", "date-time": "datetime-local", "time": "time"}
SCALAR_TYPES = ("string", "integer", "number", "boolean")


@dataclass
class FieldSpec:
    """What the form needs to know about one input of the schema."""

    name: str
    kind: str  # text, integer, number, boolean, choice, date, list, json, file
    required: bool
    schema: dict
    item_type: str = "string"  # for lists


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input; cleans to a list of uploaded files."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(d, initial) for d in data if d]
        return [super().clean(data, initial)] if data else []


def _base_type(schema: dict) -> tuple[dict, bool]:
    """(schema without its "null" alternative, whether null was allowed)."""
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [k for k in kind if k != "null"]
        schema = dict(schema, type=rest[0] if len(rest) == 1 else rest)
        if "enum" in schema:
            schema["enum"] = [v for v in schema["enum"] if v is not None]
        return schema, True
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [s for s in any_of if s != {"type": "null"}]
        return (rest[0] if len(rest) == 1 else {"anyOf": rest}), True
    return schema, False


def field_specs(schema: dict, *, file_params: set[str] = frozenset()) -> list[FieldSpec]:
    """One FieldSpec per property of the object ``schema``, in its order. ``file_params``
    names the inputs that are files (a command script's declared file parameters)."""
    required = set(schema.get("required") or [])
    specs = []
    for name, raw in (schema.get("properties") or {}).items():
        prop, _ = _base_type(raw if isinstance(raw, dict) else {})
        kind = prop.get("type")
        spec = FieldSpec(name=name, kind="json", required=name in required, schema=prop)
        if name in file_params or prop.get("format") == "binary" or "contentMediaType" in prop:
            spec.kind = "file"
        elif isinstance(prop.get("enum"), list) and prop["enum"]:
            spec.kind = "choice"
        elif kind == "boolean":
            spec.kind = "boolean"
        elif kind in ("integer", "number"):
            spec.kind = kind
        elif kind == "string":
            spec.kind = "date" if prop.get("format") in DATE_FORMATS else "text"
        elif kind == "array":
            items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
            item_type = items.get("type")
            if item_type in SCALAR_TYPES and "enum" not in items:
                spec.kind, spec.item_type = "list", item_type
        specs.append(spec)
    return specs


def _label(spec: FieldSpec) -> str:
    return spec.schema.get("title") or spec.name


def _form_field(spec: FieldSpec, initial) -> forms.Field:
    """A lenient form field: any text is accepted, the service judges it."""
    help_text = spec.schema.get("description", "")
    common = {"label": _label(spec), "required": False, "help_text": help_text}
    if spec.kind == "boolean":
        return forms.BooleanField(initial=bool(initial), **common)
    if spec.kind == "choice":
        choices = [(json.dumps(v), str(v)) for v in spec.schema["enum"]]
        if not spec.required or initial is None:
            choices.insert(0, ("", "—"))
        return forms.ChoiceField(
            choices=choices, initial=None if initial is None else json.dumps(initial), **common
        )
    if spec.kind in ("integer", "number"):
        attrs = {"inputmode": "numeric" if spec.kind == "integer" else "decimal"}
        return forms.CharField(initial=initial, widget=forms.TextInput(attrs=attrs), **common)
    if spec.kind == "date":
        widget = forms.DateInput(
            attrs={"type": DATE_FORMATS[spec.schema["format"]]}, format="%Y-%m-%d"
        )
        return forms.CharField(initial=initial, widget=widget, **common)
    if spec.kind == "list":
        common["help_text"] = (help_text + " One value per line.").strip()
        text = "\n".join(str(v) for v in initial) if isinstance(initial, list) else None
        return forms.CharField(
            initial=text, widget=forms.Textarea(attrs={"rows": 3}), strip=False, **common
        )
    if spec.kind == "json":
        common["help_text"] = (help_text + " JSON.").strip()
        text = json.dumps(initial, indent=2) if initial is not None else None
        return forms.CharField(
            initial=text, widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}), **common
        )
    if spec.kind == "file":
        common["help_text"] = help_text or "Uploaded with the run; the script reads it by name."
        return forms.FileField(**common)
    return forms.CharField(initial=initial, strip=False, **common)


def _scalar(text: str, kind: str):
    """``text`` as a JSON value of ``kind``; the text itself when it is not one (so that
    the service reports the wrong type beside the field)."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            return text
    except ValueError:
        return text.strip()
    return text


class RunForm(forms.Form):
    """The run form of one script version: one field per input (or an arguments field
    for command scripts without declared parameters), input files and "e-mail me"."""

    def __init__(
        self,
        *args,
        schema: dict,
        takes_args: bool = False,
        file_params: set[str] = frozenset(),
        initial_inputs: dict | None = None,
        initial_args: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.takes_args = takes_args
        self.specs = [] if takes_args else field_specs(schema, file_params=file_params)
        inputs = initial_inputs or {}
        for spec in self.specs:
            default = spec.schema.get("default")
            field = _form_field(spec, inputs.get(spec.name, default))
            field.widget.attrs.setdefault("data-kind", spec.kind)
            field.required_input = spec.required
            self.fields[spec.name] = field
        if takes_args:
            self.fields[ARGS_FIELD] = forms.CharField(
                label="Arguments",
                required=False,
                initial=shlex.join(initial_args or []),
                help_text='Split like a shell does: --limit 5 "two words"',
            )
        self.fields[FILES_FIELD] = MultipleFileField(
            label="Input files",
            required=False,
            help_text="Put in the script's working folder under their own names.",
        )
        self.fields[EMAIL_FIELD] = forms.BooleanField(label="E-mail me the result", required=False)

    @property
    def input_fields(self):
        return [self[spec.name] for spec in self.specs]

    @property
    def extra_fields(self):
        names = ([ARGS_FIELD] if self.takes_args else []) + [FILES_FIELD, EMAIL_FIELD]
        return [self[name] for name in names]

    def _clean_value(self, spec: FieldSpec, value):
        if spec.kind == "boolean":
            return bool(value)
        if value in (None, ""):
            return None
        if spec.kind == "choice":
            return json.loads(value)
        if spec.kind in ("integer", "number"):
            return _scalar(value, spec.kind)
        if spec.kind == "list":
            lines = [line.strip() for line in value.splitlines() if line.strip()]
            return [_scalar(line, spec.item_type) for line in lines]
        if spec.kind == "json":
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                self.add_error(spec.name, f"Not valid JSON: {exc.msg} (line {exc.lineno}).")
                return None
        if spec.kind == "file":
            return value.name
        return value

    def clean(self):
        data = super().clean()
        inputs = {}
        for spec in self.specs:
            value = self._clean_value(spec, data.get(spec.name))
            if value is not None:
                inputs[spec.name] = value
        data["inputs"] = inputs
        data["uploads"] = list(data.get(FILES_FIELD) or []) + [
            data[spec.name] for spec in self.specs if spec.kind == "file" and data.get(spec.name)
        ]
        data["args"] = None
        if self.takes_args:
            try:
                data["args"] = shlex.split(data.get(ARGS_FIELD) or "")
            except ValueError as exc:
                self.add_error(ARGS_FIELD, str(exc))
        return data

    def add_service_errors(self, message: str, details: dict) -> None:
        """Put a service's VALIDATION_ERROR details beside the fields they name
        ("count", "items/0" -> items; args, input_files, email_to -> their fields);
        the rest, and the message when nothing matched, above the form."""
        aliases = {"args": ARGS_FIELD, "input_files": FILES_FIELD, "email_to": EMAIL_FIELD}
        placed = False
        for path, problems in (details or {}).items():
            head = str(path).split("/", 1)[0]
            target = aliases.get(head, head)
            problems = problems if isinstance(problems, list) else [str(problems)]
            if target in self.fields and target not in ("non_field_errors",):
                rest = str(path)[len(head) + 1 :]
                self.add_error(target, [f"{rest}: {p}" if rest else str(p) for p in problems])
                placed = True
            else:
                self.add_error(None, [f"{path}: {p}" for p in problems])
        if not placed:
            self.add_error(None, message)

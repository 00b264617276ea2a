"""Forms: a start form built from the start event's fields, edit-and-fork, human answer."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

from wfdash.workflow import StartEvent, Workflow

from .inputs import InputError, loads, reject_nul

MAX_JSON = 256 * 1024
JSON_INPUT = "input"


class JSONObjectField(forms.CharField):
    """A textarea holding a JSON object; cleaned to a dict."""

    widget = forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", MAX_JSON)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> dict[str, Any] | None:
        text = super().clean(value)
        if not text or not text.strip():
            return None
        parsed = _parse_json(text)
        if not isinstance(parsed, dict):
            raise forms.ValidationError("must be a JSON object")
        return parsed


def _parse_json(text: str) -> Any:
    """JSON a user typed, refused with a form error when unreadable or unstorable."""
    try:
        value = loads(text)
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
        raise forms.ValidationError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise forms.ValidationError("nested too deeply") from None
    try:
        reject_nul(value, "the value")
    except InputError as exc:
        raise forms.ValidationError(str(exc)) from None
    return value


def _field_for(annotation: Any, required: bool, default: Any) -> forms.Field:
    initial = None if default is None or required else default
    if annotation is bool:
        return forms.BooleanField(required=False, initial=bool(default) if not required else False)
    if annotation is int:
        return forms.IntegerField(required=required, initial=initial)
    if annotation is float:
        return forms.FloatField(required=required, initial=initial)
    if annotation is str:
        return forms.CharField(required=required, initial=initial, max_length=10_000)
    return forms.CharField(
        required=required,
        initial=json.dumps(default) if not required else None,
        help_text="JSON",
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
    )


class StartRunForm(forms.Form):
    """Typed start events get one field per model field, plus an optional JSON box that
    replaces them; a plain StartEvent gets the JSON box alone."""

    def __init__(self, workflow: Workflow, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workflow = workflow
        cls = workflow.start_event_class
        self.free_form = cls is StartEvent or not cls.model_fields
        self.json_fields: set[str] = set()
        if self.free_form:
            self.fields["input"] = JSONObjectField(label="Input (JSON object of keyword arguments)")
            return
        for name, info in cls.model_fields.items():
            field = _field_for(info.annotation, info.is_required(), info.default)
            field.label = name
            if info.description:
                field.help_text = info.description
            if field.help_text == "JSON":
                self.json_fields.add(name)
            self.fields[name] = field
        self.fields[JSON_INPUT] = JSONObjectField(
            label="Or the whole start event as JSON (replaces the fields above)",
            widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "mono"}),
        )

    def uses_json(self) -> bool:
        return self.free_form or bool((self.data.get(JSON_INPUT) or "").strip())

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if not self.free_form and self.uses_json():
            # The JSON box replaces the fields: their own errors (a required field left
            # empty) do not apply; the start event's validation judges the JSON.
            for name in list(self.errors):
                if name not in (JSON_INPUT, NON_FIELD_ERRORS):
                    del self.errors[name]
        return cleaned

    def start_fields(self) -> dict[str, Any]:
        """The start event's fields from cleaned data (call after is_valid())."""
        if self.uses_json():
            return self.cleaned_data.get(JSON_INPUT) or {}
        data: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if name == JSON_INPUT or value is None or value == "":
                continue
            if name in self.json_fields:
                try:
                    value = _parse_json(value)
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
                    continue
            data[name] = value
        return data


class EditForkForm(forms.Form):
    output_event = JSONObjectField(label="Output event fields (JSON)")
    store = JSONObjectField(label="Store values to override (JSON object; leave empty to keep)")


class RespondForm(forms.Form):
    response = forms.CharField(max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))


def workflow_doc(workflow: Workflow) -> str:
    """The workflow class's own docstring ("" when it has none: not Workflow's)."""
    doc = type(workflow).__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def describe_start_event(workflow: Workflow) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The start event's fields for people (name, type, default, limits, description) and an
    example input: each field's first example, else its default, else a placeholder."""
    cls = workflow.start_event_class
    if cls is StartEvent or not cls.model_fields:
        return [], {}
    schema = cls.model_json_schema()
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows: list[dict[str, Any]] = []
    example: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        prop = properties.get(name, {})
        kind = _type_name(prop)
        rows.append(
            {
                "name": name,
                "type": kind,
                "required": name in required,
                "default": None if name in required else json.dumps(prop.get("default", info.default)),
                "limits": _limits(prop),
                "description": info.description or "",
            }
        )
        if info.examples:
            example[name] = info.examples[0]
        elif name not in required:
            example[name] = prop.get("default", info.default)
        else:
            example[name] = _PLACEHOLDERS.get(kind, None)
    return rows, example


_PLACEHOLDERS: dict[str, Any] = {"string": "…", "integer": 1, "number": 1.0, "boolean": True, "object": {}, "array": []}


def _type_name(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    options = [str(o.get("type", "any")) for o in prop.get("anyOf", [])]
    return " or ".join(options) if options else "any"


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    bounds = (
        ("minimum", "≥ {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "≤ {}"),
        ("exclusiveMaximum", "< {}"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
    )
    for key, text in bounds:
        if key in prop:
            value = prop[key]
            parts.append(text.format(f"{value:,}" if isinstance(value, int) else value))
    return ", ".join(parts)

"""Forms: a start form built from the start event's fields, edit-and-fork, human answer."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from wfdash.workflow import StartEvent, Workflow

from .inputs import InputError, reject_nul

MAX_JSON = 256 * 1024


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
        value = json.loads(text)
    except json.JSONDecodeError as exc:
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
    """Typed start events get one field per model field; plain StartEvent a JSON object box."""

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

    def start_fields(self) -> dict[str, Any]:
        """The start event's fields from cleaned data (call after is_valid())."""
        if self.free_form:
            return self.cleaned_data.get("input") or {}
        data: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if value is None or value == "":
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

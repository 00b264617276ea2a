"""Pages of sweeps: the sweep form of a checkpoint, and an experiment's live matrix."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from . import access, inputs
from .experiments import MAX_VARIANTS, VariantError, create_sweep, matrix, parse_edit_lines, version
from .forms import MAX_JSON
from .models import Experiment
from .views import checkpoint_for

# Store keys offered as grid fields on the form (a datalist; any key may be typed).
STORE_KEYS_SHOWN = 200


def _json_box(label: str, rows: int) -> forms.CharField:
    """An optional monospaced box of JSON (or JSON Lines), at most MAX_JSON characters."""
    widget = forms.Textarea(attrs={"rows": rows, "spellcheck": "false", "class": "mono"})
    return forms.CharField(label=label, required=False, max_length=MAX_JSON, widget=widget)


class SweepForm(forms.Form):
    """Either a list of edits (JSON Lines or a JSON array), or one or two fields with values."""

    name = forms.CharField(label="Name (optional)", max_length=200, required=False)
    variants = _json_box("Variants: one edit object per line, or a JSON array", 8)
    field_1 = forms.CharField(label="Field", required=False, max_length=300)
    values_1 = _json_box("Values, one per line (JSON, or plain text for a string)", 4)
    field_2 = forms.CharField(label="Second field (optional)", required=False, max_length=300)
    values_2 = _json_box("Its values, one per line", 4)

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        for name in ("name", "variants", "field_1", "values_1", "field_2", "values_2"):
            try:
                inputs.reject_nul(cleaned.get(name), "the value")
            except inputs.InputError as exc:
                self.add_error(name, str(exc))
        if self.errors:
            return cleaned
        listed = (cleaned.get("variants") or "").strip()
        grid = [(i, path) for i in (1, 2) if (path := (cleaned.get(f"field_{i}") or "").strip())]
        if listed and grid:
            raise forms.ValidationError("Give a list of edits or fields to vary, not both.")
        if not listed and not grid:
            raise forms.ValidationError("Give a list of edits, or a field and its values.")
        if listed:
            try:
                self.lines = parse_edit_lines(listed)
            except inputs.InputError as exc:
                self.add_error("variants", str(exc))
            return cleaned
        self.grid: dict[str, list[Any]] = {}
        for i, path in grid:
            try:
                values = [_value(line) for line in (cleaned.get(f"values_{i}") or "").splitlines() if line.strip()]
            except inputs.InputError as exc:
                self.add_error(f"values_{i}", str(exc))
                continue
            if not values:
                self.add_error(f"values_{i}", "List at least one value.")
            elif len(values) > MAX_VARIANTS:
                self.add_error(f"values_{i}", f"At most {MAX_VARIANTS} values.")
            elif path in self.grid:
                self.add_error(f"field_{i}", "Vary two different fields.")
            else:
                self.grid[path] = values
        return cleaned

    def sweep(self) -> dict[str, Any]:
        """create_sweep's keyword arguments (after is_valid())."""
        if hasattr(self, "lines"):
            return {"variants": [value for _, value in self.lines]}
        return {"grid": self.grid}

    def place(self, exc: inputs.InputError) -> None:
        """Show a refusal beside the field it is about, naming the variant (and its line)."""
        message = str(exc)
        if isinstance(exc, VariantError) and hasattr(self, "lines"):
            message = f"{self.lines[exc.index][0].capitalize()}, {message}"
        if hasattr(self, "lines"):
            self.add_error("variants", message)
        elif exc.field and exc.field.startswith("grid."):
            path = exc.field[len("grid.") :]
            self.add_error("field_1" if path == self.cleaned_data.get("field_1", "").strip() else "field_2", message)
        else:
            self.add_error(None, message)


def _value(line: str) -> Any:
    """A value typed on a line: JSON when it reads as JSON (0.9, true, "x", {...}), else the text;
    NaN and Infinity, which are not JSON numbers, are refused rather than stored."""
    try:
        return inputs.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return line.strip()
    except ValueError as exc:  # NaN, Infinity
        raise inputs.InputError(f"{line.strip()[:40]}: {exc}") from None


@access.requires(access.ADD)
@require_http_methods(["GET", "POST"])
def checkpoint_sweep(request: HttpRequest, checkpoint_id: uuid.UUID) -> HttpResponse:
    c = checkpoint_for(request, checkpoint_id)
    form = SweepForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            experiment = create_sweep(c.id, user=request.user, name=form.cleaned_data["name"], **form.sweep())
        except inputs.InputError as exc:
            form.place(exc)
        else:
            return redirect("experiment-detail", experiment_id=experiment.id)
    data = c.output_event.get("data") if isinstance(c.output_event, dict) else None
    try:
        store_keys = sorted(c.context_state().get("store", {}))[:STORE_KEYS_SHOWN]
    except Exception:  # a damaged checkpoint still gets the form; create_sweep refuses it
        store_keys = []
    fields = [f"output_event.{k}" for k in (data or {})] + [f"store.{k}" for k in store_keys]
    example = json.dumps({"output_event": data}, ensure_ascii=False) if isinstance(data, dict) else ""
    context = {
        "c": c,
        "form": form,
        "fields": fields,
        "output_data": data,
        "example": example,
        "max_variants": MAX_VARIANTS,
    }
    return render(request, "runs/sweep.html", context, status=400 if form.errors else 200)


@access.requires(access.VIEW)
@require_GET
def experiment_detail(request: HttpRequest, experiment_id: uuid.UUID) -> HttpResponse:
    """The experiment's header and matrix; htmx polls `?fragment=matrix&since=<version>` until every
    run ended, answered 204 (one query) while nothing changed."""
    try:
        qs = Experiment.objects.select_related("created_by", "checkpoint").defer(
            "checkpoint__input_event", "checkpoint__output_event", "checkpoint__state"
        )
        experiment = qs.get(pk=experiment_id)
    except Experiment.DoesNotExist:
        raise Http404("no such experiment") from None
    fragment = request.GET.get("fragment") == "matrix"
    if fragment and request.GET.get("since") == version(experiment):
        return HttpResponse(status=204)  # htmx keeps the matrix it has, and polls again
    context = {"experiment": experiment, "m": matrix(experiment)}
    if fragment:
        return render(request, "runs/_experiment_matrix.html", context)
    return render(request, "runs/experiment.html", context)

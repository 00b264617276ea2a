"""Template helpers: JSON as a collapsible tree (escaped), durations."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

MAX_DEPTH = 12


def _scalar(value: Any) -> str:
    if value is None:
        return '<span class="j-null">null</span>'
    if isinstance(value, bool):
        return f'<span class="j-bool">{"true" if value else "false"}</span>'
    if isinstance(value, int | float):
        return f'<span class="j-num">{escape(json.dumps(value))}</span>'
    return f'<span class="j-str">{escape(json.dumps(str(value), ensure_ascii=False))}</span>'


def _tree(value: Any, depth: int) -> str:
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return f'<span class="j-str">{escape(json.dumps(value)[:500])}</span>'
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = "".join(
            f'<li><span class="j-key">{escape(str(k))}</span>: {_tree(v, depth + 1)}</li>' for k, v in value.items()
        )
        opened = " open" if depth < 2 else ""
        return f"<details{opened}><summary>{{{len(value)} keys}}</summary><ul>{items}</ul></details>"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = "".join(f"<li>{_tree(v, depth + 1)}</li>" for v in value)
        opened = " open" if depth < 2 else ""
        return f"<details{opened}><summary>[{len(value)} items]</summary><ol start=0>{items}</ol></details>"
    return _scalar(value)


@register.filter
def json_tree(value: Any) -> SafeString:
    """Render JSON-ready data as nested <details>; every string is escaped."""
    return mark_safe(f'<div class="json">{_tree(value, 0)}</div>')  # noqa: S308 - built from escaped parts


@register.filter
def json_pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def json_compact(value: Any) -> str:
    """One-line JSON, as typed on a command line (escaped by the template like any text)."""
    return json.dumps(value, ensure_ascii=False)


@register.filter
def ms(value: Any) -> str:
    """Milliseconds as a short human duration."""
    if value is None or value == "":
        return "–"
    return format_ms(float(value))


@register.filter
def short_id(value: Any) -> str:
    """The first 8 characters of an id: enough to find it (ids are accepted by prefix)."""
    return str(value)[:8]


@register.simple_tag
def query_with(active: dict[str, str], key: str, value: str) -> str:
    """The query string of the filters in `active` with `key` set to `value` (URL-encoded)."""
    return urlencode({**active, key: value})


def format_ms(v: float) -> str:
    """Milliseconds as "51.2 ms", "320 µs", "1.50 s" or "2.1 min"."""
    if v < 1:
        return f"{v * 1000:.0f} µs"
    if v < 1000:
        return f"{v:.1f} ms"
    if v < 60_000:
        return f"{v / 1000:.2f} s"
    return f"{v / 60_000:.1f} min"

"""Template helpers for code versions: a unified diff as classified lines (escaped by the template)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) per line of a unified diff: headers, hunks, added, removed, context."""
    out: list[tuple[str, str]] = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            kind = "d-file"
        elif line.startswith("@@"):
            kind = "d-hunk"
        elif line.startswith("+"):
            kind = "d-add"
        elif line.startswith("-"):
            kind = "d-del"
        else:
            kind = "d-ctx"
        out.append((kind, line))
    return out

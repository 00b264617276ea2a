"""`q=`: words searched inside checkpoints' input events, output events and store values.

One meaning on both databases: `q` is split into words (runs of letters and digits, as the
index splits the text, see runs/search_index.py); a checkpoint matches when it contains every
word (AND), each as the start of a word of its text, case-insensitively ("chem" finds
"Chemistry"). Words of one or two characters match whole words only: as prefixes they would
match most of the index. The filter combines (AND) with every other filter of
runs/filters.py, so the explorer, the API and the CLI agree.

Which field matched, and where, is worked out here in Python for the rows of one page only
(`matches`), from the rows' own JSON, never in SQL over everything.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from . import search_index
from .filters import FilterError
from .search_index import EVENT_TAG, FTS_TABLE, SEARCH_TABLE

MAX_QUERY_CHARS = 200
MAX_WORDS = 16
MIN_PREFIX = 3
_WORD = re.compile(r"[^\W_]+")
# Words matching more checkpoints than this are "common". On SQLite, instead of reading every
# match and sorting them, the page walks the newest checkpoints (the other filters' index) and
# looks each one up in the set of matching index rows, till the page is full; on PostgreSQL the
# planner decides. Fewer are read first (one index read) and named to the query.
COMMON_MATCHES = 2_000


class SearchError(FilterError):
    """`q` cannot be searched; the message says why."""

    field = "q"


@dataclass(frozen=True)
class Search:
    text: str
    words: tuple[str, ...]  # lower case, in the order typed, without repeats

    def prefix(self, word: str) -> bool:
        return len(word) >= MIN_PREFIX

    def fts5(self) -> str:
        """The FTS5 query: every word quoted (FTS5 operators typed by a user are plain text)."""
        return " AND ".join('"' + w.replace('"', '""') + '"' + ("*" if self.prefix(w) else "") for w in self.words)

    def tsquery(self) -> str:
        """The PostgreSQL tsquery (to_tsquery syntax), every word quoted."""
        quoted = ("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in self.words)
        return " & ".join(q + (":*" if self.prefix(w) else "") for q, w in zip(quoted, self.words, strict=True))


def parse(value: str | None) -> Search | None:
    """The words of `q`; None when there is nothing to search for (blank). FilterError when
    `q` is too long or has no letter or digit at all."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"q must be at most {MAX_QUERY_CHARS} characters, got {len(text)}")
    words: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFC", text)):
        if word.lower() not in words:
            words.append(word.lower())
    if not words:
        raise SearchError(f"q must contain a letter or digit to search for, got {text[:60]!r}")
    if len(words) > MAX_WORDS:
        raise SearchError(f"q may have at most {MAX_WORDS} words, got {len(words)}")
    return Search(text, tuple(words))


def matching(qs: QuerySet[Any], search: Search) -> QuerySet[Any]:
    """`qs` (checkpoints) narrowed to those containing every word of `search`."""
    conn = connections[qs.db]
    search_index.catch_up(conn)  # what workers have not indexed yet
    if conn.vendor == "postgresql":
        found = f"SELECT checkpoint_id FROM {SEARCH_TABLE} WHERE body @@ to_tsquery('simple', %s)"  # noqa: S608
        with conn.cursor() as cursor:
            cursor.execute(f"{found} LIMIT {COMMON_MATCHES}", [search.tsquery()])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:  # an empty IN () cannot be compiled into the queries built on qs
            return qs.filter(id__in=RawSQL("SELECT NULL::uuid WHERE false", []))
        if len(ids) < COMMON_MATCHES:
            # Few matches: name them. The planner guesses a prefix query matches far more rows
            # than it does and walks the newest checkpoints instead (0.9 s at 1M rows for 10).
            return qs.filter(id__in=ids)
        # Many: the planner weighs the word's frequency (GIN statistics) against the filters.
        return qs.filter(id__in=RawSQL(found, [search.tsquery()]))
    if conn.vendor != "sqlite":
        raise SearchError(f"q is not supported on {conn.vendor}")
    expr = search.fts5()
    fts = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"  # noqa: S608
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({fts} LIMIT {COMMON_MATCHES})", [expr])  # noqa: S608
            common = cursor.fetchone()[0] >= COMMON_MATCHES
    except DatabaseError as exc:  # a word FTS5 cannot take as typed
        raise SearchError(f"q cannot be searched as typed ({exc}); use letters and digits") from None
    if not common:
        # Few matches: collect them (one index read), then filter and sort those.
        return qs.filter(
            id__in=RawSQL(f"SELECT checkpoint_id FROM {SEARCH_TABLE} WHERE id IN ({fts})", [expr])  # noqa: S608
        )
    # Many: SQLite's planner cannot weigh a full-text match, so say how: walk the newest
    # checkpoints (by the filters' index) and look each one up in the set of matches (read
    # once), till a page is full. (Refers to the checkpoint table by name: `qs` must not be
    # nested in another query.)
    table = conn.ops.quote_name(qs.query.base_table or qs.model._meta.db_table)
    probe = f'(SELECT s.id FROM {SEARCH_TABLE} s WHERE s.checkpoint_id = {table}."id") IN ({fts})'  # noqa: S608
    return qs.filter(RawSQL(probe, [expr], output_field=BooleanField()))


# -- where it matched: for the rows of one page -------------------------------------------

SNIPPET_CHARS = 120
MATCHES_SHOWN = 3
# Line breaks become spaces (one for one, so the ranges stay right).
_ONE_LINE = {ord(c): " " for c in "\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


@dataclass
class Match:
    """One field of a checkpoint where a word of the search was found."""

    field: str  # "input_event.topic", "output_event.joke", "store.notes.deep[0]"
    snippet: str  # plain text around the match, cut with "…"
    ranges: list[tuple[int, int]]  # [start, end) of each matched word in `snippet`

    @property
    def parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, marked) pieces, for a template to escape and mark."""
        out: list[tuple[str, bool]] = []
        at = 0
        for start, end in self.ranges:
            if start > at:
                out.append((self.snippet[at:start], False))
            out.append((self.snippet[start:end], True))
            at = end
        if at < len(self.snippet):
            out.append((self.snippet[at:], False))
        return out

    @property
    def where(self) -> str:
        """What the field is, in words: "input event topic", "store key notes"."""
        head, _, rest = self.field.partition(".")
        if head == "store":
            return f"store key {rest}"
        return f"{head.replace('_', ' ')} {rest}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "snippet": self.snippet, "ranges": [list(r) for r in self.ranges]}


@dataclass
class _Pattern:
    search: Search
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        alternatives = [
            re.escape(w) + ("" if self.search.prefix(w) else r"(?![^\W_])")
            for w in sorted(self.search.words, key=len, reverse=True)
        ]
        # A word starts where no letter or digit precedes it, as the index splits words.
        self.regex = re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + ")", re.IGNORECASE)


def matches_for(rows: list[Any], search: Search) -> dict[Any, list[Match]]:
    """Where `search`'s words occur in each checkpoint of `rows` (at most MATCHES_SHOWN fields
    each), read from the rows' events and stored store values: one query for the page."""
    from .models import Blob, Checkpoint

    ids = [row.pk for row in rows]
    values = {
        pk: (inp, out, store)
        for pk, inp, out, store in Checkpoint.objects.filter(pk__in=ids).values_list(
            "pk", "input_event", "output_event", "state__store"
        )
    }
    refs = {
        str(entry["b"])
        for _, _, store in values.values()
        if isinstance(store, dict)
        for entry in store.values()
        if isinstance(entry, dict) and "v" not in entry and "b" in entry
    }
    blobs = dict(Blob.objects.filter(hash__in=refs).values_list("hash", "data")) if refs else {}
    pattern = _Pattern(search)
    out: dict[Any, list[Match]] = {}
    for pk in ids:
        if pk not in values:
            continue
        found: list[Match] = []
        for path, text in _leaves_of(*values[pk], blobs):
            match = _snippet(path, text, pattern.regex)
            if match is not None:
                found.append(match)
                if len(found) == MATCHES_SHOWN:
                    break
        out[pk] = found
    return out


def _leaves_of(input_event: Any, output_event: Any, store: Any, blobs: dict[str, str]) -> Iterator[tuple[str, str]]:
    for name, event in (("input_event", input_event), ("output_event", output_event)):
        if isinstance(event, dict):
            yield from _leaves(event.get("data"), name)
    if not isinstance(store, dict):
        return
    for key, entry in store.items():
        if not isinstance(entry, dict):
            continue
        if "v" in entry:
            value = entry["v"]
        elif str(entry.get("b")) in blobs:
            try:
                value = json.loads(blobs[str(entry["b"])])
            except ValueError:
                continue
        else:
            continue
        if isinstance(value, dict) and isinstance(value.get(EVENT_TAG), dict):
            value = value[EVENT_TAG].get("data")
        yield from _leaves(value, f"store.{key}")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every string and number inside `value`, as the index reads them."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int | float):
        yield path, str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")


def _snippet(path: str, text: str, regex: re.Pattern[str]) -> Match | None:
    """The part of `text` around its first match, every match inside it marked."""
    first = regex.search(text)
    if first is None:
        return None
    start = max(0, first.start() - SNIPPET_CHARS // 3)
    if start:  # begin at a word boundary
        space = text.find(" ", start, first.start())
        start = space + 1 if space != -1 else start
    end = min(len(text), start + SNIPPET_CHARS)
    head = "…" if start else ""
    tail = "…" if end < len(text) else ""
    body = text[start:end]
    ranges = [(len(head) + m.start(), len(head) + m.end()) for m in regex.finditer(body)]
    return Match(path, (head + body + tail).translate(_ONE_LINE), ranges)

"""`q=`: words inside input events, output events and store values, on both databases, through the
explorer page, the API and the CLI; the index kept by the database's own triggers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client

from runs import filters, search, search_index
from runs.models import ApiToken, Blob, Checkpoint, Run, RunStatus
from tests.runs.factories import EMPTY_STATE, checkpoint

pytestmark = pytest.mark.django_db

BLOB_HASH = "b" * 64


def _state(store: dict[str, Any]) -> dict[str, Any]:
    """A stored full record whose store entries are given as stored ({"v": ...} or {"b": ...})."""
    return {**EMPTY_STATE, "store": store}


@pytest.fixture
def rows() -> dict[str, Checkpoint]:
    """Checkpoints with words in each place the index reads, and words only in places it must not."""
    Blob.objects.create(hash=BLOB_HASH, data=json.dumps({"report": "a long story about " + "walrus " * 60}))
    chain = Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED)
    joke = Run.objects.create(workflow="joke", status=RunStatus.SUCCEEDED)
    return {
        "input": checkpoint(
            chain,
            seq=1,
            step="begin",
            input_event={"type": "ChainStart", "data": {"topic": "Chemistry of ions", "steps": 31415}},
        ),
        "output": checkpoint(
            chain,
            seq=2,
            step="tick",
            output_event={"type": "Tick", "data": {"joke": "An atom lost an electron. <script>alert(1)</script>"}},
        ),
        "nested": checkpoint(
            chain,
            seq=3,
            step="tick",
            state=_state({"notes": {"v": {"deep": ["alpha bravo", {"deeper": "charlie"}]}}, "flag": {"v": True}}),
        ),
        "blob": checkpoint(chain, seq=4, step="tick", state=_state({"big": {"b": BLOB_HASH}})),
        "event_in_store": checkpoint(
            joke,
            seq=1,
            step="begin",
            state=_state({"kept": {"v": {"__event__": {"type": "HiddenTypeName", "data": {"line": "delta echo"}}}}}),
        ),
        "joke_tick": checkpoint(
            joke, seq=2, step="tick", output_event={"type": "Tick", "data": {"joke": "alpha centauri"}}
        ),
    }


def found(params: dict[str, str]) -> set[int]:
    qs, _ = filters.checkpoint_filters(params)
    return {c.pk for c in qs}


def ids(rows: dict[str, Checkpoint], *names: str) -> set[int]:
    return {rows[name].pk for name in names}


# -- what is found, and what is not ----------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("chemistry", ["input"]),  # a word of the input event, any case
        ("31415", ["input"]),  # a number
        ("electron", ["output"]),
        ("bravo", ["nested"]),  # inside a list inside a store value
        ("charlie", ["nested"]),  # inside an object inside that list
        ("walrus", ["blob"]),  # a large store value, kept as a blob
        ("echo", ["event_in_store"]),  # the data of an event kept in the store
        ("alpha", ["nested", "joke_tick"]),
    ],
)
def test_it_finds_words_inside_events_and_store_values(
    rows: dict[str, Checkpoint], q: str, expected: list[str]
) -> None:
    assert found({"q": q}) == ids(rows, *expected)


@pytest.mark.parametrize(
    "q",
    [
        "topic",  # an event field's name
        "notes",  # a store key
        "deeper",  # a key nested in a store value
        "ChainStart",  # an event type name
        "HiddenTypeName",  # the type name of an event kept in the store
        "true",  # booleans are not text
        BLOB_HASH,  # the blob's reference
        "report",  # a key inside the blob
    ],
)
def test_it_does_not_find_keys_type_names_or_references(rows: dict[str, Checkpoint], q: str) -> None:
    assert found({"q": q}) == set()


def test_words_of_three_letters_or_more_match_word_starts_shorter_ones_whole_words(rows: dict[str, Checkpoint]) -> None:
    assert found({"q": "chem"}) == ids(rows, "input")
    assert found({"q": "lectron"}) == set()  # the start of a word, not any substring
    assert found({"q": "io"}) == set()  # two letters: a whole word only
    assert found({"q": "an"}) == ids(rows, "output")  # "An atom"


def test_every_word_must_match_anywhere_in_the_checkpoint(rows: dict[str, Checkpoint]) -> None:
    assert found({"q": "alpha bravo"}) == ids(rows, "nested")
    assert found({"q": "alpha centauri"}) == ids(rows, "joke_tick")
    assert found({"q": "alpha electron"}) == set()


def test_q_combines_with_workflow_and_step(rows: dict[str, Checkpoint]) -> None:
    assert found({"q": "alpha", "workflow": "joke"}) == ids(rows, "joke_tick")
    assert found({"q": "alpha", "workflow": "chain", "step": "tick"}) == ids(rows, "nested")
    assert found({"q": "alpha", "workflow": "chain", "step": "begin"}) == set()
    assert found({"q": "chemistry", "run": str(rows["input"].run_id)}) == ids(rows, "input")


def test_a_blob_that_is_not_json_is_skipped_not_a_failed_write(rows: dict[str, Checkpoint]) -> None:
    Blob.objects.create(hash="c" * 64, data="not json {")
    row = checkpoint(
        rows["input"].run,
        seq=9,
        output_event={"type": "Tick", "data": {"joke": "still indexed"}},
        state=_state({"broken": {"b": "c" * 64}}),
    )
    assert found({"q": "still indexed"}) == {row.pk}
    assert search.matches_for([row], search.parse("indexed"))[row.pk][0].field == "output_event.joke"


def test_a_blank_q_is_no_filter(rows: dict[str, Checkpoint]) -> None:
    assert found({"q": "   "}) == {c.pk for c in Checkpoint.objects.all()}


def test_the_index_follows_deletes_and_updates(rows: dict[str, Checkpoint]) -> None:
    Checkpoint.objects.filter(pk=rows["output"].pk).update(
        output_event={"type": "Tick", "data": {"joke": "a proton now"}}
    )
    assert found({"q": "electron"}) == set()
    assert found({"q": "proton"}) == ids(rows, "output")
    rows["nested"].run.delete()  # cascades to the chain's checkpoints
    assert found({"q": "bravo"}) == set()
    assert found({"q": "alpha"}) == ids(rows, "joke_tick")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {search_index.SEARCH_TABLE}")
        assert cursor.fetchone()[0] == Checkpoint.objects.count()


def test_installing_again_indexes_rows_written_without_the_index(rows: dict[str, Checkpoint]) -> None:
    search_index.catch_up(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {search_index.SEARCH_TABLE}")
    assert found({"q": "bravo"}) == set()
    search_index.install(connection)  # what the migration does on a database with checkpoints
    assert found({"q": "bravo"}) == ids(rows, "nested")


def test_a_page_of_many_matches_is_the_same_by_either_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite a common word takes the other plan (walk the newest, probe the index): same rows, same pages."""
    run = Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED)
    for seq in range(1, 8):
        word = "common" if seq != 4 else "other"
        checkpoint(run, seq=seq, step="tick", output_event={"type": "Tick", "data": {"joke": f"{word} {seq}"}})

    def pages(size: int) -> list[list[int]]:
        out, before = [], None
        while True:
            page = filters.paginate(filters.checkpoint_filters({"q": "common"})[0], before, size=size)
            out.append([c.seq for c in page.rows])
            if not (before := page.next_cursor):
                return out

    few = pages(2)
    counts_few = filters.checkpoint_counts(filters.checkpoint_filters({"q": "common"})[0]).total
    monkeypatch.setattr(search, "COMMON_MATCHES", 2)
    assert pages(2) == few
    assert sorted(seq for page in few for seq in page) == [1, 2, 3, 5, 6, 7]
    assert filters.checkpoint_counts(filters.checkpoint_filters({"q": "common"})[0]).total == counts_few == 6


# -- matches: which field, and where ---------------------------------------------------------


def test_matches_name_the_field_and_mark_the_words(rows: dict[str, Checkpoint]) -> None:
    where = search.matches_for([rows["nested"], rows["output"]], search.parse("bravo ELECTRON"))
    [nested] = where[rows["nested"].pk]
    assert (nested.field, nested.snippet) == ("store.notes.deep[0]", "alpha bravo")
    assert [nested.snippet[a:b] for a, b in nested.ranges] == ["bravo"]
    assert nested.where == "store key notes.deep[0]"
    [output] = where[rows["output"].pk]
    assert output.field == "output_event.joke"
    assert [output.snippet[a:b] for a, b in output.ranges] == ["electron"]
    assert output.parts[1] == ("electron", True)


def test_a_snippet_is_cut_around_the_match() -> None:
    text = "word " * 100 + "needle" + " tail" * 100
    [match] = search.matches_for(
        [checkpoint(output_event={"type": "Tick", "data": {"text": text}})], search.parse("needle")
    ).popitem()[1]
    assert match.snippet.startswith("…") and match.snippet.endswith("…")
    assert len(match.snippet) <= search.SNIPPET_CHARS + 2
    assert [match.snippet[a:b] for a, b in match.ranges] == ["needle"]


# -- the explorer page, the API and the CLI ----------------------------------------------------


@pytest.fixture
def client_in(client: Client) -> Client:
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    user.user_permissions.add(Permission.objects.get(codename="view_run", content_type__app_label="runs"))
    client.force_login(user)
    return client


@pytest.fixture
def api() -> Client:
    user = get_user_model().objects.create_user("bob", password="pw-bob-123")
    user.user_permissions.add(Permission.objects.get(codename="view_run", content_type__app_label="runs"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)[1]}")


def test_the_explorer_marks_the_match_and_escapes_the_rest(rows: dict[str, Checkpoint], client_in: Client) -> None:
    response = client_in.get("/checkpoints/", {"q": "electron", "workflow": "chain"})
    assert response.status_code == 200
    html = response.content.decode()
    assert [c["seq"] for c in response.context["checkpoints"]] == [2]
    assert "<mark>electron</mark>" in html
    assert "output event joke" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'name="q" value="electron"' in html
    # The next page link and the facets keep q.
    assert "q=electron" in html


def test_the_explorer_names_a_bad_q(client_in: Client) -> None:
    response = client_in.get("/checkpoints/", {"q": "x" * 201})
    assert response.status_code == 400
    assert "q must be at most 200 characters" in response.content.decode()


def test_the_api_lists_matches_with_q_and_null_without(rows: dict[str, Checkpoint], api: Client) -> None:
    body = api.get("/api/checkpoints/", {"q": "bravo"}).json()
    [item] = body["items"]
    assert item["id"] == str(rows["nested"].pk)
    assert item["matches"] == [{"field": "store.notes.deep[0]", "snippet": "alpha bravo", "ranges": [[6, 11]]}]
    assert all(item["matches"] is None for item in api.get("/api/checkpoints/").json()["items"])


def test_the_api_combines_q_with_the_other_filters(rows: dict[str, Checkpoint], api: Client) -> None:
    body = api.get("/api/checkpoints/", {"q": "alpha", "workflow": "joke", "step": "tick"}).json()
    assert [item["id"] for item in body["items"]] == [str(rows["joke_tick"].pk)]


HOSTILE = ['"', '"alpha', "alpha*", "*", "NEAR(alpha bravo)", "alpha OR bravo", "'", "alpha'--", "%", "%alpha%",
           "a:*", "alpha & !bravo", "(", ")", "^alpha", "-alpha", "alpha\\", "\\", "{}", "Ünïcödé", "日本語",
           "🙂", "alpha\x00bravo", "AND", "NOT alpha", "alpha NEAR bravo", "col:alpha", "body:alpha",
           "x" * 200]  # fmt: skip


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_q_gives_results_or_a_clean_4xx(
    rows: dict[str, Checkpoint], api: Client, client_in: Client, q: str
) -> None:
    response = api.get("/api/checkpoints/", {"q": q})
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["error"]["field"] == "q"
    page = client_in.get("/checkpoints/", {"q": q})
    assert page.status_code in (200, 400)


def test_a_lone_surrogate_or_nul_in_q_is_only_a_separator(rows: dict[str, Checkpoint]) -> None:
    assert search.parse("alpha\ud800bravo\x00") == search.Search("alpha\ud800bravo\x00", ("alpha", "bravo"))
    assert found({"q": "alpha\ud800bravo"}) == ids(rows, "nested")


def test_operators_typed_in_q_are_words(rows: dict[str, Checkpoint], api: Client) -> None:
    # "OR" and "NEAR" are words to look for, not FTS5 operators: nothing has them.
    assert api.get("/api/checkpoints/", {"q": "alpha OR bravo"}).json()["items"] == []
    assert len(api.get("/api/checkpoints/", {"q": '"alpha" bravo*'}).json()["items"]) == 1


def test_the_api_refuses_a_q_over_200_characters(api: Client) -> None:
    response = api.get("/api/checkpoints/", {"q": "x" * 201})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "q"


def test_the_api_refuses_a_q_without_letters_or_digits(api: Client) -> None:
    response = api.get("/api/checkpoints/", {"q": "*&%"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "bad_filter",
        "message": "q must contain a letter or digit to search for, got '*&%'",
        "field": "q",
    }


def test_the_checkpoints_command_takes_q(rows: dict[str, Checkpoint], capsys: pytest.CaptureFixture[str]) -> None:
    call_command("checkpoints", "--q", "alpha", "--workflow", "chain", "--json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == [str(rows["nested"].pk)]
    call_command("checkpoints", "-q", "alpha")
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_the_checkpoints_command_names_a_bad_q() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--q must contain a letter or digit"):
        call_command("checkpoints", "--q", "***")


# -- database-specific -------------------------------------------------------------------


@pytest.fixture
def on_sqlite() -> Iterator[None]:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's index")
    yield


def test_a_table_rebuild_loses_the_triggers_and_migrate_puts_them_back(
    on_sqlite: None, rows: dict[str, Checkpoint]
) -> None:
    with connection.cursor() as cursor:
        for name in ("insert", "delete", "update"):
            cursor.execute(f"DROP TRIGGER {search_index.SEARCH_TABLE}_{name}")
    checkpoint(rows["input"].run, seq=9, output_event={"type": "Tick", "data": {"joke": "written meanwhile"}})
    Checkpoint.objects.filter(pk=rows["output"].pk).delete()
    assert search_index.repair(connection) is True
    assert found({"q": "meanwhile"}) == {Checkpoint.objects.get(run=rows["input"].run, seq=9).pk}
    assert found({"q": "electron"}) == set()
    assert search_index.repair(connection) is False
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {search_index.FTS_TABLE} ({search_index.FTS_TABLE}) VALUES ('integrity-check')")


@pytest.mark.postgres
def test_postgresql_answers_q_from_the_gin_index(rows: dict[str, Checkpoint]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's index")
    # The matches are read from the index first (runs/search.py names them to the page's query
    # when they are few): that read is what must use the GIN index.
    sql = f"SELECT checkpoint_id FROM {search_index.SEARCH_TABLE} WHERE body @@ to_tsquery('simple', %s)"
    params = [search.parse("bravo").tsquery()]
    qs, _ = filters.checkpoint_filters({"q": "bravo", "workflow": "chain"})
    assert list(qs)  # and the page's query still finds them
    with connection.cursor() as cursor:
        # A few rows: any plan is cheap. Leave the planner only bitmap scans and hash joins, to
        # show that the index can answer the query's predicate (bench/search.py: the plans at 1M).
        for setting in ("enable_seqscan", "enable_indexscan", "enable_nestloop"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"{search_index.SEARCH_TABLE}_body" in plan, plan

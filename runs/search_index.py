"""The full-text index of checkpoints, kept by the database itself (triggers), for `q=` search.

What is indexed: the string and number values (never keys, never event type names) inside a
checkpoint's input event, its output event and the store values its state record carries (the
keys its step set or changed, or the whole store in a full record), large store values read
from their blob. Booleans and nulls are not indexed. Words are runs of letters and digits;
every other character (ASCII punctuation included) separates them.

The same queue lists checkpoints in the explorer's indexes: those are partial on
`runs_checkpoint.listed`, which a worker's durable write on SQLite leaves false (each of the six
index pages was a page more in every step's commit) and `index_pending()` sets in batches.
Readers of those indexes go through `Checkpoint.listing()`, which lists what is left first
(`list_pending()`, by a partial index of the unlisted rows: a few at most, as workers list theirs).

Both databases keep a side table, `runs_checkpoint_search`, one row per checkpoint with text.
Triggers on `runs_checkpoint` put every inserted or updated checkpoint in a queue
(`runs_checkpoint_search_queue`) and drop deleted ones from the index, so every writer (the
workers' raw inserts, the ORM, imports, deletes and prunes) keeps it current without knowing
it exists. Indexing a checkpoint (reading its JSON, its blobs, the full-text insert) costs more
than writing it did, so it is not done in the write's transaction: `index_pending()` indexes
the queue in batches, from each worker's background task (`keep_indexing`) and, before any
search, from the searcher itself (`catch_up`), so a search never misses a committed
checkpoint. (PostgreSQL's GIN `fastupdate` pending list is the same idea one level down.)

- SQLite: the row holds the text and an FTS5 table (`runs_checkpoint_fts`, external content,
  `detail=none`: no phrase queries, a small index) indexes it under the row's INTEGER PRIMARY
  KEY, which VACUUM keeps (a checkpoint's own rowid it may change).
- PostgreSQL: the row holds a `tsvector` (configuration `simple`: lower case, no stemming,
  positions stripped) under a GIN index. An expression index on `runs_checkpoint` cannot read
  blobs (another table), hence the side table here too.

The text of one checkpoint is capped at MAX_CHARS characters, so no value, however large, makes
a write fail (PostgreSQL refuses a tsvector over 1 MB).

On SQLite, Django rebuilds a table to alter it (copy, drop, rename), which drops its triggers:
`repair()` runs after every `migrate` and puts them back, indexing what was written meanwhile.
"""

from __future__ import annotations

from typing import Any

from wfdash.workflow.serialization import EVENT_TAG  # a store value that is an event

SEARCH_TABLE = "runs_checkpoint_search"
FTS_TABLE = "runs_checkpoint_fts"
QUEUE_TABLE = "runs_checkpoint_search_queue"
MAX_CHARS = 100_000
# Queued checkpoints indexed per transaction by a search catching up.
BATCH = 64
# ... and by a worker's background task: its batch holds the database thread the runs' durable
# writes go through (and SQLite's write lock), so it is kept to a few milliseconds; writes
# that arrive meanwhile go before its next batch.
WORKER_BATCH = 16

# -- SQLite ------------------------------------------------------------------------

_SQLITE_LEAVES = "type IN ('text', 'integer', 'real')"


def _sqlite_text(row: str) -> str:
    """An expression for the searchable text of checkpoint `row` (`new` in a trigger)."""
    # A store entry is {"v": value} or {"b": blob hash}; an event kept in the store is
    # {"__event__": {"type", "data"}}: only its data is searched.
    value = (
        "CASE WHEN json_type(s.value, '$.v') IS NOT NULL THEN s.value -> '$.v' "
        "ELSE (SELECT b.data FROM runs_blob b WHERE b.hash = json_extract(s.value, '$.b') AND json_valid(b.data)) END"
    )
    return f"""(SELECT substr(group_concat(value, ' '), 1, {MAX_CHARS}) FROM (
        SELECT value FROM json_tree({row}.input_event, '$.data') WHERE {_SQLITE_LEAVES}
        UNION ALL SELECT value FROM json_tree({row}.output_event, '$.data') WHERE {_SQLITE_LEAVES}
        UNION ALL SELECT t.value FROM (
            SELECT v.value AS doc, CASE WHEN json_type(v.value, '$.{EVENT_TAG}') = 'object'
                THEN '$.{EVENT_TAG}.data' ELSE '$' END AS root
            FROM (SELECT {value} AS value FROM json_each({row}.state, '$.store') s WHERE s.type = 'object') v
            WHERE v.value IS NOT NULL
        ) d, json_tree(d.doc, d.root) t WHERE t.{_SQLITE_LEAVES}
    ))"""


SQLITE_INSTALL = [
    f"""CREATE TABLE IF NOT EXISTS {SEARCH_TABLE} (
        id INTEGER PRIMARY KEY, checkpoint_id char(32) NOT NULL UNIQUE, body TEXT NOT NULL)""",
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(body, content='{SEARCH_TABLE}',
        content_rowid='id', detail='none', columnsize=0, prefix='3 4', tokenize='unicode61 remove_diacritics 0')""",
    f"""CREATE TRIGGER IF NOT EXISTS {SEARCH_TABLE}_ai AFTER INSERT ON {SEARCH_TABLE} BEGIN
        INSERT INTO {FTS_TABLE} (rowid, body) VALUES (new.id, new.body); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {SEARCH_TABLE}_ad AFTER DELETE ON {SEARCH_TABLE} BEGIN
        INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); END""",
    f"CREATE TABLE IF NOT EXISTS {QUEUE_TABLE} (id INTEGER PRIMARY KEY, checkpoint_id char(32) NOT NULL)",
]
# On runs_checkpoint: the ones a table rebuild drops.
SQLITE_CHECKPOINT_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {SEARCH_TABLE}_insert AFTER INSERT ON runs_checkpoint BEGIN
        INSERT INTO {QUEUE_TABLE} (checkpoint_id) VALUES (new.id); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {SEARCH_TABLE}_delete AFTER DELETE ON runs_checkpoint BEGIN
        DELETE FROM {SEARCH_TABLE} WHERE checkpoint_id = old.id; END""",
    f"""CREATE TRIGGER IF NOT EXISTS {SEARCH_TABLE}_update
        AFTER UPDATE OF id, input_event, output_event, state ON runs_checkpoint BEGIN
        DELETE FROM {SEARCH_TABLE} WHERE checkpoint_id = old.id;
        INSERT INTO {QUEUE_TABLE} (checkpoint_id) VALUES (new.id); END""",
]
# The first queued checkpoints (%s: the highest queue id taken), indexed again from scratch.
SQLITE_INDEX_QUEUED = [
    f"""DELETE FROM {SEARCH_TABLE} WHERE checkpoint_id IN (SELECT checkpoint_id FROM {QUEUE_TABLE} WHERE id <= %s)""",
    f"""INSERT INTO {SEARCH_TABLE} (checkpoint_id, body)
        SELECT id, body FROM (SELECT c.id, {_sqlite_text("c")} AS body FROM runs_checkpoint c
                              WHERE c.id IN (SELECT checkpoint_id FROM {QUEUE_TABLE} WHERE id <= %s))
        WHERE body <> ''""",
    f"""UPDATE runs_checkpoint SET listed = 1
        WHERE id IN (SELECT checkpoint_id FROM {QUEUE_TABLE} WHERE id <= %s) AND NOT listed""",
    f"DELETE FROM {QUEUE_TABLE} WHERE id <= %s",
]
SQLITE_BACKFILL = [
    f"DELETE FROM {SEARCH_TABLE} WHERE checkpoint_id NOT IN (SELECT id FROM runs_checkpoint)",
    f"""INSERT INTO {SEARCH_TABLE} (checkpoint_id, body)
        SELECT c.id, {_sqlite_text("c")} AS body FROM runs_checkpoint c
        WHERE body <> '' AND NOT EXISTS (SELECT 1 FROM {SEARCH_TABLE} s WHERE s.checkpoint_id = c.id)""",
]
SQLITE_UNINSTALL = [
    *(f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_{name}" for name in ("insert", "delete", "update", "ai", "ad")),
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
    f"DROP TABLE IF EXISTS {SEARCH_TABLE}",
    f"DROP TABLE IF EXISTS {QUEUE_TABLE}",
]

# -- PostgreSQL ----------------------------------------------------------------------


POSTGRESQL_INSTALL = [
    f"""CREATE TABLE IF NOT EXISTS {SEARCH_TABLE} (checkpoint_id uuid PRIMARY KEY, body tsvector NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {QUEUE_TABLE} (id bigserial PRIMARY KEY, checkpoint_id uuid NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {SEARCH_TABLE}_body ON {SEARCH_TABLE} USING gin (body)",
    # A blob that is not JSON (none should be) is skipped rather than failing the write.
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_json(data text) RETURNS jsonb
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
        BEGIN RETURN data::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$""",
    # Punctuation splits words, as in FTS5's unicode61: PostgreSQL's parser would keep e-mail
    # addresses, URLs, paths and numbers like 3.14 whole (regexp_replace: translate() cost 9
    # times as much). PL/pgSQL keeps the query's plan for the session (a SQL function calling
    # SQL functions cost three times as much per row). A store entry is {"v": value} or
    # {"b": blob hash}; an event kept in the store is {"__event__": {"type", "data"}}: only its
    # data is searched.
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_doc(input_event jsonb, output_event jsonb, state jsonb)
        RETURNS tsvector LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
        BEGIN
        RETURN strip(to_tsvector('simple', regexp_replace(left(coalesce((
            SELECT string_agg(leaf #>> '{{}}', ' ') FROM (
                SELECT input_event -> 'data' AS doc
                UNION ALL SELECT output_event -> 'data'
                UNION ALL SELECT CASE WHEN jsonb_typeof(v) = 'object' AND v ? '{EVENT_TAG}'
                                      THEN v -> '{EVENT_TAG}' -> 'data' ELSE v END
                FROM (SELECT CASE WHEN e.value ? 'v' THEN e.value -> 'v'
                                  ELSE (SELECT {SEARCH_TABLE}_json(b.data) FROM runs_blob b
                                        WHERE b.hash = e.value ->> 'b') END AS v
                      FROM jsonb_each(CASE WHEN jsonb_typeof(state -> 'store') = 'object'
                                           THEN state -> 'store' ELSE '{{}}' END) e
                      WHERE jsonb_typeof(e.value) = 'object') s
            ) docs, jsonb_path_query(docs.doc, 'strict $.** ? (@.type() == "string" || @.type() == "number")') leaf
        ), ''), {MAX_CHARS}), '[[:punct:]]+', ' ', 'g')));
        END $$""",
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {QUEUE_TABLE} (checkpoint_id) SELECT id FROM inserted;
            RETURN NULL;
        END $$""",
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {SEARCH_TABLE} s USING deleted d WHERE s.checkpoint_id = d.id;
            RETURN NULL;
        END $$""",
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {SEARCH_TABLE} WHERE checkpoint_id = OLD.id;
            INSERT INTO {QUEUE_TABLE} (checkpoint_id) VALUES (NEW.id);
            RETURN NULL;
        END $$""",
    f"""CREATE OR REPLACE FUNCTION {SEARCH_TABLE}_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN TRUNCATE {SEARCH_TABLE}, {QUEUE_TABLE}; RETURN NULL; END $$""",
    # One statement-level trigger per INSERT or DELETE statement (a bulk delete or a bulk
    # load costs one join, not a function call per row); updates are rare, per row.
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_insert ON runs_checkpoint",
    f"""CREATE TRIGGER {SEARCH_TABLE}_insert AFTER INSERT ON runs_checkpoint
        REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {SEARCH_TABLE}_inserted()""",
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_delete ON runs_checkpoint",
    f"""CREATE TRIGGER {SEARCH_TABLE}_delete AFTER DELETE ON runs_checkpoint
        REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION {SEARCH_TABLE}_deleted()""",
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_update ON runs_checkpoint",
    f"""CREATE TRIGGER {SEARCH_TABLE}_update AFTER UPDATE OF id, input_event, output_event, state ON runs_checkpoint
        FOR EACH ROW EXECUTE FUNCTION {SEARCH_TABLE}_updated()""",
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_truncate ON runs_checkpoint",
    f"""CREATE TRIGGER {SEARCH_TABLE}_truncate AFTER TRUNCATE ON runs_checkpoint
        FOR EACH STATEMENT EXECUTE FUNCTION {SEARCH_TABLE}_truncated()""",
]
POSTGRESQL_BACKFILL = [
    f"""INSERT INTO {SEARCH_TABLE} (checkpoint_id, body)
        SELECT id, body FROM (SELECT c.id, {SEARCH_TABLE}_doc(c.input_event, c.output_event, c.state) AS body
                              FROM runs_checkpoint c
                              WHERE NOT EXISTS (SELECT 1 FROM {SEARCH_TABLE} s WHERE s.checkpoint_id = c.id)) d
        WHERE body <> ''::tsvector""",
]
POSTGRESQL_UNINSTALL = [
    *(
        f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_{name} ON runs_checkpoint"
        for name in ("insert", "delete", "update", "truncate")
    ),
    *(
        f"DROP FUNCTION IF EXISTS {SEARCH_TABLE}_{name}"
        for name in ("inserted()", "deleted()", "updated()", "truncated()", "doc(jsonb, jsonb, jsonb)", "json(text)")
    ),
    f"DROP TABLE IF EXISTS {SEARCH_TABLE}",
    f"DROP TABLE IF EXISTS {QUEUE_TABLE}",
]


def _postgresql_index_queued(lock: str, limit: int) -> str:
    """Take up to `limit` queued checkpoints off the queue and index them again from scratch; the
    statement's one row is how many it took. `lock`: "SKIP LOCKED" leaves another indexer's batch
    to it (workers); plain "FOR UPDATE" waits for it to commit (a search catching up must not
    run before a batch another indexer is writing)."""
    return f"""WITH batch AS (
            DELETE FROM {QUEUE_TABLE}
            WHERE id IN (SELECT id FROM {QUEUE_TABLE} ORDER BY id LIMIT {int(limit)} FOR UPDATE {lock})
            RETURNING checkpoint_id),
        docs AS (SELECT c.id, {SEARCH_TABLE}_doc(c.input_event, c.output_event, c.state) AS body
                 FROM runs_checkpoint c WHERE c.id IN (SELECT checkpoint_id FROM batch)),
        emptied AS (DELETE FROM {SEARCH_TABLE} s USING docs d WHERE s.checkpoint_id = d.id AND d.body = ''::tsvector),
        indexed AS (INSERT INTO {SEARCH_TABLE} (checkpoint_id, body)
                    SELECT id, body FROM docs WHERE body <> ''::tsvector
                    ON CONFLICT (checkpoint_id) DO UPDATE SET body = EXCLUDED.body),
        listed AS (UPDATE runs_checkpoint SET listed = true
                   WHERE id IN (SELECT checkpoint_id FROM batch) AND NOT listed)
        SELECT count(*) FROM batch"""


def _run(connection: Any, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: Any) -> None:
    """Create the index, its queue and triggers (replacing older ones), and index the
    checkpoints already there."""
    if connection.vendor == "sqlite":
        drop = [f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_{name}" for name in ("insert", "delete", "update")]
        _run(connection, [*SQLITE_INSTALL, *drop, *SQLITE_CHECKPOINT_TRIGGERS, *SQLITE_BACKFILL])
    elif connection.vendor == "postgresql":
        _run(connection, [*POSTGRESQL_INSTALL, *POSTGRESQL_BACKFILL])


def uninstall(connection: Any) -> None:
    if connection.vendor == "sqlite":
        _run(connection, SQLITE_UNINSTALL)
    elif connection.vendor == "postgresql":
        _run(connection, POSTGRESQL_UNINSTALL)


def installed(connection: Any) -> bool:
    """True when the index's table exists (the migration ran)."""
    return SEARCH_TABLE in connection.introspection.table_names()


def repair(connection: Any) -> bool:
    """Put back triggers a table rebuild dropped (SQLite), indexing the rows written without
    them and forgetting deleted ones. True when something was missing."""
    if connection.vendor != "sqlite" or not installed(connection):
        return False
    names = [f"{SEARCH_TABLE}_{name}" for name in ("insert", "delete", "update")]
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(names))
        cursor.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", names)  # noqa: S608
        if cursor.fetchone()[0] == len(names):
            return False
    # Rows written without the triggers were never queued: list them too.
    listing = 'UPDATE runs_checkpoint SET "listed" = 1 WHERE "listed" = 0'
    _run(connection, [*SQLITE_CHECKPOINT_TRIGGERS, *SQLITE_BACKFILL, listing])
    return True


# -- indexing the queue ------------------------------------------------------------------


def index_pending(connection: Any, *, wait: bool = False, limit: int = BATCH) -> int:
    """Index up to `limit` queued checkpoints in one transaction; how many were taken off the
    queue (fewer than `limit`: it is empty now, but for what others are indexing unless `wait`)."""
    from django.db import transaction

    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_postgresql_index_queued("" if wait else "SKIP LOCKED", limit))
            return int(cursor.fetchone()[0])
        cursor.execute(f"SELECT count(*), max(id) FROM (SELECT id FROM {QUEUE_TABLE} ORDER BY id LIMIT {int(limit)})")  # noqa: S608
        taken, last = cursor.fetchone()
        if taken:
            for sql in SQLITE_INDEX_QUEUED:
                cursor.execute(sql, [last])
        return int(taken)


def list_pending(connection: Any) -> int:
    """List the checkpoints durable writes left unlisted (SQLite; see runs.models.Checkpoint),
    found by their partial index: what a reader of the explorer's indexes does first. How many."""
    if connection.vendor != "sqlite":
        return 0  # PostgreSQL lists at write time
    with connection.cursor() as cursor:
        # A read first: a write statement would take the write lock even to change nothing.
        cursor.execute('SELECT 1 FROM runs_checkpoint WHERE "listed" = 0 LIMIT 1')
        if cursor.fetchone() is None:
            return 0
        cursor.execute('UPDATE runs_checkpoint SET "listed" = 1 WHERE "listed" = 0')
        return int(cursor.rowcount)


def catch_up(connection: Any) -> int:
    """Index everything queued before this call: a search then sees every committed checkpoint."""
    if connection.vendor not in ("sqlite", "postgresql"):
        return 0
    total = 0
    while (taken := index_pending(connection, wait=True)) == BATCH:
        total += taken
    return total + taken


async def keep_indexing(interval: float = 0.5) -> None:
    """A worker's background task: index what was queued, in batches, then wait `interval`.

    It runs in a thread of its own, with its own connection: in the database thread the runs'
    durable writes waited behind each batch (and behind PostgreSQL's GIN upkeep), and the load
    drill's commit p99 doubled. On SQLite a batch still holds the write lock for its few ms."""
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def batch() -> int:
        return index_pending(connection, limit=WORKER_BATCH) if _installed_here() else 0

    def close() -> None:
        try:
            connection.close()
        except Exception:  # already broken: the next batch reconnects
            pass

    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-indexer")
    try:
        while True:
            try:
                while await loop.run_in_executor(thread, batch) == WORKER_BATCH:
                    pass
            except Exception:  # the database is away: the next round retries; searches catch up anyway
                logging.getLogger("runs.search_index").exception("indexing checkpoints failed; retrying")
                await loop.run_in_executor(thread, close)
            await asyncio.sleep(interval)
    finally:
        thread.submit(close)
        thread.shutdown(wait=False)


_found: set[str] = set()


def _installed_here() -> bool:
    """Whether this thread's database has the index (asked until it has: migrate may come later)."""
    from django.db import connection

    key = f"{connection.vendor}:{connection.settings_dict['NAME']}"
    if key not in _found and connection.vendor in ("sqlite", "postgresql") and installed(connection):
        _found.add(key)
    return key in _found

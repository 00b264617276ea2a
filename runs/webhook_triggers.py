"""The trigger that records run transitions webhooks may want (runs/webhook_models.py).

A status change that notifies is recorded in the same transaction as the change, whichever
code makes it (the store's group commit, a cancel, the admin), and only while an active
endpoint exists: the worker turns these rows into deliveries (runs/webhooks.py).

Installed by migration 0011. On SQLite a later migration that alters `runs_run` rebuilds
the table (copy, drop, rename), dropping its triggers; `repair()` runs after every
`migrate` (runs/apps.py) and puts it back. Transitions made while it was missing are not
recorded (they cannot be told apart afterwards).
"""

from __future__ import annotations

from typing import Any

NAME = "runs_run_webhook_transition"
NOTIFIED = "'succeeded', 'failed', 'cancelled', 'waiting'"  # webhook_models.EVENTS

SQLITE_INSTALL = [
    f"""
CREATE TRIGGER IF NOT EXISTS {NAME} AFTER UPDATE OF status ON runs_run
FOR EACH ROW WHEN NEW.status <> OLD.status AND NEW.status IN ({NOTIFIED})
BEGIN
    INSERT INTO runs_runtransition (run_id, status, at)
    SELECT NEW.id, NEW.status, NEW.updated_at
    WHERE EXISTS (SELECT 1 FROM runs_webhookendpoint WHERE active);
END;
"""
]

POSTGRESQL_INSTALL = [
    f"""
CREATE OR REPLACE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM runs_webhookendpoint WHERE active) THEN
        INSERT INTO runs_runtransition (run_id, status, at) VALUES (NEW.id, NEW.status, NEW.updated_at);
    END IF;
    RETURN NULL;
END $$;
""",
    f"""
CREATE OR REPLACE TRIGGER {NAME} AFTER UPDATE OF status ON runs_run
FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ({NOTIFIED}))
EXECUTE FUNCTION {NAME}();
""",
]

UNINSTALL = {
    "sqlite": [f"DROP TRIGGER IF EXISTS {NAME}"],
    "postgresql": [f"DROP TRIGGER IF EXISTS {NAME} ON runs_run", f"DROP FUNCTION IF EXISTS {NAME}()"],
}


def _run(connection: Any, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: Any) -> None:
    """Create the trigger (and on PostgreSQL its function); idempotent."""
    if connection.vendor == "sqlite":
        _run(connection, SQLITE_INSTALL)
    elif connection.vendor == "postgresql":
        _run(connection, POSTGRESQL_INSTALL)
    else:
        raise RuntimeError(f"webhooks need a trigger on runs_run; no SQL for {connection.vendor}")


def uninstall(connection: Any) -> None:
    _run(connection, UNINSTALL.get(connection.vendor, []))


def installed(connection: Any) -> bool:
    """True when the trigger exists."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = %s", [NAME])
        else:
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = %s AND tgrelid = 'runs_run'::regclass", [NAME]
            )
        return bool(cursor.fetchone()[0])


def repair(connection: Any) -> bool:
    """Put back the trigger a table rebuild dropped (SQLite), once migration 0011 made its
    tables. True when it was missing."""
    if connection.vendor != "sqlite" or "runs_runtransition" not in connection.introspection.table_names():
        return False
    if installed(connection):
        return False
    install(connection)
    return True

"""A checkpoint's run needs no index of its own: the (run, seq) unique index leads with it, and
every durable step wrote one index page fewer without it. Dropped in place: Django would rebuild
the whole table on SQLite to drop it."""

import django.db.models.deletion
from django.db import migrations, models


def _run_id_indexes(schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "runs_checkpoint")
    return [
        name
        for name, c in constraints.items()
        if c["index"] and not c["unique"] and not c["primary_key"] and c["columns"] == ["run_id"]
    ]


def drop(apps, schema_editor):
    for name in _run_id_indexes(schema_editor):
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def create(apps, schema_editor):
    if not _run_id_indexes(schema_editor):
        schema_editor.execute('CREATE INDEX "runs_checkpoint_run_id_d05b2df8" ON "runs_checkpoint" ("run_id")')


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0013_search_queue"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop, create)],
            state_operations=[
                migrations.AlterField(
                    model_name="checkpoint",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="checkpoints",
                        to="runs.run",
                    ),
                ),
            ],
        ),
    ]

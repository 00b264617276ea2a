"""The explorer's six indexes become partial on a new column, `listed`: a worker's durable write
on SQLite leaves it false and the search queue's indexer lists the rows in batches (see
runs/search_index.py), found by a small partial index of the unlisted ones. Existing rows are listed. The column is added in place: Django would
rebuild the whole table on SQLite to add a NOT NULL column."""

from django.db import migrations, models
from django.db.models import Q

EXPLORER_INDEXES = (
    (["-created_at", "-id"], "ckpt_recent_idx"),
    (["workflow", "-created_at"], "ckpt_workflow_idx"),
    (["last_completed_step", "-created_at"], "ckpt_step_idx"),
    (["workflow", "last_completed_step", "-created_at", "-id"], "ckpt_wf_step_idx"),
    (["input_event_type", "-created_at"], "ckpt_input_idx"),
    (["output_event_type", "-created_at"], "ckpt_output_idx"),
)


def add_column(apps, schema_editor):
    true = "1" if schema_editor.connection.vendor == "sqlite" else "true"
    column = "bool" if schema_editor.connection.vendor == "sqlite" else "boolean"
    schema_editor.execute(f'ALTER TABLE "runs_checkpoint" ADD COLUMN "listed" {column} NOT NULL DEFAULT {true}')


def drop_column(apps, schema_editor):
    schema_editor.execute('ALTER TABLE "runs_checkpoint" DROP COLUMN "listed"')


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0014_checkpoint_run_index"),
    ]

    operations = [
        *(migrations.RemoveIndex(model_name="checkpoint", name=name) for _, name in EXPLORER_INDEXES),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_column, drop_column)],
            state_operations=[
                migrations.AddField(model_name="checkpoint", name="listed", field=models.BooleanField(default=True)),
            ],
        ),
        *(
            migrations.AddIndex(
                model_name="checkpoint",
                index=models.Index(fields=fields, name=name, condition=Q(listed=True)),
            )
            for fields, name in EXPLORER_INDEXES
        ),
        migrations.AddIndex(
            model_name="checkpoint",
            index=models.Index(fields=["id"], name="ckpt_unlisted_idx", condition=Q(listed=False)),
        ),
    ]

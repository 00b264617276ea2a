"""Checkpoints store state records (full or delta) instead of a full snapshot each.

Existing rows hold full snapshots (version 1): each is its own base, so `snapshot_seq`
becomes its `seq` and nothing else changes: old checkpoints stay readable.
"""

from django.db import migrations, models
from django.db.models import F


def existing_rows_are_full(apps, schema_editor):
    Checkpoint = apps.get_model("runs", "Checkpoint")
    Checkpoint.objects.update(snapshot_seq=F("seq"))


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0002_checkpoint_workflow_step_index"),
    ]

    operations = [
        migrations.RenameField(model_name="checkpoint", old_name="ctx_state", new_name="state"),
        migrations.AlterField(
            model_name="checkpoint",
            name="state",
            field=models.JSONField(
                help_text="What this checkpoint's step changed (a delta) or the whole context state (a full record); "
                "see wfdash/workflow/snapshots.py. Large store values refer to blobs by hash."
            ),
        ),
        migrations.AddField(
            model_name="checkpoint",
            name="snapshot_seq",
            field=models.PositiveIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunPython(existing_rows_are_full, migrations.RunPython.noop),
    ]

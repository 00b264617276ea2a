"""Checkpoints are indexed for search after their write commits, not in its transaction: the
triggers on runs_checkpoint now queue them (see runs/search_index.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from runs import search_index

    search_index.install(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0012_fixforks"),
    ]

    operations = [
        migrations.RunPython(install, migrations.RunPython.noop),
    ]

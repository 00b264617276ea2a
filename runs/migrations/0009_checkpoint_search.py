"""The full-text index of checkpoints for `q=` search (see runs/search_index.py): a side table
kept by triggers, filled here with the checkpoints already stored."""

from django.db import migrations


def install(apps, schema_editor):
    from runs import search_index

    search_index.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from runs import search_index

    search_index.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0008_experiments"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]

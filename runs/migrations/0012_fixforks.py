"""Experiment.variant_count: K, stored at creation (admin lists no longer count runs)."""

from django.db import migrations, models
from django.db.models import Count


def fill_counts(apps, schema_editor):  # type: ignore[no-untyped-def]
    Experiment = apps.get_model("runs", "Experiment")
    for pk, k in Experiment.objects.annotate(k=Count("runs")).values_list("pk", "k").iterator():
        Experiment.objects.filter(pk=pk).update(variant_count=k)


class Migration(migrations.Migration):
    dependencies = [("runs", "0011_webhooks")]

    operations = [
        migrations.AddField(
            model_name="experiment",
            name="variant_count",
            field=models.PositiveIntegerField(default=0, help_text="How many variants (runs) the sweep made."),
        ),
        migrations.RunPython(fill_counts, migrations.RunPython.noop),
    ]

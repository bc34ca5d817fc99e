# Data migration: lifecycle rows flagged by the former error-text prefix get the field instead,
# so a row waiting for its catch-up sync at upgrade time does not repeat its lifecycle action.

from django.db import migrations
from django.db.models import F
from django.db.models.functions import Length, Substr

PREFIX = "lifecycle handled; catch-up sync pending."


def forwards(apps, schema_editor):
    notification = apps.get_model("webhooks", "WebhookNotification")
    flagged = notification.objects.filter(kind="lifecycle", error__startswith=PREFIX)
    flagged.update(lifecycle_handled_at=F("received_at"),
                   error=Substr("error", len(PREFIX) + 2, Length("error")))


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0003_notification_lifecycle_handled_at'),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]

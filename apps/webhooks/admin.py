from django.contrib import admin

from apps.webhooks.admin_switch import KillSwitchAdminMixin
from apps.webhooks.models import (
    OrphanChannel,
    RuntimeSetting,
    WebhookCounter,
    WebhookNotification,
    WebhookSubscription,
    WorkerHeartbeat,
)


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("channel_id", "provider", "calendar", "status", "expires_at",
                    "failure_count", "last_notification_at")
    list_filter = ("provider", "status")
    search_fields = ("channel_id", "resource_id", "calendar__name",
                     "calendar__calendar_account__email")
    # token_digest is not editable and therefore never rendered.
    readonly_fields = ("created_at", "updated_at", "confirmed_at", "last_error")
    raw_id_fields = ("calendar", "replaced_by")


@admin.register(WebhookNotification)
class WebhookNotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "provider", "kind", "resource_state", "processing_status",
                    "received_at", "attempts", "processing_time_ms")
    list_filter = ("provider", "kind", "processing_status")
    search_fields = ("dedup_key", "subscription__channel_id")
    date_hierarchy = "received_at"
    raw_id_fields = ("subscription",)
    readonly_fields = ("headers", "payload")


@admin.register(OrphanChannel)
class OrphanChannelAdmin(admin.ModelAdmin):
    list_display = ("channel_id", "provider", "status", "hits", "first_seen_at", "last_seen_at")
    list_filter = ("provider", "status")
    search_fields = ("channel_id", "resource_id")


@admin.register(WebhookCounter)
class WebhookCounterAdmin(admin.ModelAdmin):
    list_display = ("bucket", "provider", "kind", "count")
    list_filter = ("provider", "kind")


@admin.register(RuntimeSetting)
class RuntimeSettingAdmin(KillSwitchAdminMixin, admin.ModelAdmin):
    # The kill switch has its own page (on/off buttons) linked from this list.
    list_display = ("key", "value", "updated_at", "updated_by")
    search_fields = ("key",)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "last_seen_at", "processed_count",
                    "stopped_at")

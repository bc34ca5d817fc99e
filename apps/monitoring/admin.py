from django.contrib import admin

from apps.monitoring.models import (
    AlertDelivery,
    AutoFallback,
    HealthSnapshot,
    Incident,
    JobRun,
    ProviderApiCall,
)


@admin.register(ProviderApiCall)
class ProviderApiCallAdmin(admin.ModelAdmin):
    list_display = ("created_at", "provider", "operation", "status_code", "duration_ms",
                    "error_kind")
    list_filter = ("provider", "operation", "error_kind")
    date_hierarchy = "created_at"


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(admin.ModelAdmin):
    list_display = ("created_at", "status", "active_subscriptions", "failed_subscriptions",
                    "success_rate", "pending_notifications")
    list_filter = ("status",)
    date_hierarchy = "created_at"


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    readonly_fields = ("channel", "event", "attempt", "succeeded", "permanent_failure", "error",
                       "created_at")


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("key", "level", "title", "opened_at", "last_notified_at", "resolved_at")
    list_filter = ("level", "key")
    search_fields = ("key", "title")
    inlines = [AlertDeliveryInline]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("incident", "channel", "event", "attempt", "succeeded", "created_at")
    list_filter = ("channel", "event", "succeeded")


@admin.register(AutoFallback)
class AutoFallbackAdmin(admin.ModelAdmin):
    list_display = ("calendar", "reason", "created_at")
    raw_id_fields = ("calendar",)


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ("job", "slot", "host", "outcome", "started_at", "finished_at", "summary")
    list_filter = ("job", "outcome", "host")
    date_hierarchy = "started_at"

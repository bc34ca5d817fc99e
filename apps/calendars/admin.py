from django.contrib import admin

from apps.calendars.models import Calendar, CalendarAccount, Event, SkippedEvent


@admin.register(CalendarAccount)
class CalendarAccountAdmin(admin.ModelAdmin):
    list_display = ("email", "provider", "user", "status", "token_expires_at", "backoff_until")
    list_filter = ("provider", "status")
    search_fields = ("email", "user__username", "user__email")
    # Tokens are secrets: never shown, never editable here.
    exclude = ("access_token", "refresh_token")
    readonly_fields = ("created_at", "updated_at", "last_error")


@admin.register(Calendar)
class CalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "calendar_account", "sync_enabled", "fallback_polling_enabled",
                    "last_synced_at", "sync_failure_count")
    list_filter = ("sync_enabled", "fallback_polling_enabled", "calendar_account__provider")
    search_fields = ("name", "provider_calendar_id", "calendar_account__email")
    readonly_fields = ("sync_cursor", "last_synced_at", "last_sync_error", "created_at")
    list_select_related = ("calendar_account",)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("summary", "calendar", "status", "start", "end", "all_day")
    list_filter = ("status", "all_day")
    search_fields = ("summary", "provider_event_id", "location")
    list_select_related = ("calendar",)
    raw_id_fields = ("calendar",)


@admin.register(SkippedEvent)
class SkippedEventAdmin(admin.ModelAdmin):
    list_display = ("provider_event_id", "calendar", "error", "created_at")
    search_fields = ("provider_event_id", "error")
    raw_id_fields = ("calendar",)

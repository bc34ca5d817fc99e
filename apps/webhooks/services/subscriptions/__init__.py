"""The push channels: opened, renewed, repaired and stopped per calendar (``manager`` for
callers outside this flow, ``maintenance`` for the periodic pass), the kill switch and rollout
that decide which calendars want one, and which calendars push covers (the rest are polled)."""

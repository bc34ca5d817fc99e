"""The webhooks flow, in the order data moves: ``receiving`` (a provider's request stored as a
notification row, or counted), ``queue`` (the worker claims the rows and syncs their calendars)
and ``subscriptions`` (the push channels that make the providers send them). ``cleanup`` ages
the rows out; ``ttl_cache`` is what a process remembers for a short while."""

"""What the tests share, one place for each thing:

- ``fixtures``: every fixture used across folders (registered once by the root conftest);
- ``factories``: rows as the product leaves them (accounts connected to the sandbox,
  subscriptions, notifications, provider calls, heartbeats);
- ``sandbox``: the provider sandbox's admin API and provider endpoints, as a user's app uses them;
- ``sandbox_http``: plain HTTP against the sandbox and a local webhook endpoint (no Django);
- ``subscriptions``: push coverage, maintenance and polling passes, channels we do not know;
- ``processes``: child processes on the test's database; ``outages``: a database gone;
- ``commands``, ``concurrency``, ``browser``: a command run, a race, headless Chromium.

Ports and waiting for a started process are the benchmarks' (``bench.support``).
"""

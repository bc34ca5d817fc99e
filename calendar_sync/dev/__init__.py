"""Development only: `make run` (``run``), its process supervisor, the demo accounts and the
demo traffic. Production processes never import this package."""

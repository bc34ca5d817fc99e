"""Stored notifications as the worker's queue: rows claimed and settled, bursts coalesced into
one sync per calendar, the worker woken by NOTIFY."""

"""Local stand-in for Google Calendar v3, Microsoft Graph v1.0, their OAuth and alert sinks.

Standard library only and no import from the project, so it can run beside any version of it.
See README.md for the endpoints, the admin API and the fault knobs.
"""

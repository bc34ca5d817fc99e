"""A management command run in this process, as an operator or cron runs it."""

from __future__ import annotations

from io import StringIO


def command(name: str, *args: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``manage.py name *args``."""
    from django.core.management import call_command

    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()

"""The base of the crontab's commands: each run is a cluster-wide job (``services/jobs.py``).

The crontab may run on every host; this base makes each scheduled minute of a command run once
across all of them and records the run (job, host, start, end, outcome, last output line).
"""

from __future__ import annotations

from typing import Any, TextIO

from django.core.management.base import BaseCommand, OutputWrapper

from apps.monitoring.services import jobs


class _LastLine:
    """A stdout that remembers the last line written: the run's one-line summary."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""

    def write(self, text: str) -> int:
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            self.last = lines[-1]
        return self.out.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.out, name)


class ScheduledCommand(BaseCommand):
    # Exit statuses that report a finding rather than a failure of the job itself.
    reporting_exit_codes: frozenset[int] = frozenset()

    def job_name(self, options: dict) -> str:
        """The job's name: one lock and one run per slot across the cluster."""
        return self.__module__.rsplit(".", 1)[-1]

    @staticmethod
    def is_job_run(options: dict) -> bool:
        """A dry run changes nothing and a loop (no ``--once``) is a service, not a job."""
        return not options.get("dry_run") and options.get("once", True)

    def validate(self, options: dict) -> None:
        """Refuse bad arguments (CommandError) before a slot is claimed in their name."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        self.validate(options)
        if not self.is_job_run(options):
            return super().execute(*args, **options)
        name = self.job_name(options)
        with jobs.claimed(name) as claim:
            if not claim.runs:
                out = OutputWrapper(options["stdout"]) if options.get("stdout") else self.stdout
                out.write(f"skipped {name}: {claim.reason}")
                return None
            tee = _LastLine(options.get("stdout") or self.stdout._out)
            ok, summary = False, "failed"
            try:
                result = super().execute(*args, **{**options, "stdout": tee})
                ok, summary = True, tee.last or "done"
                return result
            except SystemExit as exc:
                ok = not exc.code or exc.code in self.reporting_exit_codes
                summary = f"{tee.last or 'finished'} (exit {exc.code})" if exc.code else tee.last
                raise
            except Exception as exc:
                # The class only: a message can carry a host name or a credential.
                summary = f"{type(exc).__name__} after: {tee.last or 'no output'}"
                raise
            finally:
                jobs.finish(claim, ok, summary)

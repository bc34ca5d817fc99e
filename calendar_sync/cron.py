"""The ``crontab`` file, read by ``run_scheduler`` and checked by the tests.

One file is the schedule for both system cron and ``run_scheduler``, so this module understands
the subset of crontab and shell syntax that file uses: ``NAME=value`` lines, five-field
schedules (numbers, names, ``*``, ranges, steps, lists) and the ``@hourly``-style macros, and
job commands of the form

    [cd DIR &&] [flock -n LOCKFILE] python manage.py COMMAND [ARGS] [>> LOGFILE 2>&1]

Anything else (pipes, ``;``, other programs) is refused with the line number, so the scheduler
never silently runs something different from what cron would. (``run_scheduler`` runs the
project's own manage.py with its own interpreter, so the ``cd`` and ``python`` parts are only
checked, not used.)

Schedules are croniter's; the command part (flock and redirections, which cron libraries do
not model) is parsed here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from croniter import croniter


class CronSyntaxError(ValueError):
    """A crontab line the scheduler cannot run exactly as cron would."""


_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_BACKWARDS = re.compile(r"(\d+)-(\d+)")


def _check_field(index: int, text: str) -> None:
    """Validate one field alone, so the error names it (croniter's does not)."""
    probe = ["*"] * 5
    probe[index] = text
    backwards = any(int(a) > int(b) for a, b in _BACKWARDS.findall(text))
    # croniter reads "5-1" as a wrap-around; cron refuses it, and both read this file.
    if backwards or not croniter.is_valid(" ".join(probe)):
        raise CronSyntaxError(f"{_FIELD_NAMES[index]}: {text!r} is not a valid value")


@dataclass(frozen=True)
class CronSchedule:
    """When a job runs (croniter evaluates it); ``matches`` is evaluated on whole minutes.
    When both day fields are restricted, either one matching is enough, as in cron."""

    text: str

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        expression = text.strip()
        if expression.startswith("@"):
            if expression.lower() == "@reboot" or not croniter.is_valid(expression):
                raise CronSyntaxError(f"unsupported schedule {text!r}")
            return cls(expression)
        parts = expression.split()
        if len(parts) != 5:
            raise CronSyntaxError(f"a schedule has 5 fields, {text!r} has {len(parts)}")
        for index, part in enumerate(parts):
            _check_field(index, part)
        return cls(" ".join(parts))

    def matches(self, when: datetime) -> bool:
        return croniter.match(self.text, when.replace(second=0, microsecond=0))

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after ``when``."""
        return croniter(self.text, when.replace(second=0, microsecond=0)).get_next(datetime)


@dataclass(frozen=True)
class CronJob:
    """One schedule line: the schedule, the Django command it runs, its lock and log files."""

    line_no: int
    schedule: CronSchedule
    command_line: str
    command: str  # the management command's name
    args: tuple[str, ...]
    lock_path: str | None
    log_path: str | None

    def describe(self) -> str:
        return " ".join([self.command, *self.args])


@dataclass
class Crontab:
    jobs: list[CronJob] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
# Shell operators a job line may use; any other (|, ;, &, <, subshells...) is refused.
_ALLOWED_OPERATORS = {"&&", ">>", ">", "2>>", "2>", "2>&1", "1>&2"}


def _split_schedule(line: str) -> tuple[str, str]:
    if line.startswith("@"):
        macro, _, rest = line.partition(" ")
        return macro, rest.strip()
    parts = line.split(None, 5)
    if len(parts) < 6:
        raise CronSyntaxError("a job line needs 5 schedule fields and a command")
    return " ".join(parts[:5]), parts[5]


def _strip_redirections(tokens: list[str]) -> tuple[list[str], str | None]:
    """Remove ``>> FILE``, ``> FILE``, ``2>&1`` (and ``2>> FILE``); return the log file."""
    kept: list[str] = []
    log_path = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in {"2>&1", "1>&2"}:
            i += 1
        elif tok in {">>", ">", "2>>", "2>"}:
            if i + 1 >= len(tokens):
                raise CronSyntaxError(f"redirection {tok!r} without a file")
            if not tok.startswith("2") or log_path is None:
                log_path = tokens[i + 1]
            i += 2
        else:
            kept.append(tok)
            i += 1
    return kept, log_path


def _strip_flock(tokens: list[str]) -> tuple[list[str], str | None]:
    if not tokens or tokens[0] != "flock":
        return tokens, None
    i = 1
    nonblocking = False
    while i < len(tokens) and tokens[i].startswith("-"):
        opt = tokens[i]
        if opt in {"-n", "--nonblock", "-x", "--exclusive", "-o", "--close"}:
            nonblocking = nonblocking or opt in {"-n", "--nonblock"}
            i += 1
        elif opt in {"-w", "--timeout", "-E", "--conflict-exit-code"}:
            i += 2
        else:
            raise CronSyntaxError(f"flock option {opt!r} is not understood")
    if not nonblocking:
        raise CronSyntaxError("flock must be non-blocking (-n) so that runs never pile up")
    if i >= len(tokens):
        raise CronSyntaxError("flock without a lock file")
    return tokens[i + 1:], tokens[i]


# File-descriptor redirections, recognised in the raw text where the digit touches the `>`
# (`--days 2 >> log` passes the argument 2; `2>> log` redirects stderr).
_FD_REDIRECTS = [(re.compile(r"(?<=\s)([12])>&([12])(?=\s|$)"), r" __fd_\1_to_\2__ "),
                 (re.compile(r"(?<=\s)2>>(?=[^&])"), " __fd_2_append__ "),
                 (re.compile(r"(?<=\s)2>(?=[^&>])"), " __fd_2_write__ ")]
_FD_TOKENS = {"__fd_2_to_1__": "2>&1", "__fd_1_to_2__": "1>&2", "__fd_2_append__": "2>>",
              "__fd_2_write__": "2>"}


def _tokens(command_line: str) -> list[str]:
    """sh words, with operators as their own tokens (``2>&1`` kept as one)."""
    text = command_line
    for pattern, replacement in _FD_REDIRECTS:
        text = pattern.sub(replacement, text)
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        tokens = [_FD_TOKENS.get(tok, tok) for tok in lex]
    except ValueError as exc:
        raise CronSyntaxError(f"unbalanced quoting: {exc}") from None
    for tok in tokens:
        if tok.startswith("&>"):
            raise CronSyntaxError("`&>` is not sh syntax (cron runs /bin/sh): use `>> F 2>&1`")
        if (tok[0] in "<>&|;()" and tok not in _ALLOWED_OPERATORS) or "`" in tok:
            raise CronSyntaxError(f"unsupported shell construct {tok!r}")
    return tokens


def parse_command(command_line: str) -> tuple[str, tuple[str, ...], str | None, str | None]:
    """``(command, args, lock_path, log_path)`` of a job's shell command."""
    if "%" in command_line:
        # cron turns an unescaped % into a newline (the rest becomes the job's stdin).
        raise CronSyntaxError("`%` is special in crontab lines")
    tokens = _tokens(command_line)
    segments: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "&&":
            segments.append([])
        else:
            segments[-1].append(tok)
    for segment in segments[:-1]:
        if not segment or segment[0] != "cd":
            raise CronSyntaxError("only `cd DIR &&` may come before the command")
    job, log_path = _strip_redirections(segments[-1])
    job, lock_path = _strip_flock(job)
    manage = [i for i, tok in enumerate(job) if tok.endswith("manage.py")]
    if not manage or manage[0] > 1 or manage[0] + 1 >= len(job):
        raise CronSyntaxError("the command must be `python manage.py COMMAND [ARGS]`")
    start = manage[0]
    if start == 1 and "python" not in Path(job[0]).name:
        raise CronSyntaxError(f"{job[0]!r} is not a Python interpreter")
    return job[start + 1], tuple(job[start + 2:]), lock_path, log_path


def parse_crontab(text: str) -> Crontab:
    tab = Crontab()
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        env = _ENV_LINE.match(line)
        if env and not line.startswith(("*", "@")) and not line[0].isdigit():
            tab.environment[env.group(1)] = env.group(2).strip().strip("\"'")
            continue
        try:
            schedule_text, command_line = _split_schedule(line)
            schedule = CronSchedule.parse(schedule_text)
            command, args, lock, log = parse_command(command_line)
        except CronSyntaxError as exc:
            raise CronSyntaxError(f"line {no}: {exc}") from None
        tab.jobs.append(CronJob(no, schedule, command_line, command, args, lock, log))
    return tab


def read_crontab(path: str | Path) -> Crontab:
    return parse_crontab(Path(path).read_text())


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(value: str, variables: dict[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` as sh would expand them (unset names become empty)."""
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), value)

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

A small parser of our own rather than a dependency: the whole grammar is a page, and the
scheduler needs the flock and redirection parts that general cron libraries do not model.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path


class CronSyntaxError(ValueError):
    """A crontab line the scheduler cannot run exactly as cron would."""


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names mapped to numbers)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {n: i for i, n in enumerate(_DAYS)}),
)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _number(token: str, name: str, lo: int, hi: int, names: dict[str, int]) -> int:
    value = names.get(token.lower())
    if value is None:
        if not token.isdigit():
            raise CronSyntaxError(f"{name}: {token!r} is not a number")
        value = int(token)
    if not lo <= value <= hi:
        raise CronSyntaxError(f"{name}: {value} is outside {lo}-{hi}")
    return value


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronSyntaxError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(a, name, lo, hi, names), _number(b, name, lo, hi, names)
            if start > end:
                raise CronSyntaxError(f"{name}: range {base!r} runs backwards")
        elif base:
            start = _number(base, name, lo, hi, names)
            # "5/15" means 5, 20, 35, 50 as in Vixie cron.
            end = hi if step_text else start
        else:
            raise CronSyntaxError(f"{name}: empty item in {text!r}")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class CronSchedule:
    """When a job runs; ``matches`` is evaluated on whole minutes."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is folded into 0)
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        expanded = _MACROS.get(text.strip().lower(), text)
        if expanded.startswith("@"):
            raise CronSyntaxError(f"unsupported schedule {text!r}")
        parts = expanded.split()
        if len(parts) != 5:
            raise CronSyntaxError(f"a schedule has 5 fields, {text!r} has {len(parts)}")
        sets = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = {0 if d == 7 else d for d in sets[4]}
        return cls(
            text=text,
            minutes=frozenset(sets[0]),
            hours=frozenset(sets[1]),
            days=frozenset(sets[2]),
            months=frozenset(sets[3]),
            weekdays=frozenset(weekdays),
            day_restricted=not parts[2].startswith("*"),
            weekday_restricted=not parts[4].startswith("*"),
        )

    def matches(self, when: datetime) -> bool:
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day_ok = when.day in self.days
        weekday_ok = (when.isoweekday() % 7) in self.weekdays
        # cron's rule: when both day fields are restricted, either one matching is enough.
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def day_matches(self, day: datetime) -> bool:
        """Whether any minute of this calendar day can match."""
        return day.month in self.months and self.matches(
            day.replace(hour=min(self.hours), minute=min(self.minutes))
        )

    def next_after(self, when: datetime, limit_days: int = 366 * 5) -> datetime:
        """The first matching minute strictly after ``when``."""
        start = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(limit_days):
            if self.day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise CronSyntaxError(f"{self.text!r} never runs")


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

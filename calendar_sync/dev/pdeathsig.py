"""``python -m calendar_sync.dev.pdeathsig PARENT_PID COMMAND...``: run COMMAND so that it dies with
its parent.

`make run`'s supervisor starts every long-running child through this: Linux delivers SIGTERM
to the child when the supervisor dies, even by SIGKILL, which no handler in the supervisor can
catch. The setting survives ``exec`` (not for set-uid programs). Elsewhere the command simply
runs (only a clean stop of the supervisor stops it there).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``sig`` when the parent goes; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str]) -> None:
    parent, command = int(argv[1]), argv[2:]
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(1)
    # Python ignores these; an exec'd program must get the defaults back (as Popen does).
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv)

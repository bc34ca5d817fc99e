#!/usr/bin/env python
"""Django's command-line utility; the embedded default settings unless told otherwise."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.development")
    from calendar_sync.startup import run_manage

    run_manage(sys.argv)


if __name__ == "__main__":
    main()

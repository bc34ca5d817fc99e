"""`python -m sandbox --port 8900 [--host 127.0.0.1] [--seed N] [--verbose]`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import SandboxServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--seed", type=int, default=0, help="seed for injected faults")
    parser.add_argument("--workers", type=int, default=4, help="push delivery threads")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)

    server = SandboxServer(host=args.host, port=args.port, seed=args.seed,
                           verbose=args.verbose, workers=args.workers).start()
    print(f"sandbox listening on {server.url} (seed {args.seed})", file=sys.stderr, flush=True)
    done = threading.Event()
    # SIGTERM (docker stop, process managers) ends it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: run every benchmark and print its figures (ratios against a baseline measured
in the same run, because these machines are noisy). `python -m bench NAME` runs one."""

from __future__ import annotations

import importlib
import sys

# Each module exposes main() -> int and prints its own figures.
BENCHMARKS = ["receivers", "sync", "graph_batch", "workers", "scale"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    failures = 0
    for name in names:
        print(f"\n=== bench: {name} ===", flush=True)
        module = importlib.import_module(f"bench.{name}")
        failures += 1 if module.main() else 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""How long the ecompipe command takes to answer: start-up, before any work.

    python bench/bench_cli.py [--repeat 9]

Each command runs in a fresh process, as a user types it; figures are medians. ``db url`` starts the
embedded warehouse if it is down, so one warm-up call comes first. The target is 0.5 s for ``--help``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import own_warehouse  # noqa: F401  (first: the benchmark's own warehouse)

COMMANDS = (("--help",), ("runs",), ("db", "url"))
ECOMPIPE = Path(sys.executable).with_name("ecompipe")


def seconds(*args: str) -> float:
    return timed([str(ECOMPIPE), *args])


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    seconds("db", "url")
    baseline = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(args.repeat))
    print(f"python -c pass (the floor): {baseline:6.3f} s")
    for command in COMMANDS:
        median = statistics.median(seconds(*command) for _ in range(args.repeat))
        print(f"ecompipe {' '.join(command):<10}: {median:6.3f} s (median of {args.repeat})")


if __name__ == "__main__":
    main()

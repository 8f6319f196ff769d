"""Generation throughput and peak memory, per scale.

    python bench/bench_generate.py [--scales 1,10] [--repeat 3]

Each measurement runs in a fresh process. Peak memory is the largest RSS of that process (with any
children), sampled every 20 ms from /proc. Figures are medians; rows are all four files
together, defect rows included.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, tempfile, time
from pathlib import Path
from ecompipe import generate
spec = generate.GenerateSpec(scale=float(sys.argv[1]))
with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
    start = time.perf_counter()
    rows = sum(generate.write_dataset(spec, Path(tmp)).rows.values())
    print(rows, time.perf_counter() - start)
"""


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def measure(scale: float) -> tuple[int, float, float]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(scale)], stdout=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.02)
    out = proc.stdout.read().split()
    if proc.returncode != 0 or len(out) != 2:
        raise SystemExit(f"generation failed at scale {scale:g}")
    return int(out[0]), float(out[1]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for scale in (float(s) for s in args.scales.split(",")):
        results = [measure(scale) for _ in range(args.repeat)]
        rows = results[0][0]
        seconds = statistics.median(r[1] for r in results)
        peak = statistics.median(r[2] for r in results)
        print(f"scale {scale:>5g}: {rows:>11,} rows in {seconds:7.2f} s = {rows / seconds:>10,.0f} rows/s, "
              f"peak RSS {peak:,.0f} MB (median of {args.repeat})")


if __name__ == "__main__":
    main()

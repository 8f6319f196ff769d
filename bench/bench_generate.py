"""Generation throughput and peak memory, per scale.

    python bench/bench_generate.py [--scales 1,10] [--repeat 3]

Each measurement runs in a fresh process, so its peak RSS is its own. Figures are medians; rows are all
four files together.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path


def _measure(scale: float, queue) -> None:
    from ecompipe import generate

    spec = generate.GenerateSpec(scale=scale)
    generate._pools(spec.seed)  # Faker pools are a fixed cost of about 1 s, not a per-row one
    with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
        start = time.perf_counter()
        rows = generate.write_dataset(spec, Path(tmp))
        seconds = time.perf_counter() - start
    queue.put((sum(rows.values()), seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    for scale in (float(s) for s in args.scales.split(",")):
        results = []
        for _ in range(args.repeat):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(scale, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
        rows = results[0][0]
        seconds = statistics.median(r[1] for r in results)
        rss = statistics.median(r[2] for r in results)
        print(f"scale {scale:>5g}: {rows:>11,} rows in {seconds:7.2f} s = {rows / seconds:>10,.0f} rows/s, "
              f"peak RSS {rss:,.0f} MB (median of {args.repeat})")


if __name__ == "__main__":
    main()

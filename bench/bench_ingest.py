"""Ingest throughput against a bare COPY of the same files, measured side by side in one process.

    python bench/bench_ingest.py [--scale 1] [--repeat 5]

The bare COPY loads each raw file into a fresh table shaped like its core table (same column types, no
keys) and commits, which is the least any loader of these files must do. Figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from psycopg2 import sql

from ecompipe import generate, ingest, warehouse
from ecompipe.generate import COLUMNS


def bare_copy(engine, raw_dir: Path) -> int:
    conn = engine.raw_connection()
    rows = 0
    try:
        with conn.cursor() as cur:
            for table, path in ingest.raw_files(raw_dir).items():
                bare = f"bench_bare_{table}"
                cur.execute(sql.SQL("create table {} (like {})").format(sql.Identifier(bare), sql.Identifier(table)))
                copy = sql.SQL("copy {} ({}) from stdin with (format csv, header true)").format(
                    sql.Identifier(bare), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])))
                with open(path, "rb") as f:
                    cur.copy_expert(copy, f, size=ingest.COPY_BUFFER)
                rows += cur.rowcount
        conn.commit()
        with conn.cursor() as cur:
            for table in COLUMNS:
                cur.execute(sql.SQL("drop table {}").format(sql.Identifier(f"bench_bare_{table}")))
        conn.commit()
    finally:
        conn.close()
    return rows


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    engine = warehouse.get_engine()
    with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
        raw_dir = Path(tmp)
        generate.write_dataset(generate.GenerateSpec(scale=args.scale), raw_dir)
        ingest_s, bare_s, rows = [], [], 0
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both alike
            seconds, loaded = timed(ingest.load, raw_dir, engine)
            ingest_s.append(seconds)
            rows = sum(r.read for r in loaded)
            seconds, _ = timed(bare_copy, engine, raw_dir)
            bare_s.append(seconds)
    ingest_med, bare_med = statistics.median(ingest_s), statistics.median(bare_s)
    print(f"scale {args.scale:g}: {rows:,} rows, median of {args.repeat} runs")
    print(f"  ingest.load : {ingest_med:7.3f} s  {rows / ingest_med:>12,.0f} rows/s")
    print(f"  bare COPY   : {bare_med:7.3f} s  {rows / bare_med:>12,.0f} rows/s")
    print(f"  ratio ingest/bare throughput: {bare_med / ingest_med:.2f}x")


if __name__ == "__main__":
    main()

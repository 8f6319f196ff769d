"""Ingest throughput against a bare COPY of the same files, measured side by side in one process.

    python bench/bench_ingest.py [--scale 1] [--repeat 5]

The bare COPY loads each raw file into a fresh table shaped like its core table (same column types, no
keys) and commits, which is the least any loader of these files must do: once from the client
(``COPY FROM STDIN``, what ingest does) and once read by the server itself (``COPY FROM 'file'``, possible
with the embedded warehouse only).

The keys' floor is the least a load that enforces the keys must do beyond that, with no check at all: in one
transaction, COPY each file into a typed table, index its primary key, run the query a foreign key's
validation runs, and commit, with ingest's memory settings. The server does this on one connection, so
``bare / floor`` is about the best ratio a loader keeping the contract can reach; ingest can come a little
under the floor, as its ``COPY`` is frozen and each file's starts before the client has read it all. (The
indexes are not unique, because the files hold the generator's duplicate keys; building a unique one costs
the same.)

The files are generated in a child process, so the peak RSS printed is this process's: ingest's own, with
its threads (and the bare COPYs, which hold little). Figures are medians.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

from psycopg2 import sql

import own_warehouse  # noqa: F401  (first: the benchmark's own warehouse)

from ecompipe import generate, ingest, warehouse
from ecompipe.settings import Settings
from ecompipe.warehouse import set_local
from ecompipe.rawformat import COLUMNS


def client_copy(cur, target: sql.Identifier, table: str, path: Path) -> None:
    """COPY ``path`` FROM STDIN into ``target``, as ingest sends a file."""
    statement = sql.SQL("copy {} ({}) from stdin with (format csv, header true)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])))
    with open(path, "rb") as f:
        cur.copy_expert(statement, f, size=ingest.COPY_BUFFER)


def bare_copy(engine, raw_dir: Path, server_side: bool = False) -> int:
    conn = engine.raw_connection()
    rows = 0
    try:
        with conn.cursor() as cur:
            for table, path in ingest.raw_files(raw_dir).items():
                bare = sql.Identifier(f"bench_bare_{table}")
                cur.execute(sql.SQL("create table {} (like {})").format(bare, sql.Identifier(table)))
                if server_side:
                    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
                    cur.execute(sql.SQL("copy {} ({}) from {} with (format csv, header true)").format(
                        bare, columns, sql.Literal(str(path.resolve()))))
                else:
                    client_copy(cur, bare, table, path)
                rows += cur.rowcount
        conn.commit()
        with conn.cursor() as cur:
            for table in COLUMNS:
                cur.execute(sql.SQL("drop table {}").format(sql.Identifier(f"bench_bare_{table}")))
        conn.commit()
    finally:
        conn.close()
    return rows


def keys_floor(engine, raw_dir: Path) -> None:
    files = ingest.raw_files(raw_dir)
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            schema = ingest._Schema.read(cur, list(COLUMNS))
            set_local(cur, Settings().ingest_tuning)
            for table, path in files.items():
                typed = sql.Identifier(f"bench_floor_{table}")
                cur.execute(sql.SQL("create table {} (like {})").format(typed, sql.Identifier(table)))
                client_copy(cur, typed, table, path)
                cur.execute(sql.SQL("create index on {} ({})").format(
                    typed, sql.SQL(", ").join(map(sql.Identifier, schema.keys[table]))))
                for column, (parent, parent_column) in schema.references[table].items():
                    cur.execute(sql.SQL(
                        "select c.{c} from only {child} c left join only {parent} p on p.{pc} = c.{c} "
                        "where p.{pc} is null and c.{c} is not null").format(
                        c=sql.Identifier(column), child=typed, pc=sql.Identifier(parent_column),
                        parent=sql.Identifier(f"bench_floor_{parent}")))
        conn.commit()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop table {}").format(
                sql.SQL(", ").join(sql.Identifier(f"bench_floor_{table}") for table in COLUMNS)))
        conn.commit()
    finally:
        conn.close()


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
        spawn = multiprocessing.get_context("spawn")
        generating = spawn.Process(target=generate.write_dataset, args=(generate.GenerateSpec(scale=args.scale), raw_dir))
        generating.start()
        generating.join()
        ingest_s, client_s, server_s, floor_s, rows = [], [], [], [], 0
        server_side = Settings().database_url is None
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits all alike
            seconds, loaded = timed(ingest.load, raw_dir, engine)
            ingest_s.append(seconds)
            rows = sum(r.read for r in loaded)
            client_s.append(timed(bare_copy, engine, raw_dir)[0])
            if server_side:
                server_s.append(timed(bare_copy, engine, raw_dir, True)[0])
            floor_s.append(timed(keys_floor, engine, raw_dir)[0])
    ingest_med = statistics.median(ingest_s)
    print(f"scale {args.scale:g}: {rows:,} rows, median of {args.repeat} runs, "
          f"ingest's peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    print(f"  ingest.load             : {ingest_med:8.2f} s {rows / ingest_med:>12,.0f} rows/s")
    for label, runs in (("bare COPY, client-side", client_s), ("bare COPY, server-side", server_s)):
        if runs:
            med = statistics.median(runs)
            print(f"  {label}  : {med:8.2f} s {rows / med:>12,.0f} rows/s   ingest = {med / ingest_med:.2f}x of it")
    client, floor = statistics.median(client_s), statistics.median(floor_s)
    print(f"  keys' floor             : {floor:8.2f} s {rows / floor:>12,.0f} rows/s   "
          f"ingest = {floor / ingest_med:.2f}x of it;"
          f" a loader enforcing the keys: about <= {client / floor:.2f}x of the client-side bare COPY")


if __name__ == "__main__":
    main()

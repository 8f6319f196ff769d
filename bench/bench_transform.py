"""Transform refresh time against DuckDB running the same summary models on the same data, side by side.

    python bench/bench_transform.py [--scale 1] [--repeat 3] [--skip-load]

Generates and ingests data at the scale (``--skip-load``: use what the warehouse holds), copies the core
tables into an in-memory DuckDB (the session must be in UTC), then alternates: ``transform.build``
(every table and view of the marts) and DuckDB building every table of the marts from the very same SQL
files. Figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import duckdb
import sqlalchemy as sa
from psycopg2 import sql

import own_warehouse  # noqa: F401  (first: the benchmark's own warehouse)

from ecompipe import generate, ingest, transform, warehouse
from ecompipe.rawformat import COLUMNS

from bench_ingest import timed

DUCKDB_TYPES = {"bigint": "BIGINT", "integer": "INTEGER", "text": "VARCHAR", "date": "DATE", "boolean": "BOOLEAN",
                "timestamp with time zone": "TIMESTAMPTZ"}


def duckdb_like(engine) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the core tables exactly as the warehouse does."""
    with engine.connect() as conn:
        time_zone = conn.scalar(sa.text("show timezone"))
    # DuckDB's time zones come with its ICU extension, which it downloads: without it, dates are UTC dates
    if time_zone not in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        raise SystemExit(f"The warehouse session's time zone is {time_zone}; for DuckDB to see the same order "
                         "dates, run this benchmark in UTC (PGTZ=UTC).")
    db = duckdb.connect()
    # sql/schema/05_line_revenue.sql, as a DuckDB macro
    db.execute("create macro line_revenue(quantity, unit_price, discount) as "
               "quantity * unit_price - coalesce(discount, 0)")
    with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
        copy_to_duckdb(engine, db, Path(tmp))
    return db


def copy_to_duckdb(engine, db: duckdb.DuckDBPyConnection, folder: Path) -> None:
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            tables = [*COLUMNS, "order_statuses", "data_as_of"]
            types = ingest._Schema.read(cur, tables).types  # the column types ingest casts to, in column order
            for table in tables:
                columns = {name: DUCKDB_TYPES.get(full_type, full_type.upper())
                           for name, (_, full_type, _, _) in types[table].items()}
                path = folder / f"{table}.csv"
                with open(path, "w") as f:
                    cur.copy_expert(sql.SQL("copy (select * from {}) to stdout with (format csv, header true)").format(
                        sql.Identifier(table)), f)
                db.execute(f"create table {table} as select * from read_csv(?, header = true, columns = ?)",
                           [str(path), columns])
    finally:
        conn.close()


def duckdb_build(db: duckdb.DuckDBPyConnection) -> None:
    for name in (name for level in transform.LEVELS for name in level):  # each after the tables it reads
        db.execute(f"create or replace table {name} as {transform.model_sql(name)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true", help="measure on what the warehouse holds now")
    args = parser.parse_args()

    engine = warehouse.get_engine()
    if not args.skip_load:
        with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
            raw = Path(tmp) / "raw"
            generate.write_dataset(generate.GenerateSpec(scale=args.scale), raw)
            ingest.load(raw, engine)
    db = duckdb_like(engine)
    rows = warehouse.table_counts(engine, list(COLUMNS))
    postgres_s, duckdb_s = [], []
    for _ in range(args.repeat):
        postgres_s.append(timed(transform.build, engine)[0])
        duckdb_s.append(timed(duckdb_build, db)[0])
    pg, dd = statistics.median(postgres_s), statistics.median(duckdb_s)
    print(f"{rows['orders']:,} orders, {rows['order_items']:,} lines, {rows['customers']:,} customers; "
          f"median of {args.repeat} runs")
    print(f"  PostgreSQL transform.build (tables and views): {pg:7.2f} s")
    print(f"  DuckDB, the same table models               : {dd:7.2f} s")
    print(f"  ratio                                        : {pg / dd:7.1f}x")


if __name__ == "__main__":
    main()

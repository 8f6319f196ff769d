"""Load raw CSV files into the core tables of the warehouse.

A load is one transaction: the four tables are emptied and refilled with COPY, so a failure anywhere
leaves the previous contents intact and loading the same files twice gives the same tables.

Keys stay enforced, but not row by row: checking each row's foreign keys as it arrives made the load
15x slower than a bare COPY. Within the transaction the keys are dropped, the rows copied, and the
same keys added back, which checks every row at once with one index build and one join per key.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import Engine

from ecompipe.generate import COLUMNS

log = logging.getLogger(__name__)

COPY_BUFFER = 1 << 20  # psycopg2 sends 8 KB per round trip by default


class IngestError(RuntimeError):
    """A raw file cannot be loaded; the message names the file and, where known, the line and column."""


def raw_files(raw_dir: Path) -> dict[str, Path]:
    files = {name: raw_dir / f"{name}.csv" for name in COLUMNS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise IngestError(f"Missing raw file(s): {', '.join(missing)}")
    return files


def copy_statement(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("copy {} ({}) from stdin with (format csv, header match)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def load(raw_dir: Path, engine: Engine) -> dict[str, int]:
    """Replace the core tables with the files in ``raw_dir``; return rows loaded per table."""
    files = raw_files(raw_dir)
    rows = {}
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(map(sql.Identifier, reversed(COLUMNS)))))
            keys = _drop_keys(cur, list(COLUMNS))
            for table, path in files.items():
                with open(path, "rb") as f, _blaming(path):
                    cur.copy_expert(copy_statement(table, COLUMNS[table]), f, size=COPY_BUFFER)
                rows[table] = cur.rowcount
                log.info("Loaded %s rows into %s from %s", rows[table], table, path)
            for table, name, definition in reversed(keys):
                with _blaming(files.get(table, table)):
                    _add_key(cur, table, name, definition)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return rows


def _drop_keys(cur, tables: list[str]) -> list[tuple[str, str, str]]:
    """Drop the primary and foreign keys on or into ``tables``; return them for :func:`_add_key`."""
    cur.execute(
        """
        select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        from pg_constraint
        where contype in ('p', 'f')
          and (conrelid = any(%(t)s::regclass[]) or confrelid = any(%(t)s::regclass[]))
        order by contype = 'p', conname
        """,
        {"t": tables},
    )
    keys = cur.fetchall()  # foreign keys first, so the primary keys they lean on can go after them
    for table, name, _ in keys:
        cur.execute(sql.SQL("alter table {} drop constraint {}").format(sql.Identifier(table), sql.Identifier(name)))
    return keys


def _add_key(cur, table: str, name: str, definition: str) -> None:
    cur.execute(
        sql.SQL("alter table {} add constraint {} ").format(sql.Identifier(table), sql.Identifier(name))
        + sql.SQL(definition)  # pg_get_constraintdef output: the server's own text, not user input
    )


@contextlib.contextmanager
def _blaming(source):
    """Turn a database error into an IngestError that names the file, and the line and column if known."""
    try:
        yield
    except psycopg2.Error as exc:
        diag = exc.diag
        parts = [diag.message_primary or str(exc).strip(), diag.message_detail, diag.context]
        raise IngestError(f"{source}: " + "; ".join(p.strip() for p in parts if p)) from None

"""Seeds, in dbt's sense: reference data kept with the code as CSV files in ``sql/seeds/``.

Each seed is the one source of its facts. The warehouse holds a copy, a table of the same name whose first
column is its key, rewritten to match the file whenever the schema is set up; code that needs the same
facts outside the warehouse (the generator, say) reads the file.
"""

from __future__ import annotations

import csv
import functools
import json
from datetime import date

import sqlalchemy as sa

from ecompipe.settings import Settings


@functools.cache
def rows(name: str) -> tuple[dict[str, str], ...]:
    """The rows of seed ``name``, as text."""
    with open(Settings().sql_dir / "seeds" / f"{name}.csv", newline="", encoding="utf-8") as f:
        return tuple(csv.DictReader(f))


def names() -> list[str]:
    return sorted(p.stem for p in (Settings().sql_dir / "seeds").glob("*.csv"))


def order_statuses() -> tuple[str, ...]:
    """Every status the shop knows, in the seed's order."""
    return tuple(r["status"] for r in rows("order_statuses"))


def revenue_statuses() -> tuple[str, ...]:
    """The statuses whose orders bear revenue."""
    return tuple(r["status"] for r in rows("order_statuses") if r["is_revenue_bearing"] == "true")


def retail_events() -> tuple[tuple[str, date, date], ...]:
    """The retail calendar: (event, first day, last day) for each occurrence."""
    return tuple((r["event"], date.fromisoformat(r["first_day"]), date.fromisoformat(r["last_day"]))
                 for r in rows("retail_events"))


def write(conn, name: str) -> None:
    """Make table ``name`` hold exactly the seed's rows. Rows already equal are not rewritten, so this takes
    no lock that a reader would wait for. The table's own column types read the text values."""
    seed = rows(name)
    quote = conn.dialect.identifier_preparer.quote
    table = quote(name)
    key, *others = [quote(c) for c in seed[0]]
    columns = ", ".join([key, *others])
    conn.execute(sa.text(
        f"insert into {table} ({columns}) select {columns} from json_populate_recordset(null::{table}, :rows) "
        f"on conflict ({key}) do update set {', '.join(f'{c} = excluded.{c}' for c in others)} "
        f"where ({', '.join(f'{table}.{c}' for c in others)}) is distinct from ({', '.join(f'excluded.{c}' for c in others)})"
    ), {"rows": json.dumps(seed)})
    conn.execute(sa.text(f"delete from {table} where {key}::text <> all(:keys)"), {"keys": [r[next(iter(r))] for r in seed]})

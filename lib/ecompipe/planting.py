"""Planting the defects of the catalogue (:mod:`ecompipe.defects`) in drafts of generated rows, and the
ledger that records each one.

Adding a defect type means its catalogue entry, its planting function here (registered with :func:`soft`
or :func:`hard` under the entry's name), and its test.

Soft defects alter rows in place. In each file, one uniform draw per row is cut into disjoint intervals,
one per soft type in catalogue order, so a row gets one soft defect at most. Hard defects are extra rows
copied from clean ones and broken, so the clean rows keep the documented counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecompipe.defects import CATALOGUE
from ecompipe.rawformat import KEYS, key_text

NULLABLE_REQUIRED = {"customers": ("first_name", "last_name", "email", "country"), "orders": ("payment_method", "status")}
"""Where null_required leaves a value empty."""
ORPHAN_ID_OFFSET = 10**12
"""Orphans refer to ids far above any generated id, so they never meet a real row."""


# ---------------------------------------------------------------- the ledger

@dataclass
class Ledger:
    """Planted defects of one chunk: row positions in its tables, turned into file lines when written."""

    rows: dict[str, list[tuple[np.ndarray, np.ndarray, str, str, np.ndarray | str]]] = field(default_factory=dict)

    def add(self, file: str, positions, keys, column: str, defect: str, detail="") -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size:
            self.rows.setdefault(file, []).append((positions, np.asarray(keys), column, defect, detail))

    def merge(self, other: Ledger) -> None:
        for file, entries in other.rows.items():
            self.rows.setdefault(file, []).extend(entries)

    def table(self, first_line: dict[str, int]) -> pa.Table | None:
        """The ledger's rows (``rawformat.DEFECT_COLUMNS``), placed at ``first_line`` of each file; None if empty."""
        parts = []
        for file, entries in self.rows.items():
            for positions, keys, column, defect, detail in entries:
                n = positions.size
                parts.append(pa.table({
                    "file": pa.array([f"{file}.csv"] * n),
                    "line": positions + first_line[file],
                    "key": pa.array(keys.astype(str), pa.string()),
                    "column": pa.array([column] * n),
                    "defect": pa.array([defect] * n),
                    "detail": pa.array(np.broadcast_to(np.asarray(detail, dtype=object), n), pa.string()),
                }))
        return pa.concat_tables(parts).sort_by([("file", "ascending"), ("line", "ascending")]) if parts else None


# ---------------------------------------------------------------- planting

@dataclass
class Planting:
    """What a planting function works on: a draft of rows of one file (``shop.CustomersDraft`` or
    ``shop.OrdersDraft``), the random generator, the spec and the ledger."""

    spec: object  # generate.GenerateSpec
    rng: np.random.Generator
    file: str
    draft: object
    ledger: Ledger
    shop: object = None  # shop.Shop, for orders


SOFT: dict[str, Callable[[Planting, np.ndarray], None]] = {}
HARD_ROWS: dict[tuple[str, str], Callable] = {}
DAYS: dict[str, Callable] = {}


def soft(name: str):
    """Register the function planting soft defect ``name`` in the given rows of a draft."""
    def register(plant):
        SOFT[name] = plant
        return plant
    return register


def hard(name: str, file: str, column: str):
    """Register the function breaking copies of clean rows of ``file`` with hard defect ``name``."""
    def register(breaking):
        HARD_ROWS[name, file] = (breaking, column)
        return breaking
    return register


def days(name: str):
    """Register the function planting day defect ``name`` in a history's daily order volumes."""
    def register(plant):
        DAYS[name] = plant
        return plant
    return register


def plant_days(spec, rng: np.random.Generator, weights: np.ndarray, events: list[str]) -> dict[int, tuple[str, str]]:
    """Plant the day defects in ``weights``, the relative order volume of each day of the history (``events``:
    each day's retail event, or ''); return the planted days, as day -> (defect, detail)."""
    planted = {}
    for d in CATALOGUE:
        if d.per == "day" and getattr(spec.rates, d.name) > 0:
            planted |= {day: (d.name, detail) for day, detail in DAYS[d.name](spec, rng, weights, events).items()}
    return planted


def plant_soft(planting: Planting, u: np.ndarray) -> np.ndarray:
    """Plant every soft defect type of the file in the rows whose draw ``u`` falls in its interval; return the
    rows left clean."""
    rates, start = planting.spec.rates, 0.0
    for d in CATALOGUE:
        if d.hard or d.per != "row" or planting.file not in d.files:
            continue
        rate = getattr(rates, d.name)
        SOFT[d.name](planting, np.flatnonzero((u >= start) & (u < start + rate)))
        start += rate
    return np.flatnonzero(u >= start)


def plant_hard(planting: Planting, table: pa.Table, clean: np.ndarray) -> pa.Table:
    """Append the hard defects of the file to ``table``: copies of clean rows, broken, after all the others."""
    extras, at = [], table.num_rows
    for d in CATALOGUE:
        if not d.hard or d.per != "row" or planting.file not in d.files:
            continue
        count = min(planting.rng.binomial(table.num_rows, getattr(planting.spec.rates, d.name)), clean.size)
        picked = np.sort(planting.rng.choice(clean, count, replace=False))
        breaking, column = HARD_ROWS[d.name, planting.file]
        extra = breaking(table.take(picked))
        planting.ledger.add(planting.file, np.arange(at, at + extra.num_rows), _keys(planting.file, extra), column,
                            d.name)
        extras.append(extra)
        at += extra.num_rows
    return pa.concat_tables([table, *extras])


def _keys(file: str, table: pa.Table) -> np.ndarray:
    return key_text(*(table.column(k).to_numpy() for k in KEYS[file]))


@soft("null_required")
def _null_required(p: Planting, rows: np.ndarray) -> None:
    columns = NULLABLE_REQUIRED[p.file]
    chosen = p.rng.choice(columns, rows.size)
    for column in columns:
        hit = rows[chosen == column]
        p.draft.blank(column, hit)
        p.ledger.add(p.file, hit, p.draft.keys(p.file, hit), column, "null_required")


@soft("malformed_email")
def _malformed_email(p: Planting, rows: np.ndarray) -> None:
    emails = p.draft.cols["email"]
    broken = np.array([e.replace("@", "", 1) if k == 0 else e.replace("@", "@@", 1) if k == 1 else e.replace(".", " ", 1)
                       for e, k in zip(emails[rows], p.rng.integers(0, 3, rows.size))], dtype=object)
    emails[rows] = broken
    p.ledger.add(p.file, rows, p.draft.keys(p.file, rows), "email", "malformed_email", broken)


@soft("bad_timestamp")
def _bad_timestamp(p: Planting, rows: np.ndarray) -> None:
    # A slip: after the as-of date, or a few days before the customer's signup, like a mistyped date. Before
    # the signup only where that stays inside the history; elsewhere after as-of. Both keep two days clear of
    # the boundary, so they stay defects in any session time zone.
    o, spec = p.draft, p.spec
    first_day = np.datetime64(spec.first_order_day, "s").astype(np.int64)
    slip_days = p.rng.integers(2, 8, rows.size)
    slipped_day = p.shop.signup_day[o.customer_idx[rows]] - slip_days
    future = (p.rng.random(rows.size) < 0.5) | (slipped_day < 0)
    as_of_end = first_day + spec.history_days * 86_400
    o.epoch[rows] = np.where(future, as_of_end + p.rng.integers(2 * 86_400, 30 * 86_400, rows.size),
                             first_day + slipped_day.astype(np.int64) * 86_400 + o.seconds[rows])
    p.ledger.add(p.file, rows, p.draft.keys(p.file, rows), "order_ts", "bad_timestamp",
                 np.where(future, "after the as-of date", "before the signup").astype(object))


@soft("outlier_amount")
def _outlier_amount(p: Planting, rows: np.ndarray) -> None:
    # An ordinary order's quantities scaled so its amount is 10-50x the shop's median order.
    o = p.draft
    amount = np.bincount(o.line_order, weights=o.quantity * o.price, minlength=o.n)
    typical = p.shop.typical_amount
    rows = rows[amount[rows] <= 2 * typical]
    multiple = p.rng.uniform(10, 50, rows.size)
    o.quantity_factor[rows] = np.maximum(2, np.ceil(multiple * typical / amount[rows])).astype(np.int64)
    o.quantity = o.quantity * o.quantity_factor[o.line_order]
    p.ledger.add(p.file, rows, p.draft.keys(p.file, rows), "amount", "outlier_amount",
                 np.char.add(np.round(o.quantity_factor[rows] * amount[rows] / typical, 1).astype(str),
                             "x typical").astype(object))


@soft("nonpositive_value")
def _nonpositive_value(p: Planting, rows: np.ndarray) -> None:
    # A zero or negative quantity or price, never on a line of an outlier order.
    o = p.draft
    rows = rows[o.quantity_factor[o.line_order[rows]] == 1]
    on_price = p.rng.random(rows.size) < 0.5
    bad_value = p.rng.integers(-2, 1, rows.size)
    o.quantity[rows[~on_price]] = bad_value[~on_price]
    o.price[rows[on_price]] = bad_value[on_price]
    p.ledger.add(p.file, rows[~on_price], o.keys(p.file, rows[~on_price]), "quantity", "nonpositive_value")
    p.ledger.add(p.file, rows[on_price], o.keys(p.file, rows[on_price]), "unit_price", "nonpositive_value")


@days("anomalous_day")
def _anomalous_day(spec, rng: np.random.Generator, weights: np.ndarray, events: list[str]) -> dict[int, str]:
    # Whole days, away from the history's edges and from retail events, so that no model of ordinary days
    # could call them ordinary: half outages, half surges.
    eligible = np.array([day for day, event in enumerate(events) if not event and 28 <= day < len(events) - 14],
                        dtype=np.int64)
    count = min(round(spec.rates.anomalous_day * len(events)), eligible.size)
    chosen = np.sort(rng.choice(eligible, count, replace=False))
    outage = rng.random(count) < 0.5
    factor = np.where(outage, rng.uniform(0.05, 0.30, count), rng.uniform(3, 5, count))
    weights[chosen] *= factor
    return {int(day): f"outage: {f:.0%} of the day's expected orders" if out else
            f"surge: {f:.1f}x the day's expected orders" for day, out, f in zip(chosen, outage, factor)}


@hard("duplicate_key", "customers", "customer_id")
def _duplicate_customer(rows):
    return rows.set_column(3, "email", pc.binary_join_element_wise("dup.", rows.column("email"), ""))


@hard("duplicate_key", "orders", "order_id")
def _duplicate_order(rows):
    return rows.set_column(4, "payment_method", pa.array(["gift_card"] * rows.num_rows, pa.string()))


@hard("orphan_reference", "orders", "customer_id")
def _orphan_order(rows):
    rows = rows.set_column(0, "order_id", pc.add(rows.column("order_id"), ORPHAN_ID_OFFSET))
    return rows.set_column(1, "customer_id", pc.add(rows.column("customer_id"), ORPHAN_ID_OFFSET))


@hard("duplicate_key", "order_items", "line_no")
def _duplicate_line(rows):
    return rows.set_column(3, "quantity", pa.array(np.full(rows.num_rows, 1, np.int32)))


@hard("orphan_reference", "order_items", "product_id")
def _orphan_line(rows):
    # A new line on an existing order, for a product that does not exist.
    rows = rows.set_column(1, "line_no", pc.add(rows.column("line_no"), np.int32(100)))
    return rows.set_column(2, "product_id", pc.add(rows.column("product_id"), ORPHAN_ID_OFFSET))

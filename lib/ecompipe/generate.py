"""Synthetic e-commerce data: customers, products, orders and their lines, written as raw CSV files.

The shop model (:mod:`ecompipe.shop`) draws clean rows; :mod:`ecompipe.planting` spoils some on purpose, as
the defect catalogue (:mod:`ecompipe.defects`) says, and records each in the ledger; the files are the raw
format (:mod:`ecompipe.rawformat`) that ingest reads. Work is cut into chunks fixed by the spec alone (customers in blocks, orders in runs of whole days),
each with its own random stream, so the same spec writes byte-identical files on any machine and with any
number of worker threads, in bounded memory at any scale.

A daily increment is one more chunk: a day's new signups and orders, drawn against the customers and
products in the warehouse.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model

from ecompipe import DEFAULT_AS_OF, planting, warehouse
from ecompipe.defects import CATALOGUE
from ecompipe.planting import Ledger, Planting
from ecompipe.rawformat import RawFiles, csv_body
from ecompipe.shop import (CUSTOMERS_PER_SCALE, MAX_LINES, ORDERS_PER_SCALE, Shop, day_weights, draft_customers,
                           draft_orders, event_days, products_table, seeded, shop_of, signup_days)

CHUNK_ROWS = 100_000

DefectRates = create_model(
    "DefectRates",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    __doc__="Share of rows given each defect type; the defaults are the catalogue's.",
    **{d.name: (float, Field(d.rate, ge=0, le=0.2, description=d.what)) for d in CATALOGUE},
)


class GenerateSpec(BaseModel):
    """What to generate. The defaults are those of `ecompipe run`."""

    model_config = ConfigDict(frozen=True)

    scale: float = Field(1.0, gt=0, description="1 = 10,000 customers and 50,000 orders")
    seed: int = 42
    as_of: date = DEFAULT_AS_OF
    history_days: int = Field(730, gt=0, description="days of orders, ending at as_of")
    signup_lead_days: int = Field(730, ge=0, description="signups start this long before the order history")
    yearly_growth: float = Field(0.20, ge=-0.5, description="year-over-year growth of order volume")
    seasonal_amplitude: float = Field(0.15, ge=0, lt=1, description="yearly cycle, peaking at the end of November")
    activity_sigma: float = Field(1.3, ge=0, description="spread of customers' lognormal activity: the heavy tail")
    mean_lines: float = Field(2.0, ge=1, description="mean lines per order (geometric, at most MAX_LINES)")
    promo_share: float = Field(0.08, ge=0, le=1, description="share of orders under a promotion")
    promo_share_sales_weeks: float = Field(0.35, ge=0, le=1, description="the same, 20 November to 2 December")
    defects: DefectRates = DefectRates()
    clean: bool = Field(False, description="no defects at all, whatever `defects` says")
    chunk_rows: int = Field(CHUNK_ROWS, ge=100, description="rows per chunk; part of what fixes the output")
    increment: bool = Field(False, description="only as_of's new signups and orders, against the warehouse")

    @property
    def rates(self) -> DefectRates:
        return DefectRates(**{k: 0.0 for k in DefectRates.model_fields}) if self.clean else self.defects

    @property
    def n_customers(self) -> int:
        return max(1, round(CUSTOMERS_PER_SCALE * self.scale))

    @property
    def n_orders(self) -> int:
        return max(1, round(ORDERS_PER_SCALE * self.scale))

    @property
    def first_order_day(self) -> date:
        return self.as_of - timedelta(days=self.history_days - 1)

    @property
    def first_signup_day(self) -> date:
        return self.first_order_day - timedelta(days=self.signup_lead_days)


# ---------------------------------------------------------------- one chunk

@dataclass
class Chunk:
    """A chunk of one or more files, as CSV bytes ready to append, with its ledger and profile."""

    csv: dict[str, bytes]
    rows: dict[str, int]
    ledger: Ledger
    profile: Profile = field(default_factory=lambda: Profile())
    orders: int = 0  # generated orders, for progress: the extra rows of hard defects not counted

    @classmethod
    def of(cls, tables: dict[str, pa.Table], ledger: Ledger, profile: Profile | None = None, orders: int = 0) -> Chunk:
        return cls({name: csv_body(t, name) for name, t in tables.items()},
                   {name: t.num_rows for name, t in tables.items()}, ledger, profile or Profile(), orders)


def customers_chunk(spec: GenerateSpec, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray) -> Chunk:
    ledger = Ledger()
    on_customers = Planting(spec, rng, "customers", draft_customers(spec, rng, ids, signup), ledger)
    clean = planting.plant_soft(on_customers, rng.random(ids.size))
    table = planting.plant_hard(on_customers, on_customers.draft.table(), clean)
    return Chunk.of({"customers": table}, ledger)


@functools.lru_cache(maxsize=1)  # once: every chunk of orders needs it
def orders_per_day(spec: GenerateSpec) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """How many orders each day of the history gets, and the days planted with a day defect."""
    weights = day_weights(spec)
    planted = planting.plant_days(spec, seeded(spec, 5), weights, event_days(spec))
    return seeded(spec, 4).multinomial(spec.n_orders, weights / weights.sum()), planted


def orders_chunk(spec: GenerateSpec, rng: np.random.Generator, shop: Shop, day: np.ndarray, first_id: int,
                 planted_days: dict[int, tuple[str, str]] | None = None) -> Chunk:
    """Orders on the given days (relative to the first order day) with ids from ``first_id``, and their lines.
    ``planted_days`` (day -> defect and detail) go to the ledger at the line of the day's first order."""
    ledger, draft = Ledger(), draft_orders(spec, rng, shop, day, first_id)
    for planted_day, (defect, detail) in (planted_days or {}).items():
        if day.size and day[0] <= planted_day <= day[-1]:
            ledger.add("orders", [np.searchsorted(draft.day, planted_day)],
                       [str(spec.first_order_day + timedelta(days=planted_day))], "order_ts", defect, detail)
    on_orders = Planting(spec, rng, "orders", draft, ledger, shop)
    clean_orders = planting.plant_soft(on_orders, rng.random(draft.n))
    draft.price_lines()
    on_lines = Planting(spec, rng, "order_items", draft, ledger, shop)
    clean_lines = planting.plant_soft(on_lines, rng.random(draft.line_order.size))
    clean_lines = clean_lines[np.isin(draft.line_order[clean_lines], clean_orders)]  # a clean line of a clean order
    orders, items = draft.tables(shop)
    profile = Profile()
    profile.add(draft.epoch, orders.column("customer_id").to_numpy(), draft.bearing(), draft.line_order,
                draft.quantity * draft.price - draft.discount, (spec.first_order_day, spec.as_of))
    orders = planting.plant_hard(on_orders, orders, clean_orders)
    items = planting.plant_hard(on_lines, items, clean_lines)
    return Chunk.of({"orders": orders, "order_items": items}, ledger, profile, orders=day.size)


def day_chunks(per_day: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Runs of whole days holding about ``chunk_rows`` orders each, as (first day, stop day)."""
    start, total = 0, 0
    for day, count in enumerate(per_day):
        total += count
        if total >= chunk_rows:
            yield start, day + 1
            start, total = day + 1, 0
    if start < len(per_day):
        yield start, len(per_day)


# ---------------------------------------------------------------- what was generated

class Profile:
    """Running totals of what was written, for the notebook's charts, without reading the files back.

    Counts the generated orders and lines as written (soft defects included), not the extra rows of
    hard defects, which ingest quarantines.
    """

    def __init__(self):
        self.orders_per_day = pd.Series(dtype=float)
        self.revenue_per_month = pd.Series(dtype=float)
        self.lines_per_order = np.zeros(MAX_LINES + 1)
        self.spend = np.zeros(0)  # by customer_id

    def add(self, epoch: np.ndarray, customer_ids: np.ndarray, bearing: np.ndarray, line_order: np.ndarray,
            line_revenue: np.ndarray, window: tuple[date, date]) -> None:
        """Add a chunk; the time series keep to ``window``, leaving out planted timestamp defects."""
        days = epoch.astype("datetime64[s]").astype("datetime64[D]")
        revenue = np.bincount(line_order, weights=line_revenue, minlength=epoch.size) * bearing
        inside = (days >= np.datetime64(window[0])) & (days <= np.datetime64(window[1]))
        self.orders_per_day = self.orders_per_day.add(pd.Series(days[inside]).value_counts(), fill_value=0)
        months = pd.Series(revenue[inside]).groupby(days[inside].astype("datetime64[M]")).sum()
        self.revenue_per_month = self.revenue_per_month.add(months, fill_value=0)
        self.lines_per_order += np.bincount(np.bincount(line_order, minlength=epoch.size), minlength=MAX_LINES + 1)
        spend = np.bincount(customer_ids, weights=revenue)
        if spend.size > self.spend.size:
            self.spend = np.concatenate([self.spend, np.zeros(spend.size - self.spend.size)])
        self.spend[:spend.size] += spend

    def merge(self, other: Profile) -> None:
        self.orders_per_day = self.orders_per_day.add(other.orders_per_day, fill_value=0)
        self.revenue_per_month = self.revenue_per_month.add(other.revenue_per_month, fill_value=0)
        self.lines_per_order += other.lines_per_order
        if other.spend.size > self.spend.size:
            self.spend = np.concatenate([self.spend, np.zeros(other.spend.size - self.spend.size)])
        self.spend[:other.spend.size] += other.spend

    def frames(self) -> dict[str, pd.DataFrame]:
        lines = pd.Series(self.lines_per_order[1:], index=pd.RangeIndex(1, MAX_LINES + 1))
        return {
            "orders_per_day": self.orders_per_day.sort_index().rename_axis("day").reset_index(name="orders"),
            "revenue_per_month": self.revenue_per_month.sort_index().rename_axis("month").reset_index(name="revenue"),
            "lines_per_order": lines.rename_axis("lines").reset_index(name="orders"),
            "lorenz": lorenz(self.spend[self.spend > 0]),
        }


def lorenz(spend: np.ndarray, points: int = 1_000) -> pd.DataFrame:
    """Cumulative share of revenue against cumulative share of customers, smallest spenders first, at ``points``
    even steps of the customers (or at each, if fewer): drawn from a million points, the same curve took 1.8 s."""
    spend = np.sort(spend[np.isfinite(spend)])
    cumulative = np.concatenate([[0.0], np.cumsum(spend) / (spend.sum() or 1.0)])
    steps = min(points, spend.size)
    at = np.arange(steps + 1) * spend.size // max(steps, 1)  # whole customers: the first 80% is as many as before
    return pd.DataFrame({"customers_share": at / max(spend.size, 1), "revenue_share": cumulative[at]})


@dataclass
class Generated:
    raw_dir: Path
    rows: dict[str, int]
    defects: dict[str, int]
    profile: Profile


def defect_summary(spec: GenerateSpec, generated: Generated) -> pd.DataFrame:
    """The defect catalogue with this run's rates and what was planted of each type."""
    return pd.DataFrame([{
        "defect": d.name, "rate": getattr(spec.rates, d.name), "planted": generated.defects.get(d.name, 0),
        "files": ", ".join(d.files), "hard": d.hard, "dimension": d.dimension or "(an anomaly)", "what": d.what,
    } for d in CATALOGUE]).set_index("defect")


# ---------------------------------------------------------------- files

def write_dataset(spec: GenerateSpec, out_dir: Path, progress=None, engine=None, workers: int | None = None
                  ) -> Generated:
    """Write the four raw files and ``_defects.csv`` into ``out_dir``.

    Chunks are generated by ``workers`` threads (default: one per core, at most 4) and written in order, so
    the files do not depend on the number of workers.
    With ``spec.increment``, only ``spec.as_of``'s new signups and orders are written, against the
    customers and products in the warehouse behind ``engine``. ``progress`` is an optional callable
    taking the number of orders just written (a tqdm bar's ``update``).
    """
    if spec.increment:  # refused before anything is written when the warehouse was generated otherwise
        warehouse.increment_parameters(engine, spec.scale, spec.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = Profile()
    with RawFiles(out_dir) as files:
        chunks = [increment_chunk(spec, engine)] if spec.increment else _chunks(spec, workers)
        for chunk in chunks:
            files.append(chunk.csv, chunk.rows, chunk.ledger)
            profile.merge(chunk.profile)
            if progress and chunk.orders:
                progress(chunk.orders)
        return Generated(out_dir, files.rows, files.defect_counts, profile)


def _tasks(spec: GenerateSpec) -> list[tuple[str, int, int, int]]:
    """(kind, chunk number, first, stop) for every chunk, in file order: customers, products, orders.

    ``first`` and ``stop`` count customers, or days of order history.
    """
    tasks = [("customers", c, start, min(start + spec.chunk_rows, spec.n_customers))
             for c, start in enumerate(range(0, spec.n_customers, spec.chunk_rows))]
    tasks.append(("products", 0, 0, 0))
    per_day, _ = orders_per_day(spec)
    tasks += [("orders", c, first, stop) for c, (first, stop) in enumerate(day_chunks(per_day, spec.chunk_rows))]
    return tasks


def _chunks(spec: GenerateSpec, workers: int | None) -> Iterator[Chunk]:
    """The chunks in file order, drawn by ``workers`` threads. numpy and pyarrow release the GIL for most of a
    chunk's work; threads start at once, where a worker process would first spend 2 s importing."""
    workers = workers or min(os.cpu_count() or 1, 4)
    shop_of(spec)  # and the Faker pools and signup days it draws from: here once, not by every thread at once
    window = 2 * workers  # chunks in flight: bounds memory whatever the scale
    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for task in _tasks(spec):
            pending.append(pool.submit(_run_task, spec, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _run_task(spec: GenerateSpec, task: tuple[str, int, int, int]) -> Chunk:
    kind, chunk, first, stop = task
    if kind == "customers":
        signup = np.datetime64(spec.first_signup_day) + signup_days(spec)[first:stop].astype("timedelta64[D]")
        return customers_chunk(spec, seeded(spec, 1, chunk + 1), np.arange(first + 1, stop + 1, dtype=np.int64), signup)
    if kind == "products":
        return Chunk.of({"products": products_table(spec)}, Ledger())
    per_day, planted_days = orders_per_day(spec)  # computed once, like signup_days and the shop
    day = np.repeat(np.arange(first, stop), per_day[first:stop])
    first_id = int(per_day[:first].sum()) + 1
    return orders_chunk(spec, seeded(spec, 6, chunk), shop_of(spec), day, first_id, planted_days)


# ---------------------------------------------------------------- daily increments

def increment_chunk(spec: GenerateSpec, engine) -> Chunk:
    """``as_of``'s new signups and orders, against the warehouse's customers and products.

    Volumes follow the same model as a full history ending on that day. Ids come from a block reserved
    for the day in the warehouse, so generating the same day again gives identical rows, and no other
    day, generated or loaded, collides with them.
    """
    stream = spec.as_of.toordinal()
    weights = day_weights(spec)
    n_signups = seeded(spec, 10, stream).poisson(spec.n_customers / (spec.signup_lead_days + spec.history_days))
    n_orders = max(1, seeded(spec, 11, stream).poisson(spec.n_orders * weights[-1] / weights.sum()))
    existing, products = warehouse.increment_state(engine, spec.as_of, planting.ORPHAN_ID_OFFSET)
    first_customer, first_order = warehouse.reserve_increment_ids(engine, spec.as_of, n_signups, n_orders,
                                                                   planting.ORPHAN_ID_OFFSET)

    new_ids = np.arange(first_customer, first_customer + n_signups, dtype=np.int64)
    signup = np.full(n_signups, np.datetime64(spec.as_of), dtype="datetime64[D]")
    customers = customers_chunk(spec, seeded(spec, 12, stream), new_ids, signup)
    first = np.datetime64(spec.first_order_day, "D")
    signup_day = np.concatenate([(existing["signup_date"].to_numpy(dtype="datetime64[D]") - first).astype(int),
                                 np.full(n_signups, spec.history_days - 1)])
    customer_ids = np.concatenate([existing["customer_id"].to_numpy(dtype=np.int64), new_ids])
    by_signup = np.lexsort((customer_ids, signup_day))
    shop = Shop.build(spec, customer_ids[by_signup], signup_day[by_signup],
                      products["product_id"].to_numpy(dtype=np.int64), products["unit_price"].to_numpy(dtype=float))
    orders = orders_chunk(spec, seeded(spec, 13, stream), shop, np.full(n_orders, spec.history_days - 1), first_order)
    customers.ledger.merge(orders.ledger)
    empty_products = csv_body(products_table(spec).slice(0, 0), "products")
    return Chunk({**customers.csv, "products": empty_products, **orders.csv},
                 {**customers.rows, "products": 0, **orders.rows}, customers.ledger, orders.profile, n_orders)

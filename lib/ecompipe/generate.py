"""Synthetic e-commerce data: customers, products, orders and their lines, written as CSV.

Faker supplies realistic values once, into small per-locale pools; numpy sampling supplies the volume.
Calling Faker once per row would be about 20x slower. Every random draw comes from a generator seeded by
``(seed, stream, chunk)`` or from a hash of ``(seed, id)``, and chunks are fixed by the spec alone, so the
same spec writes byte-identical files on any machine, in bounded memory at any scale.

Defects are planted on purpose, each type at its own rate, and every one is written to ``_defects.csv``
(the ground truth that validation and anomaly detection are judged against). Hard defects (duplicate
keys, orphan references) are extra rows, so the clean rows keep the documented counts; soft defects alter
rows in place.

The files are the raw format that ingest reads (README, "Raw file format"): UTF-8 CSV, comma-separated,
a header line with the column names of :data:`COLUMNS` in that order, an empty field for NULL.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import unicodedata
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from faker import Faker
from pydantic import BaseModel, ConfigDict, Field, create_model

from ecompipe.defects import CATALOGUE
from ecompipe.warehouse import increment_parameters
from ecompipe import DEFAULT_AS_OF

CUSTOMERS_PER_SCALE = 10_000
ORDERS_PER_SCALE = 50_000
CHUNK_ROWS = 100_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "first_name", "last_name", "email", "phone", "city", "state", "country", "signup_date"),
    "products": ("product_id", "product_name", "category", "unit_price", "unit_cost"),
    "orders": ("order_id", "customer_id", "order_ts", "status", "payment_method"),
    "order_items": ("order_id", "line_no", "product_id", "quantity", "unit_price", "discount"),
}
"""Every raw file, in load order (parents before children), with its columns in file order."""

KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_no"),
}
DEFECTS_FILE = "_defects.csv"
DEFECT_COLUMNS = ("file", "line", "key", "column", "defect", "detail")

STATUSES = ("placed", "shipped", "delivered", "cancelled", "returned")
REVENUE_STATUSES = ("placed", "shipped", "delivered")

# Locale -> (country, share of customers). Not it_IT: its city list is built from a set, so its
# order (and so the names drawn) changes with PYTHONHASHSEED and breaks determinism across processes.
LOCALES = {
    "en_US": ("United States", 0.52),
    "en_GB": ("United Kingdom", 0.13),
    "de_DE": ("Germany", 0.11),
    "fr_FR": ("France", 0.09),
    "es_ES": ("Spain", 0.08),
    "nl_NL": ("Netherlands", 0.07),
}
POOL_SIZE = 300

# Category -> (median list price, (lowest, highest) gross margin, nouns). 11 categories x 45 = 495 products.
CATEGORIES: dict[str, tuple[float, tuple[float, float], tuple[str, ...]]] = {
    "Electronics": (120.0, (0.15, 0.35), ("Headphones", "Speaker", "Smartwatch", "Camera", "Charger")),
    "Computers": (450.0, (0.10, 0.25), ("Laptop", "Monitor", "Keyboard", "Router", "Tablet")),
    "Home & Kitchen": (45.0, (0.35, 0.55), ("Blender", "Kettle", "Cookware Set", "Lamp", "Knife Block")),
    "Clothing": (35.0, (0.50, 0.70), ("T-Shirt", "Jacket", "Jeans", "Sweater", "Dress")),
    "Shoes": (75.0, (0.40, 0.60), ("Sneakers", "Boots", "Sandals", "Loafers", "Running Shoes")),
    "Beauty": (22.0, (0.55, 0.75), ("Serum", "Moisturizer", "Shampoo", "Lipstick", "Perfume")),
    "Sports & Outdoors": (55.0, (0.30, 0.50), ("Yoga Mat", "Tent", "Backpack", "Dumbbells", "Bike Helmet")),
    "Toys & Games": (28.0, (0.40, 0.60), ("Puzzle", "Board Game", "Building Set", "Doll", "RC Car")),
    "Books": (16.0, (0.25, 0.45), ("Novel", "Cookbook", "Biography", "Travel Guide", "Comic")),
    "Grocery": (9.0, (0.20, 0.35), ("Coffee Beans", "Olive Oil", "Tea Sampler", "Chocolate", "Granola")),
    "Garden": (40.0, (0.35, 0.55), ("Planter", "Hose", "Pruning Shears", "Bird Feeder", "Seed Kit")),
}
PRODUCTS_PER_CATEGORY = 45
ADJECTIVES = ("Classic", "Pro", "Eco", "Ultra", "Compact", "Deluxe", "Smart", "Essential", "Premium")

PAYMENT_METHODS = {"credit_card": 0.52, "paypal": 0.21, "debit_card": 0.13, "apple_pay": 0.07,
                   "gift_card": 0.03, "bank_transfer": 0.04}

# Weekly (Monday first) and intra-day (UTC hours) cycles of order volume.
WEEKDAY_WEIGHTS = (0.95, 0.96, 0.97, 1.0, 1.04, 1.10, 1.05)
HOUR_WEIGHTS = (0.6, 0.4, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.4, 1.7, 1.9, 2.1,
                2.3, 2.2, 2.0, 1.9, 1.9, 2.0, 2.3, 2.6, 2.7, 2.4, 1.7, 1.0)
YEARLY_PEAK_DAY = 334  # 30 November
SALES_WEEKS = (324, 336)  # day of year: 20 November to 2 December, Black Friday to Cyber Monday

# Status mix by order age in days: recent orders are still placed or shipped.
STATUS_BY_AGE = (  # (max age, probabilities in STATUSES order)
    (1, (0.70, 0.22, 0.00, 0.08, 0.00)),
    (6, (0.10, 0.55, 0.28, 0.06, 0.01)),
    (None, (0.00, 0.00, 0.885, 0.055, 0.06)),
)
PROMO_DISCOUNTS = (0.10, 0.15, 0.20, 0.25)
MAX_LINES = 8
MAX_QUANTITY = 6

ORPHAN_ID_OFFSET = 10**12
"""Orphan orders take ids far above any generated id, so they never collide with a real order."""
NULLABLE_REQUIRED = {"customers": ("first_name", "last_name", "email", "country"), "orders": ("payment_method", "status")}


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
    seasonal_amplitude: float = Field(0.45, ge=0, lt=1, description="yearly cycle, peaking at the end of November")
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


def _rng(spec: GenerateSpec, *stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *stream])


def _hash_uniform(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
    """A uniform in (0, 1) per id, the same whichever chunk or day the id turns up in (splitmix64)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 1_000_003 + stream) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def activity(spec: GenerateSpec, customer_ids: np.ndarray) -> np.ndarray:
    """How keen each customer is to order: lognormal by id, so a minority brings most orders."""
    u1, u2 = _hash_uniform(spec.seed, 1, customer_ids), _hash_uniform(spec.seed, 2, customer_ids)
    return np.exp(spec.activity_sigma * np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))


def popularity(spec: GenerateSpec, product_ids: np.ndarray) -> np.ndarray:
    """Zipf-like probability of each product appearing on a line; the ranking is a hash of the id."""
    rank = np.empty(len(product_ids))
    rank[np.argsort(_hash_uniform(spec.seed, 3, product_ids), kind="stable")] = np.arange(1, len(product_ids) + 1)
    weights = 1.0 / rank**1.1
    return weights / weights.sum()


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum()).lower()


@functools.cache
def _pools(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per-locale pools of Faker values; sampling from them gives realistic columns at numpy speed."""
    pools = {}
    for i, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + i)
        first = [fake.first_name() for _ in range(POOL_SIZE)]
        last = [fake.last_name() for _ in range(POOL_SIZE)]
        pools[locale] = {
            "first_name": np.array(first, dtype=object),
            "last_name": np.array(last, dtype=object),
            "first_ascii": np.array([_ascii(n) or "user" for n in first], dtype=object),
            "last_ascii": np.array([_ascii(n) or "shopper" for n in last], dtype=object),
            "city": np.array([fake.city() for _ in range(POOL_SIZE // 2)], dtype=object),
            "state": np.array([fake.administrative_unit() for _ in range(POOL_SIZE // 3)], dtype=object),
            "phone": np.array([fake.phone_number() for _ in range(POOL_SIZE)], dtype=object),
            "domain": np.array(sorted({fake.free_email_domain() for _ in range(20)}), dtype=object),
            "brand": np.array(sorted({fake.last_name() for _ in range(80)}), dtype=object),
        }
    return pools


def _utc_text(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds as ``2025-03-02 14:23:11Z``; 15x faster than writing a time-zone-aware column."""
    return pc.binary_join_element_wise(pa.array(seconds.astype("datetime64[s]")).cast(pa.string()), "Z", "")


# ---------------------------------------------------------------- the defects ledger

@dataclass
class Defects:
    """Planted defects of one chunk: row positions in its tables, later turned into file lines."""

    rows: dict[str, list[tuple[np.ndarray, np.ndarray, str, str, np.ndarray | str]]] = field(default_factory=dict)

    def add(self, file: str, positions, keys, column: str, defect: str, detail="") -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size:
            self.rows.setdefault(file, []).append((positions, np.asarray(keys), column, defect, detail))

    def table(self, first_line: dict[str, int]) -> pa.Table | None:
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


def _pick(u: np.ndarray, start: float, rate: float) -> np.ndarray:
    """Rows whose draw falls in [start, start + rate): disjoint intervals give each row one defect at most."""
    return np.flatnonzero((u >= start) & (u < start + rate))


def _key_text(*columns: np.ndarray) -> np.ndarray:
    text = columns[0].astype(str).astype(object)
    for col in columns[1:]:
        text = text + "|" + col.astype(str).astype(object)
    return text


# ---------------------------------------------------------------- customers

@functools.lru_cache(maxsize=1)
def signup_days(spec: GenerateSpec) -> np.ndarray:
    """Signup day of every customer, as days after ``first_signup_day``; sorted, so ids follow signups.

    The first customer signs up on the first day, so every order day has someone to order.
    """
    span = spec.signup_lead_days + spec.history_days
    days = np.sort(_rng(spec, 1).integers(0, span, spec.n_customers))
    days[0] = 0
    return days


def _customers(spec: GenerateSpec, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray) -> tuple[pa.Table, Defects]:
    pools = _pools(spec.seed)
    locales = list(LOCALES)
    shares = np.array([share for _, share in LOCALES.values()])
    n = ids.size
    locale_idx = rng.choice(len(locales), n, p=shares / shares.sum())
    cols = {c: np.empty(n, dtype=object) for c in COLUMNS["customers"][1:-1]}
    for li, locale in enumerate(locales):
        rows = np.flatnonzero(locale_idx == li)
        pool = pools[locale]
        pick = {k: rng.integers(0, len(pool[k]), rows.size)
                for k in ("first_name", "last_name", "domain", "phone", "city", "state")}
        first, last = pick["first_name"], pick["last_name"]
        cols["first_name"][rows] = pool["first_name"][first]
        cols["last_name"][rows] = pool["last_name"][last]
        cols["email"][rows] = (pool["first_ascii"][first] + "." + pool["last_ascii"][last]
                               + ids[rows].astype(str).astype(object) + "@" + pool["domain"][pick["domain"]])
        cols["phone"][rows] = pool["phone"][pick["phone"]]
        cols["city"][rows] = pool["city"][pick["city"]]
        cols["state"][rows] = pool["state"][pick["state"]]
        cols["country"][rows] = LOCALES[locale][0]

    defects, rates = Defects(), spec.rates
    u = rng.random(n)
    nulls = _pick(u, 0, rates.null_required)
    null_col = rng.choice(NULLABLE_REQUIRED["customers"], nulls.size)
    for col in NULLABLE_REQUIRED["customers"]:
        rows = nulls[null_col == col]
        cols[col][rows] = None
        defects.add("customers", rows, ids[rows], col, "null_required")
    bad = _pick(u, rates.null_required, rates.malformed_email)
    broken = np.array([e.replace("@", "", 1) if k == 0 else e.replace("@", "@@", 1) if k == 1 else e.replace(".", " ", 1)
                       for e, k in zip(cols["email"][bad], rng.integers(0, 3, bad.size))], dtype=object)
    cols["email"][bad] = broken
    defects.add("customers", bad, ids[bad], "email", "malformed_email", broken)

    table = pa.table({"customer_id": ids, **{c: pa.array(v, pa.string()) for c, v in cols.items()},
                      "signup_date": pa.array(signup.astype("datetime64[D]"), pa.date32())})
    clean_rows = np.flatnonzero(u >= rates.null_required + rates.malformed_email)
    dups = rng.choice(clean_rows, min(rng.binomial(n, rates.duplicate_key), clean_rows.size), replace=False)
    if dups.size:  # the same customer_id again, later in the file, with another email
        extra = table.take(np.sort(dups))
        extra = extra.set_column(3, "email", pc.binary_join_element_wise("dup.", extra.column("email"), ""))
        defects.add("customers", np.arange(n, n + extra.num_rows), extra.column("customer_id").to_numpy(),
                    "customer_id", "duplicate_key")
        table = pa.concat_tables([table, extra])
    return table, defects


# ---------------------------------------------------------------- products

def products_table(spec: GenerateSpec) -> pa.Table:
    rng = _rng(spec, 2)
    brands = _pools(spec.seed)["en_US"]["brand"]
    names, categories, prices, costs = [], [], [], []
    for category, (median, (lo, hi), nouns) in CATEGORIES.items():
        n = PRODUCTS_PER_CATEGORY
        names += [f"{b} {a} {noun}" for b, a, noun in zip(
            brands[rng.integers(0, len(brands), n)], rng.choice(ADJECTIVES, n), rng.choice(nouns, n))]
        categories += [category] * n
        price = np.maximum(np.floor(rng.lognormal(np.log(median), 0.5, n)) + 0.99, 1.99)
        prices.append(price)
        costs.append(np.round(price * (1 - rng.uniform(lo, hi, n)), 2))
    return pa.table({
        "product_id": np.arange(1, len(names) + 1, dtype=np.int64),
        "product_name": pa.array(names, pa.string()),
        "category": pa.array(categories, pa.string()),
        "unit_price": np.concatenate(prices),
        "unit_cost": np.concatenate(costs),
    })


# ---------------------------------------------------------------- orders and lines

def day_weights(spec: GenerateSpec) -> np.ndarray:
    """Relative order volume of each day of the history: growth x yearly x weekly cycles."""
    days = np.datetime64(spec.first_order_day) + np.arange(spec.history_days).astype("timedelta64[D]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(int) + 1
    weekday = (days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    growth = (1 + spec.yearly_growth) ** (np.arange(spec.history_days) / 365.25)
    yearly = 1 + spec.seasonal_amplitude * np.cos(2 * np.pi * (day_of_year - YEARLY_PEAK_DAY) / 365.25)
    return growth * yearly * np.array(WEEKDAY_WEIGHTS)[weekday]


@dataclass
class Shop:
    """Who can order and what they can buy: the generated world, or the warehouse's for an increment."""

    customer_ids: np.ndarray  # sorted by signup day
    signup_day: np.ndarray  # days after the spec's first order day (negative: signed up before the history)
    keen: np.ndarray  # cumulative activity, in the same order
    product_ids: np.ndarray
    list_price: np.ndarray
    product_p: np.ndarray

    @classmethod
    def build(cls, spec, customer_ids, signup_day, product_ids, list_price) -> Shop:
        return cls(customer_ids, signup_day, np.cumsum(activity(spec, customer_ids)), product_ids, list_price,
                   popularity(spec, product_ids))


def _orders(spec: GenerateSpec, rng: np.random.Generator, shop: Shop, day: np.ndarray, first_id: int,
            profile: Profile) -> tuple[pa.Table, pa.Table, Defects]:
    """Orders on the given days (relative to the first order day) with ids from ``first_id``, and their lines."""
    n, rates, defects = day.size, spec.rates, Defects()
    seconds = (rng.choice(24, n, p=np.array(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)) * 3600 + rng.integers(0, 3600, n))
    order = np.lexsort((seconds, day))
    day, seconds = day[order], seconds[order]

    # A customer who signed up by that day, chosen in proportion to their activity.
    eligible = np.searchsorted(shop.signup_day, day, side="right")
    customer_idx = np.minimum(np.searchsorted(shop.keen, rng.random(n) * shop.keen[eligible - 1], side="right"),
                              eligible - 1)

    age = spec.history_days - 1 - day
    u = rng.random(n)
    status = np.empty(n, dtype=np.int8)
    lower = -1
    for max_age, probs in STATUS_BY_AGE:
        rows = (age > lower) & (age <= (np.inf if max_age is None else max_age))
        status[rows] = np.searchsorted(np.cumsum(probs), u[rows], side="right")
        lower = lower if max_age is None else max_age
    methods = list(PAYMENT_METHODS)
    payment = rng.choice(len(methods), n, p=np.array(list(PAYMENT_METHODS.values())))
    first_day = np.datetime64(spec.first_order_day, "s").astype(np.int64)
    epoch = first_day + day.astype(np.int64) * 86_400 + seconds
    order_ids = np.arange(first_id, first_id + n, dtype=np.int64)

    # Lines: 1 to MAX_LINES, Zipf-like products, promotions as discounts.
    lines = np.minimum(rng.geometric(1 / spec.mean_lines, n), MAX_LINES)
    line_order = np.repeat(np.arange(n), lines)
    line_no = np.arange(line_order.size) - np.repeat(np.cumsum(lines) - lines, lines) + 1
    product_idx = rng.choice(len(shop.product_p), line_order.size, p=shop.product_p)
    quantity = np.minimum(rng.geometric(0.72, line_order.size), MAX_QUANTITY)
    price = shop.list_price[product_idx].copy()
    dates = np.datetime64(spec.first_order_day) + day.astype("timedelta64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(int) + 1
    in_sales = (day_of_year >= SALES_WEEKS[0]) & (day_of_year <= SALES_WEEKS[1])
    promo = rng.random(n) < np.where(in_sales, spec.promo_share_sales_weeks, spec.promo_share)
    promo_pct = np.where(promo, rng.choice(PROMO_DISCOUNTS, n), 0.0)

    # Soft defects on orders: one per row at most, from disjoint slices of one draw.
    u = rng.random(n)
    nulls = _pick(u, 0, rates.null_required)
    null_col = rng.choice(NULLABLE_REQUIRED["orders"], nulls.size)
    missing = {}
    for col in NULLABLE_REQUIRED["orders"]:
        missing[col] = np.zeros(n, dtype=bool)
        missing[col][nulls[null_col == col]] = True
        defects.add("orders", nulls[null_col == col], order_ids[nulls[null_col == col]], col, "null_required")
    # Timestamp slips: after the as-of date, or a few days before the customer's signup, like a mistyped
    # date. Before the signup only where that stays inside the history; elsewhere after as-of. Both keep two
    # days clear of the boundary, so they stay defects in any session time zone.
    bad_ts = _pick(u, rates.null_required, rates.bad_timestamp)
    slip_days = rng.integers(2, 8, bad_ts.size)
    slipped_day = shop.signup_day[customer_idx[bad_ts]] - slip_days
    future = (rng.random(bad_ts.size) < 0.5) | (slipped_day < 0)
    as_of_end = first_day + spec.history_days * 86_400
    epoch[bad_ts] = np.where(future, as_of_end + rng.integers(2 * 86_400, 30 * 86_400, bad_ts.size),
                             first_day + slipped_day.astype(np.int64) * 86_400 + seconds[bad_ts])
    defects.add("orders", bad_ts, order_ids[bad_ts], "order_ts", "bad_timestamp",
                np.where(future, "after the as-of date", "before the signup").astype(object))
    # Outliers: an ordinary order's quantities scaled so its amount is 10-50x the chunk's median order.
    amount = np.bincount(line_order, weights=quantity * price, minlength=n)
    typical = np.median(amount)
    outliers = _pick(u, rates.null_required + rates.bad_timestamp, rates.outlier_amount)
    outliers = outliers[amount[outliers] <= 2 * typical]
    multiple = rng.uniform(10, 50, outliers.size)
    factor = np.ones(n, dtype=np.int64)
    factor[outliers] = np.maximum(2, np.ceil(multiple * typical / amount[outliers])).astype(np.int64)
    quantity = quantity * factor[line_order]
    discount = np.round(quantity * price * promo_pct[line_order], 2)
    defects.add("orders", outliers, order_ids[outliers], "amount", "outlier_amount",
                np.char.add(np.round(factor[outliers] * amount[outliers] / typical, 1).astype(str), "x typical").astype(object))

    # Soft defects on lines: zero or negative quantity or price, never on an outlier order.
    v = rng.random(line_order.size)
    nonpositive = _pick(v, 0, rates.nonpositive_value)
    nonpositive = nonpositive[factor[line_order[nonpositive]] == 1]
    on_price = rng.random(nonpositive.size) < 0.5
    bad_value = rng.integers(-2, 1, nonpositive.size)
    quantity[nonpositive[~on_price]] = bad_value[~on_price]
    price[nonpositive[on_price]] = bad_value[on_price]
    item_keys = lambda rows: _key_text(order_ids[line_order[rows]], line_no[rows])
    defects.add("order_items", nonpositive[~on_price], item_keys(nonpositive[~on_price]), "quantity", "nonpositive_value")
    defects.add("order_items", nonpositive[on_price], item_keys(nonpositive[on_price]), "unit_price", "nonpositive_value")

    orders = pa.table({
        "order_id": order_ids,
        "customer_id": shop.customer_ids[customer_idx],
        "order_ts": _utc_text(epoch),
        "status": _labels(status, STATUSES, missing["status"]),
        "payment_method": _labels(payment, methods, missing["payment_method"]),
    })
    items = pa.table({
        "order_id": order_ids[line_order],
        "line_no": line_no.astype(np.int32),
        "product_id": shop.product_ids[product_idx],
        "quantity": quantity.astype(np.int32),
        "unit_price": price,
        "discount": discount,
    })
    bearing = np.isin(status, [STATUSES.index(s) for s in REVENUE_STATUSES]) & ~missing["status"]
    profile.add(epoch, orders.column("customer_id").to_numpy(), bearing, line_order, quantity * price - discount,
                (spec.first_order_day, spec.as_of))
    orders, items = _add_hard_defects(spec, rng, orders, items, u, v, defects)
    return orders, items, defects


def _labels(codes: np.ndarray, labels, missing: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8), mask=missing), list(labels)).cast(pa.string())


def _add_hard_defects(spec, rng, orders: pa.Table, items: pa.Table, u, v, defects: Defects):
    """Extra rows breaking a key: a repeated order or line, an order of nobody, a line of nothing."""
    rates = spec.rates
    n_orders, n_items = orders.num_rows, items.num_rows
    soft = rates.null_required + rates.bad_timestamp + rates.outlier_amount
    clean_orders = np.flatnonzero(u >= soft)
    clean_items = np.flatnonzero(v >= rates.nonpositive_value)
    count = lambda n, rate, pool: min(rng.binomial(n, rate), pool.size)

    dup = np.sort(rng.choice(clean_orders, count(n_orders, rates.duplicate_key, clean_orders), replace=False))
    dup_orders = orders.take(dup).set_column(4, "payment_method", pa.array(["gift_card"] * dup.size, pa.string()))
    orphan = np.sort(rng.choice(clean_orders, count(n_orders, rates.orphan_reference, clean_orders), replace=False))
    orphan_orders = orders.take(orphan)
    orphan_orders = orphan_orders.set_column(0, "order_id", pc.add(orphan_orders.column("order_id"), ORPHAN_ID_OFFSET))
    orphan_orders = orphan_orders.set_column(1, "customer_id", pc.add(orphan_orders.column("customer_id"), ORPHAN_ID_OFFSET))
    defects.add("orders", np.arange(n_orders, n_orders + dup.size), dup_orders.column("order_id").to_numpy(),
                "order_id", "duplicate_key")
    defects.add("orders", np.arange(n_orders + dup.size, n_orders + dup.size + orphan.size),
                orphan_orders.column("order_id").to_numpy(), "customer_id", "orphan_reference")

    dup_i = np.sort(rng.choice(clean_items, count(n_items, rates.duplicate_key, clean_items), replace=False))
    dup_items = items.take(dup_i).set_column(3, "quantity", pa.array(np.full(dup_i.size, 1, np.int32)))
    orphan_i = np.sort(rng.choice(clean_items, count(n_items, rates.orphan_reference, clean_items), replace=False))
    orphan_items = items.take(orphan_i)
    # A new line on an existing order, for a product that does not exist.
    orphan_items = orphan_items.set_column(1, "line_no", pc.add(orphan_items.column("line_no"), np.int32(100)))
    orphan_items = orphan_items.set_column(2, "product_id", pc.add(orphan_items.column("product_id"), ORPHAN_ID_OFFSET))
    item_key = lambda t: _key_text(t.column("order_id").to_numpy(), t.column("line_no").to_numpy())
    defects.add("order_items", np.arange(n_items, n_items + dup_i.size), item_key(dup_items), "line_no", "duplicate_key")
    defects.add("order_items", np.arange(n_items + dup_i.size, n_items + dup_i.size + orphan_i.size),
                item_key(orphan_items), "product_id", "orphan_reference")
    return (pa.concat_tables([orders, dup_orders, orphan_orders]), pa.concat_tables([items, dup_items, orphan_items]))


def _day_chunks(per_day: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int]]:
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


def lorenz(spend: np.ndarray) -> pd.DataFrame:
    """Cumulative share of revenue against cumulative share of customers, smallest spenders first."""
    spend = np.sort(spend[np.isfinite(spend)])
    total = spend.sum() or 1.0
    return pd.DataFrame({"customers_share": np.arange(spend.size + 1) / max(spend.size, 1),
                         "revenue_share": np.concatenate([[0.0], np.cumsum(spend) / total])})


@dataclass
class Generated:
    raw_dir: Path
    rows: dict[str, int]
    defects: dict[str, int]
    profile: Profile


# ---------------------------------------------------------------- files

def write_dataset(spec: GenerateSpec, out_dir: Path, progress=None, engine=None, workers: int | None = None
                  ) -> Generated:
    """Write the four raw files and ``_defects.csv`` into ``out_dir``.

    Chunks are generated by ``workers`` processes (default: one per core when there are enough chunks
    to repay starting them, else this process alone) and written in order, so the files do not depend
    on the number of workers.
    With ``spec.increment``, only ``spec.as_of``'s new signups and orders are written, against the
    customers and products in the warehouse behind ``engine``. ``progress`` is an optional callable
    taking the number of orders just written (a tqdm bar's ``update``).
    """
    if spec.increment:  # refused before anything is written when the warehouse was generated otherwise
        increment_parameters(engine, spec.scale, spec.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = Profile()
    with _CsvFiles(out_dir) as files:
        chunks = [_increment(spec, engine)] if spec.increment else _chunks(spec, workers)
        for chunk in chunks:
            files.write(chunk)
            profile.merge(chunk.profile)
            if progress and chunk.orders:
                progress(chunk.orders)
        return Generated(out_dir, files.rows, files.defect_counts, profile)


@dataclass
class _Chunk:
    """A chunk of one or more files, as CSV bytes ready to append, with its defects and profile."""

    csv: dict[str, bytes]
    rows: dict[str, int]
    defects: Defects
    profile: Profile
    orders: int = 0  # generated orders, for progress: the extra rows of hard defects not counted

    @classmethod
    def of(cls, tables: dict[str, pa.Table], defects: Defects, profile: Profile) -> _Chunk:
        csv = {}
        for name, table in tables.items():
            assert tuple(table.column_names) == COLUMNS[name], (name, table.column_names)
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
            csv[name] = sink.getvalue().to_pybytes()
        return cls(csv, {name: t.num_rows for name, t in tables.items()}, defects, profile)


def _tasks(spec: GenerateSpec) -> list[tuple[str, int, int, int]]:
    """(kind, chunk number, first, stop) for every chunk, in file order: customers, products, orders.

    ``first`` and ``stop`` count customers, or days of order history.
    """
    tasks = [("customers", c, start, min(start + spec.chunk_rows, spec.n_customers))
             for c, start in enumerate(range(0, spec.n_customers, spec.chunk_rows))]
    tasks.append(("products", 0, 0, 0))
    tasks += [("orders", c, first, stop) for c, (first, stop) in enumerate(_day_chunks(_orders_per_day(spec), spec.chunk_rows))]
    return tasks


@functools.lru_cache(maxsize=1)
def _orders_per_day(spec: GenerateSpec) -> np.ndarray:
    weights = day_weights(spec)
    return _rng(spec, 4).multinomial(spec.n_orders, weights / weights.sum())


def _chunks(spec: GenerateSpec, workers: int | None) -> Iterator[_Chunk]:
    tasks = _tasks(spec)
    if workers is None:  # starting a worker costs about 2 s of imports: worth it from scale 20 or so
        workers = min(os.cpu_count() or 1, 4) if len(tasks) > 12 else 1
    if workers == 1:
        yield from (_run_task(spec, task) for task in tasks)
        return
    window = 2 * workers  # chunks in flight: bounds memory whatever the scale
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        pending = deque()
        for task in tasks:
            pending.append(pool.submit(_run_task, spec, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _run_task(spec: GenerateSpec, task: tuple[str, int, int, int]) -> _Chunk:
    kind, chunk, first, stop = task
    if kind == "customers":
        signup = np.datetime64(spec.first_signup_day) + signup_days(spec)[first:stop].astype("timedelta64[D]")
        customers, defects = _customers(spec, _rng(spec, 1, chunk + 1), np.arange(first + 1, stop + 1, dtype=np.int64), signup)
        return _Chunk.of({"customers": customers}, defects, Profile())
    if kind == "products":
        return _Chunk.of({"products": products_table(spec)}, Defects(), Profile())
    per_day = _orders_per_day(spec)  # computed once per process, like signup_days and the shop
    profile = Profile()
    day = np.repeat(np.arange(first, stop), per_day[first:stop])
    first_id = int(per_day[:first].sum()) + 1
    orders, items, defects = _orders(spec, _rng(spec, 6, chunk), _shop(spec), day, first_id, profile)
    chunk = _Chunk.of({"orders": orders, "order_items": items}, defects, profile)
    chunk.orders = day.size
    return chunk


@functools.lru_cache(maxsize=1)
def _shop(spec: GenerateSpec) -> Shop:
    products = products_table(spec)
    return Shop.build(spec, np.arange(1, spec.n_customers + 1, dtype=np.int64),
                      signup_days(spec) - spec.signup_lead_days,
                      products.column("product_id").to_numpy(), products.column("unit_price").to_numpy())


# ---------------------------------------------------------------- daily increments

def _increment(spec: GenerateSpec, engine) -> _Chunk:
    """``as_of``'s new signups and orders, against the warehouse's customers and products.

    Volumes follow the same model as a full history ending on that day. Ids come from a block reserved
    for the day in ``increment_ids``, so generating the same day again gives identical rows, and no
    other day, generated or loaded, collides with them.
    """
    stream = spec.as_of.toordinal()
    weights = day_weights(spec)
    n_signups = _rng(spec, 10, stream).poisson(spec.n_customers / (spec.signup_lead_days + spec.history_days))
    n_orders = max(1, _rng(spec, 11, stream).poisson(spec.n_orders * weights[-1] / weights.sum()))
    existing, products = _warehouse_state(engine, spec.as_of)
    first_customer, first_order = _reserve_ids(engine, spec.as_of, n_signups, n_orders)

    new_ids = np.arange(first_customer, first_customer + n_signups, dtype=np.int64)
    signup = np.full(n_signups, np.datetime64(spec.as_of), dtype="datetime64[D]")
    customers, defects = _customers(spec, _rng(spec, 12, stream), new_ids, signup)
    first = np.datetime64(spec.first_order_day, "D")
    signup_day = np.concatenate([(existing["signup_date"].to_numpy(dtype="datetime64[D]") - first).astype(int),
                                 np.full(n_signups, spec.history_days - 1)])
    customer_ids = np.concatenate([existing["customer_id"].to_numpy(dtype=np.int64), new_ids])
    by_signup = np.lexsort((customer_ids, signup_day))
    shop = Shop.build(spec, customer_ids[by_signup], signup_day[by_signup],
                      products["product_id"].to_numpy(dtype=np.int64), products["unit_price"].to_numpy(dtype=float))
    profile = Profile()
    orders, items, order_defects = _orders(spec, _rng(spec, 13, stream), shop,
                                           np.full(n_orders, spec.history_days - 1), first_order, profile)
    defects.rows.update(order_defects.rows)
    chunk = _Chunk.of({"customers": customers, "products": products_table(spec).slice(0, 0),
                       "orders": orders, "order_items": items}, defects, profile)
    chunk.orders = n_orders
    return chunk


def _warehouse_state(engine, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        customers = pd.read_sql(sa.text(
            "select customer_id, signup_date from customers where signup_date < :day and customer_id < :orphan"
        ), conn, params={"day": day, "orphan": ORPHAN_ID_OFFSET})
        products = pd.read_sql(sa.text(
            "select product_id, unit_price from products where unit_price > 0 order by product_id"), conn)
    if customers.empty or products.empty:
        raise ValueError(f"An increment for {day} needs customers who signed up before it and products in the "
                         "warehouse: run the full pipeline first (`ecompipe run`).")
    return customers, products


def _reserve_ids(engine, day: date, customers: int, orders: int) -> tuple[int, int]:
    """The first customer and order id of ``day``'s increment: reserved once, then reused."""
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('ecompipe.increment_ids'))"))
        block = conn.execute(sa.text(
            "select first_customer_id, customers, first_order_id, orders from increment_ids where day = :day"
        ), {"day": day}).one_or_none()
        if block is not None:
            if (block.customers, block.orders) != (customers, orders):
                raise ValueError(f"{day} was generated before with other parameters ({block.customers} signups and "
                                 f"{block.orders} orders, now {customers} and {orders}): use the same scale and seed.")
            return block.first_customer_id, block.first_order_id
        first_customer, first_order = conn.execute(sa.text("""
            select greatest((select max(customer_id) from customers where customer_id < :orphan),
                            (select max(first_customer_id + customers - 1) from increment_ids), 0) + 1,
                   greatest((select max(order_id) from orders where order_id < :orphan),
                            (select max(first_order_id + orders - 1) from increment_ids), 0) + 1
        """), {"orphan": ORPHAN_ID_OFFSET}).one()
        conn.execute(sa.text("insert into increment_ids values (:day, :fc, :c, :fo, :o)"),
                     {"day": day, "fc": first_customer, "c": customers, "fo": first_order, "o": orders})
    return first_customer, first_order


class _CsvFiles:
    """The raw files being written, each opened with a plain (unquoted) header line."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.sinks = {}
        self.rows = {name: 0 for name in COLUMNS}
        self.defect_counts: dict[str, int] = {}
        self.defect_writer = None

    def write(self, chunk: _Chunk) -> None:
        first_line = {}
        for name, body in chunk.csv.items():
            self.sinks[name].write(body)
            first_line[name] = self.rows[name] + 2  # 1-based, after the header line
            self.rows[name] += chunk.rows[name]
        table = chunk.defects.table(first_line)
        if table is not None:
            if self.defect_writer is None:
                options = pacsv.WriteOptions(include_header=False)
                self.defect_writer = pacsv.CSVWriter(self.sinks["_defects"], table.schema, write_options=options)
            self.defect_writer.write_table(table)
            for defect, n in zip(*np.unique(table.column("defect").to_numpy(zero_copy_only=False), return_counts=True)):
                self.defect_counts[defect] = self.defect_counts.get(defect, 0) + int(n)

    def __enter__(self):
        for name, columns in {**COLUMNS, "_defects": DEFECT_COLUMNS}.items():
            self.sinks[name] = open(self.out_dir / f"{name}.csv", "wb")
            self.sinks[name].write((",".join(columns) + "\n").encode())
        return self

    def __exit__(self, *exc):
        if self.defect_writer is not None:
            self.defect_writer.close()
        for sink in self.sinks.values():
            sink.close()

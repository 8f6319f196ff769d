"""Synthetic e-commerce data: customers, products, orders and their lines, written as CSV.

Faker supplies realistic values once, into small per-locale pools; numpy sampling supplies the volume.
Calling Faker once per row would be about 20x slower. Every random draw comes from a generator seeded by
``(seed, entity, chunk)``, and the chunks are fixed by the spec alone, so the same spec writes
byte-identical files on any machine.

The files are the raw format that ingest reads (README, "Raw file format"): UTF-8 CSV, comma-separated,
a header line with the column names of :data:`COLUMNS` in that order, an empty field for NULL.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from faker import Faker
from pydantic import BaseModel, ConfigDict, Field

CUSTOMERS_PER_SCALE = 10_000
ORDERS_PER_SCALE = 50_000
DEFAULT_AS_OF = date(2026, 11, 24)
CHUNK_ROWS = 250_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "first_name", "last_name", "email", "phone", "city", "state", "country", "signup_date"),
    "products": ("product_id", "product_name", "category", "unit_price", "unit_cost"),
    "orders": ("order_id", "customer_id", "order_ts", "status", "payment_method"),
    "order_items": ("order_id", "line_no", "product_id", "quantity", "unit_price", "discount"),
}
"""Every raw file, in load order (parents before children), with its columns in file order."""

STATUSES = ("placed", "shipped", "delivered", "cancelled", "returned")

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

# Seasonality: a yearly cycle peaking at the end of November, a weekly cycle (Monday first),
# an intra-day cycle (UTC hours), and year-over-year growth.
YEARLY_PEAK_DAY = 334
YEARLY_AMPLITUDE = 0.45
WEEKDAY_WEIGHTS = (0.95, 0.96, 0.97, 1.0, 1.04, 1.10, 1.05)
HOUR_WEIGHTS = (0.6, 0.4, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.4, 1.7, 1.9, 2.1,
                2.3, 2.2, 2.0, 1.9, 1.9, 2.0, 2.3, 2.6, 2.7, 2.4, 1.7, 1.0)
YEARLY_GROWTH = 0.20

# Status mix by order age in days: recent orders are still placed or shipped.
STATUS_BY_AGE = (  # (max age, probabilities in STATUSES order)
    (1, (0.70, 0.22, 0.00, 0.08, 0.00)),
    (6, (0.10, 0.55, 0.28, 0.06, 0.01)),
    (None, (0.00, 0.00, 0.885, 0.055, 0.06)),
)
PROMO_SHARE = 0.08  # share of orders placed under a promotion, rising to PROMO_SHARE_PEAK in the sales weeks
PROMO_SHARE_PEAK = 0.35
PROMO_DISCOUNTS = (0.10, 0.15, 0.20, 0.25)


class GenerateSpec(BaseModel):
    """What to generate. The defaults are those of `ecompipe run`."""

    model_config = ConfigDict(frozen=True)

    scale: float = Field(1.0, gt=0, description="1 = 10,000 customers and 50,000 orders")
    seed: int = 42
    as_of: date = DEFAULT_AS_OF
    history_days: int = Field(730, gt=0, description="days of orders, ending at as_of")
    signup_lead_days: int = Field(730, ge=0, description="signups start this long before the order history")

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


# ---------------------------------------------------------------- customers

def signup_days(spec: GenerateSpec) -> np.ndarray:
    """Signup day of every customer, as days after ``first_signup_day``; sorted, so ids follow signups.

    The first customer signs up on the first day, so every order day has someone to order.
    """
    span = spec.signup_lead_days + spec.history_days
    days = np.sort(_rng(spec, 1).integers(0, span, spec.n_customers))
    days[0] = 0
    return days


def customer_chunks(spec: GenerateSpec) -> Iterator[pa.Table]:
    signups = signup_days(spec)
    pools = _pools(spec.seed)
    locales = list(LOCALES)
    shares = np.array([share for _, share in LOCALES.values()])
    for chunk, start in enumerate(range(0, spec.n_customers, CHUNK_ROWS)):
        rng = _rng(spec, 1, chunk + 1)
        n = min(CHUNK_ROWS, spec.n_customers - start)
        ids = np.arange(start + 1, start + n + 1, dtype=np.int64)
        locale_idx = rng.choice(len(locales), n, p=shares / shares.sum())
        cols = {c: np.empty(n, dtype=object) for c in ("first_name", "last_name", "email", "phone", "city", "state", "country")}
        for li, locale in enumerate(locales):
            rows = np.flatnonzero(locale_idx == li)
            pool = pools[locale]
            pick = {k: rng.integers(0, len(v), rows.size) for k, v in pool.items()}
            first, last = pick["first_name"], pick["last_name"]
            cols["first_name"][rows] = pool["first_name"][first]
            cols["last_name"][rows] = pool["last_name"][last]
            cols["email"][rows] = (pool["first_ascii"][first] + "." + pool["last_ascii"][last]
                                   + ids[rows].astype(str).astype(object) + "@" + pool["domain"][pick["domain"]])
            cols["phone"][rows] = pool["phone"][pick["phone"]]
            cols["city"][rows] = pool["city"][pick["city"]]
            cols["state"][rows] = pool["state"][pick["state"]]
            cols["country"][rows] = LOCALES[locale][0]
        signup = np.datetime64(spec.first_signup_day) + signups[start:start + n].astype("timedelta64[D]")
        yield pa.table({"customer_id": ids, **{c: pa.array(v, pa.string()) for c, v in cols.items()},
                        "signup_date": pa.array(signup.astype("datetime64[D]"), pa.date32())})


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
    growth = (1 + YEARLY_GROWTH) ** (np.arange(spec.history_days) / 365.25)
    yearly = 1 + YEARLY_AMPLITUDE * np.cos(2 * np.pi * (day_of_year - YEARLY_PEAK_DAY) / 365.25)
    return growth * yearly * np.array(WEEKDAY_WEIGHTS)[weekday]


def customer_activity(spec: GenerateSpec) -> np.ndarray:
    """How keen each customer is to order: lognormal, so a minority brings most orders."""
    return _rng(spec, 3).lognormal(0.0, 1.3, spec.n_customers)


def order_chunks(spec: GenerateSpec, products: pa.Table) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Orders in time order with ids to match, and their lines, a chunk of whole days at a time."""
    per_day = _rng(spec, 4).multinomial(spec.n_orders, (w := day_weights(spec)) / w.sum())
    signups = signup_days(spec) - spec.signup_lead_days  # relative to the first order day
    keen = np.cumsum(customer_activity(spec))
    popularity = 1.0 / np.arange(1, products.num_rows + 1) ** 1.1
    by_rank = _rng(spec, 5).permutation(products.num_rows)
    product_p = np.empty(products.num_rows)
    product_p[by_rank] = popularity / popularity.sum()
    list_price = products.column("unit_price").to_numpy()

    next_id = 1
    for chunk, (first_day, stop) in enumerate(_day_chunks(per_day)):
        day = np.repeat(np.arange(first_day, stop), per_day[first_day:stop])
        orders, items = _orders_for_days(spec, _rng(spec, 6, chunk), day, next_id, signups, keen, product_p, list_price)
        next_id += orders.num_rows
        yield orders, items


def _day_chunks(per_day: np.ndarray) -> Iterator[tuple[int, int]]:
    """Runs of whole days holding about CHUNK_ROWS orders each, as (first day, stop day)."""
    start, total = 0, 0
    for day, count in enumerate(per_day):
        total += count
        if total >= CHUNK_ROWS:
            yield start, day + 1
            start, total = day + 1, 0
    if start < len(per_day):
        yield start, len(per_day)


def _orders_for_days(spec, rng, day, first_id, signups, keen, product_p, list_price):
    n = day.size
    seconds = (rng.choice(24, n, p=np.array(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)) * 3600
               + rng.integers(0, 3600, n))
    order = np.lexsort((seconds, day))
    day, seconds = day[order], seconds[order]

    # A customer who signed up by that day, chosen in proportion to their activity.
    eligible = np.searchsorted(signups, day, side="right")
    customer_idx = np.searchsorted(keen, rng.random(n) * keen[eligible - 1], side="right")
    customer_idx = np.minimum(customer_idx, eligible - 1)

    age = spec.history_days - 1 - day
    status = np.empty(n, dtype=np.int8)
    lower = -1
    u = rng.random(n)
    for max_age, probs in STATUS_BY_AGE:
        rows = (age > lower) & (age <= (max_age if max_age is not None else np.inf))
        status[rows] = np.searchsorted(np.cumsum(probs), u[rows], side="right")
        lower = max_age if max_age is not None else lower
    methods = list(PAYMENT_METHODS)
    payment = rng.choice(len(methods), n, p=np.array(list(PAYMENT_METHODS.values())))

    ts = (np.datetime64(spec.first_order_day, "s") + day.astype("timedelta64[D]") + seconds.astype("timedelta64[s]"))
    order_ids = np.arange(first_id, first_id + n, dtype=np.int64)
    orders = pa.table({
        "order_id": order_ids,
        "customer_id": customer_idx.astype(np.int64) + 1,
        "order_ts": pa.array(ts, pa.timestamp("s", tz="UTC")),
        "status": pa.DictionaryArray.from_arrays(status, STATUSES).cast(pa.string()),
        "payment_method": pa.DictionaryArray.from_arrays(payment.astype(np.int8), methods).cast(pa.string()),
    })

    lines = np.minimum(rng.geometric(0.5, n), 8)
    line_order = np.repeat(np.arange(n), lines)
    line_no = np.arange(line_order.size) - np.repeat(np.cumsum(lines) - lines, lines) + 1
    product_idx = rng.choice(len(product_p), line_order.size, p=product_p)
    quantity = np.minimum(rng.geometric(0.72, line_order.size), 6)
    price = list_price[product_idx]
    promo_share = np.where(_in_sales_weeks(spec, day), PROMO_SHARE_PEAK, PROMO_SHARE)
    promo_pct = np.where(rng.random(n) < promo_share, rng.choice(PROMO_DISCOUNTS, n), 0.0)
    discount = np.round(quantity * price * promo_pct[line_order], 2)
    items = pa.table({
        "order_id": order_ids[line_order],
        "line_no": line_no.astype(np.int32),
        "product_id": product_idx.astype(np.int64) + 1,
        "quantity": quantity.astype(np.int32),
        "unit_price": price,
        "discount": discount,
    })
    return orders, items


def _in_sales_weeks(spec: GenerateSpec, day: np.ndarray) -> np.ndarray:
    """Black Friday to Cyber Monday and the days around them: 20 November to 2 December."""
    dates = np.datetime64(spec.first_order_day) + day.astype("timedelta64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(int) + 1
    return (day_of_year >= 324) & (day_of_year <= 336)


# ---------------------------------------------------------------- files

def write_dataset(spec: GenerateSpec, out_dir: Path, progress=None) -> dict[str, int]:
    """Write the four raw files into ``out_dir``; return the rows written per file.

    ``progress`` is an optional callable taking the number of orders just written (for a tqdm bar).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    products = products_table(spec)
    with _CsvFiles(out_dir) as files:
        for chunk in customer_chunks(spec):
            files.write("customers", chunk)
        files.write("products", products)
        for orders, items in order_chunks(spec, products):
            files.write("orders", orders)
            files.write("order_items", items)
            if progress:
                progress(orders.num_rows)
        return files.rows


class _CsvFiles:
    """One streaming CSV writer per raw file, with a plain (unquoted) header line."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.sinks = {}
        self.writers: dict[str, pacsv.CSVWriter] = {}
        self.rows = {name: 0 for name in COLUMNS}

    def write(self, name: str, table: pa.Table) -> None:
        assert tuple(table.column_names) == COLUMNS[name], (name, table.column_names)
        if name not in self.writers:
            options = pacsv.WriteOptions(include_header=False)
            self.writers[name] = pacsv.CSVWriter(self.sinks[name], table.schema, write_options=options)
        self.writers[name].write_table(table)
        self.rows[name] += table.num_rows

    def __enter__(self):
        for name, columns in COLUMNS.items():
            self.sinks[name] = open(self.out_dir / f"{name}.csv", "wb")
            self.sinks[name].write((",".join(columns) + "\n").encode())
        return self

    def __exit__(self, *exc):
        for writer in self.writers.values():
            writer.close()
        for sink in self.sinks.values():
            sink.close()


def orders_per_day(raw_dir: Path) -> pd.DataFrame:
    """Orders per calendar day (UTC) in ``raw_dir/orders.csv``, reading only the timestamp column."""
    ts = pacsv.read_csv(raw_dir / "orders.csv", convert_options=pacsv.ConvertOptions(
        include_columns=["order_ts"], column_types={"order_ts": pa.timestamp("s", tz="UTC")})).column(0)
    days = pd.Series(ts.to_numpy(zero_copy_only=False).astype("datetime64[D]"))
    return days.value_counts().sort_index().rename_axis("day").reset_index(name="orders")

"""The shop model: who the customers are, what the shop sells, and how orders arrive.

Faker supplies realistic values once, into small per-locale pools; numpy sampling supplies the volume.
Calling Faker once per row would be about 20x slower. Every random draw comes from a generator seeded by
``(seed, stream, chunk)`` or from a hash of ``(seed, id)``, so the same spec gives the same shop on any
machine. The model draws clean rows; :mod:`ecompipe.defects` then spoils some of them on purpose.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker import Faker

from ecompipe import seeds
from ecompipe.rawformat import COLUMNS, key_text

if TYPE_CHECKING:
    from ecompipe.generate import GenerateSpec

CUSTOMERS_PER_SCALE = 10_000
ORDERS_PER_SCALE = 50_000
STATUSES = seeds.order_statuses()
REVENUE_STATUSES = seeds.revenue_statuses()

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
EVENT_LIFT = {  # how busy a day of each event of the retail calendar (sql/seeds/retail_events.csv) is
    "black_friday": 2.8, "black_friday_weekend": 2.2, "cyber_monday": 2.5,  # against an ordinary day
    "christmas_rush": 1.45, "january_slump": 0.7,
}

# Status mix by order age in days: recent orders are still placed or shipped.
STATUS_BY_AGE = (  # (max age, probabilities in STATUSES order)
    (1, (0.70, 0.22, 0.00, 0.08, 0.00)),
    (6, (0.10, 0.55, 0.28, 0.06, 0.01)),
    (None, (0.00, 0.00, 0.885, 0.055, 0.06)),
)
PROMO_DISCOUNTS = (0.10, 0.15, 0.20, 0.25)
MAX_LINES = 8
MAX_QUANTITY = 6


def seeded(spec: GenerateSpec, *stream: int) -> np.random.Generator:
    """The random generator of one stream (and chunk) of the spec's seed."""
    return np.random.default_rng([spec.seed, *stream])


def hash_uniform(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
    """A uniform in (0, 1) per id, the same whichever chunk or day the id turns up in (splitmix64)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 1_000_003 + stream) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def activity(spec: GenerateSpec, customer_ids: np.ndarray) -> np.ndarray:
    """How keen each customer is to order: lognormal by id, so a minority brings most orders."""
    u1, u2 = hash_uniform(spec.seed, 1, customer_ids), hash_uniform(spec.seed, 2, customer_ids)
    return np.exp(spec.activity_sigma * np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))


def popularity(spec: GenerateSpec, product_ids: np.ndarray) -> np.ndarray:
    """Zipf-like probability of each product appearing on a line; the ranking is a hash of the id."""
    rank = np.empty(len(product_ids))
    rank[np.argsort(hash_uniform(spec.seed, 3, product_ids), kind="stable")] = np.arange(1, len(product_ids) + 1)
    weights = 1.0 / rank**1.1
    return weights / weights.sum()


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum()).lower()


@functools.cache
def pools(seed: int) -> dict[str, dict[str, np.ndarray]]:
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


def utc_text(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds as ``2025-03-02 14:23:11Z``; 15x faster than writing a time-zone-aware column."""
    return pc.binary_join_element_wise(pa.array(seconds.astype("datetime64[s]")).cast(pa.string()), "Z", "")


# ---------------------------------------------------------------- customers

@functools.lru_cache(maxsize=1)
def signup_days(spec: GenerateSpec) -> np.ndarray:
    """Signup day of every customer, as days after ``first_signup_day``; sorted, so ids follow signups.

    The first customer signs up on the first day, so every order day has someone to order.
    """
    span = spec.signup_lead_days + spec.history_days
    days = np.sort(seeded(spec, 1).integers(0, span, spec.n_customers))
    days[0] = 0
    return days


@dataclass
class CustomersDraft:
    """Customers as drawn, column by column (object arrays, for defects to spoil), before the table is made."""

    ids: np.ndarray
    cols: dict[str, np.ndarray]
    signup: np.ndarray

    def blank(self, column: str, rows: np.ndarray) -> None:
        self.cols[column][rows] = None

    def keys(self, file: str, rows: np.ndarray) -> np.ndarray:
        return self.ids[rows]

    def table(self) -> pa.Table:
        return pa.table({"customer_id": self.ids, **{c: pa.array(v, pa.string()) for c, v in self.cols.items()},
                         "signup_date": pa.array(self.signup.astype("datetime64[D]"), pa.date32())})


def draft_customers(spec: GenerateSpec, rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray) -> CustomersDraft:
    locale_pools = pools(spec.seed)
    locales = list(LOCALES)
    shares = np.array([share for _, share in LOCALES.values()])
    n = ids.size
    locale_idx = rng.choice(len(locales), n, p=shares / shares.sum())
    cols = {c: np.empty(n, dtype=object) for c in COLUMNS["customers"][1:-1]}
    for li, locale in enumerate(locales):
        rows = np.flatnonzero(locale_idx == li)
        pool = locale_pools[locale]
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
    return CustomersDraft(ids, cols, signup)


# ---------------------------------------------------------------- products

def products_table(spec: GenerateSpec) -> pa.Table:
    rng = seeded(spec, 2)
    brands = pools(spec.seed)["en_US"]["brand"]
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
    """Relative order volume of each day of the history: growth x yearly and weekly cycles x retail events."""
    days = np.datetime64(spec.first_order_day) + np.arange(spec.history_days).astype("timedelta64[D]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(int) + 1
    weekday = (days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    growth = (1 + spec.yearly_growth) ** (np.arange(spec.history_days) / 365.25)
    yearly = 1 + spec.seasonal_amplitude * np.cos(2 * np.pi * (day_of_year - YEARLY_PEAK_DAY) / 365.25)
    lift = np.array([EVENT_LIFT.get(event, 1.0) for event in event_days(spec)])
    return growth * yearly * np.array(WEEKDAY_WEIGHTS)[weekday] * lift


def event_days(spec: GenerateSpec) -> list[str]:
    """The retail event of each day of the history, or ''."""
    first = spec.first_order_day
    events = [""] * spec.history_days
    for event, start, end in seeds.retail_events():
        for offset in range(max((start - first).days, 0), min((end - first).days + 1, spec.history_days)):
            events[offset] = event
    return events


@dataclass
class Shop:
    """Who can order and what they can buy: the generated world, or the warehouse's for an increment."""

    customer_ids: np.ndarray  # sorted by signup day
    signup_day: np.ndarray  # days after the spec's first order day (negative: signed up before the history)
    keen: np.ndarray  # cumulative activity, in the same order
    product_ids: np.ndarray
    list_price: np.ndarray
    product_p: np.ndarray
    typical_amount: float  # the median order's amount before discounts, what an outlier is measured against

    @classmethod
    def build(cls, spec, customer_ids, signup_day, product_ids, list_price) -> Shop:
        product_p = popularity(spec, product_ids)
        return cls(customer_ids, signup_day, np.cumsum(activity(spec, customer_ids)), product_ids, list_price,
                   product_p, _typical_amount(spec, list_price, product_p))


def _typical_amount(spec: GenerateSpec, list_price: np.ndarray, product_p: np.ndarray, sample: int = 20_000) -> float:
    """The median amount of orders drawn as :func:`draft_orders` draws them, from a stream of its own."""
    rng = seeded(spec, 7)
    lines = np.minimum(rng.geometric(1 / spec.mean_lines, sample), MAX_LINES)
    line_order = np.repeat(np.arange(sample), lines)
    price = list_price[rng.choice(len(product_p), line_order.size, p=product_p)]
    quantity = np.minimum(rng.geometric(0.72, line_order.size), MAX_QUANTITY)
    return float(np.median(np.bincount(line_order, weights=quantity * price, minlength=sample)))


@functools.lru_cache(maxsize=1)
def shop_of(spec: GenerateSpec) -> Shop:
    products = products_table(spec)
    return Shop.build(spec, np.arange(1, spec.n_customers + 1, dtype=np.int64),
                      signup_days(spec) - spec.signup_lead_days,
                      products.column("product_id").to_numpy(), products.column("unit_price").to_numpy())


@dataclass
class OrdersDraft:
    """Orders and their lines as drawn, array by array, for defects to spoil before the tables are made.

    Order arrays have one entry per order; line arrays one per line, ``line_order`` giving each line's order.
    """

    order_ids: np.ndarray
    day: np.ndarray  # days after the spec's first order day
    seconds: np.ndarray  # seconds into that day, UTC
    epoch: np.ndarray  # the order's timestamp, epoch seconds
    customer_idx: np.ndarray  # into the shop's customers
    status: np.ndarray  # codes into STATUSES
    payment: np.ndarray  # codes into PAYMENT_METHODS
    line_order: np.ndarray
    line_no: np.ndarray
    product_idx: np.ndarray  # into the shop's products
    quantity: np.ndarray
    price: np.ndarray
    promo_pct: np.ndarray  # per order
    missing: dict[str, np.ndarray] = field(default_factory=dict)  # per nullable column: the rows left empty
    quantity_factor: np.ndarray | None = None  # per order: its lines' quantities were multiplied by this
    discount: np.ndarray | None = None  # per line, once priced

    @property
    def n(self) -> int:
        return self.order_ids.size

    def blank(self, column: str, rows: np.ndarray) -> None:
        self.missing[column][rows] = True

    def keys(self, file: str, rows: np.ndarray) -> np.ndarray:
        """The ledger's key of orders, or of lines, at ``rows``."""
        if file == "orders":
            return self.order_ids[rows]
        return key_text(self.order_ids[self.line_order[rows]], self.line_no[rows])

    def price_lines(self) -> None:
        """Each line's discount: its order's promotion, on the quantities as they now are."""
        self.discount = np.round(self.quantity * self.price * self.promo_pct[self.line_order], 2)

    def bearing(self) -> np.ndarray:
        """Orders whose status bears revenue."""
        return np.isin(self.status, [STATUSES.index(s) for s in REVENUE_STATUSES]) & ~self.missing["status"]

    def tables(self, shop: Shop) -> tuple[pa.Table, pa.Table]:
        methods = list(PAYMENT_METHODS)
        orders = pa.table({
            "order_id": self.order_ids,
            "customer_id": shop.customer_ids[self.customer_idx],
            "order_ts": utc_text(self.epoch),
            "status": labels(self.status, STATUSES, self.missing["status"]),
            "payment_method": labels(self.payment, methods, self.missing["payment_method"]),
        })
        items = pa.table({
            "order_id": self.order_ids[self.line_order],
            "line_no": self.line_no.astype(np.int32),
            "product_id": shop.product_ids[self.product_idx],
            "quantity": self.quantity.astype(np.int32),
            "unit_price": self.price,
            "discount": self.discount,
        })
        return orders, items


def draft_orders(spec: GenerateSpec, rng: np.random.Generator, shop: Shop, day: np.ndarray, first_id: int) -> OrdersDraft:
    """Orders on the given days (relative to the first order day) with ids from ``first_id``, and their lines."""
    n = day.size
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
    payment = rng.choice(len(PAYMENT_METHODS), n, p=np.array(list(PAYMENT_METHODS.values())))
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
    return OrdersDraft(order_ids, day, seconds, epoch, customer_idx, status, payment, line_order, line_no,
                       product_idx, quantity, price, promo_pct,
                       missing={c: np.zeros(n, dtype=bool) for c in ("status", "payment_method")},
                       quantity_factor=np.ones(n, dtype=np.int64))


def labels(codes: np.ndarray, names, missing: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8), mask=missing), list(names)).cast(pa.string())

"""The catalogue of defects the generator plants on purpose: one entry per type.

:data:`CATALOGUE` is the one table of defect types. Each entry says what the defect does, its default
rate, the raw files it is planted in, whether ingest must refuse the row (hard) or load it (soft), and
which quality dimension it breaks; an anomaly (an outlier amount) breaks no rule, so it has none. The CLI
offers its names, the generator plants from it (:mod:`ecompipe.planting`), and validation and anomaly
detection are judged against it. Every planted defect goes to the ledger, ``_defects.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("completeness", "validity", "consistency", "uniqueness")


@dataclass(frozen=True)
class DefectType:
    name: str
    rate: float  # the default share of rows given this defect
    files: tuple[str, ...]  # the raw files it is planted in
    hard: bool  # ingest must quarantine the row; a soft defect loads, for validation or anomalies to find
    dimension: str | None  # the quality dimension it breaks; None for an anomaly, which breaks no rule
    what: str
    per: str = "row"  # what its rate is a share of, and what it spoils: rows, or whole days of orders


CATALOGUE: tuple[DefectType, ...] = (
    DefectType("null_required", 0.004, ("customers", "orders"), False, "completeness",
               "customers' first or last name, email or country, orders' status or payment method left empty"),
    DefectType("malformed_email", 0.003, ("customers",), False, "validity",
               "`@` dropped or doubled, or a space in the address"),
    DefectType("duplicate_key", 0.001, ("customers", "orders", "order_items"), True, "uniqueness",
               "a customer, order or line repeated with its key, later in the file"),
    DefectType("orphan_reference", 0.001, ("orders", "order_items"), True, "consistency",
               "an order of an unknown customer, a line of an unknown product"),
    DefectType("nonpositive_value", 0.002, ("order_items",), False, "validity",
               "a line's quantity or unit price of 0, -1 or -2"),
    DefectType("bad_timestamp", 0.002, ("orders",), False, "validity",
               "an order dated two or more days after the as-of date, or two to seven days before its customer's "
               "signup (only where that stays inside the history)"),
    DefectType("outlier_amount", 0.001, ("orders",), False, None,
               "an ordinary order's quantities scaled to 10-50x the median order"),
    DefectType("anomalous_day", 0.011, ("orders",), False, None,
               "a whole day of broken volume: an outage at 5-30% of the day's expected orders, or a surge at 3-5x "
               "(the orders it loses or gains come from other days); about eight days in two years", per="day"),
)
BY_NAME = {d.name: d for d in CATALOGUE}
HARD = tuple(d.name for d in CATALOGUE if d.hard)

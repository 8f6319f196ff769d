"""The catalogue of defects the generator plants on purpose: one entry per type.

Each entry says what the defect does, how often by default, whether ingest must refuse the row (hard) or
load it (soft), and which quality dimension it breaks; an anomaly (an outlier amount) breaks no rule, so
it has no dimension. The generator plants from this table, the CLI offers its names, and validation and
anomaly detection judge themselves against it. Every planted defect is written to the ledger
``_defects.csv`` (``ecompipe.rawformat``).
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("completeness", "validity", "consistency", "uniqueness")


@dataclass(frozen=True)
class DefectType:
    name: str
    rate: float  # the default share of rows given this defect
    hard: bool  # ingest must quarantine the row; a soft defect loads, for validation or anomalies to find
    dimension: str | None  # the quality dimension it breaks; None for an anomaly, which breaks no rule
    what: str


CATALOGUE: tuple[DefectType, ...] = (
    DefectType("null_required", 0.004, False, "completeness",
               "customers' first or last name, email or country, orders' status or payment method left empty"),
    DefectType("malformed_email", 0.003, False, "validity", "`@` dropped or doubled, or a space in the address"),
    DefectType("duplicate_key", 0.001, True, "uniqueness",
               "a customer, order or line repeated with its key, later in the file"),
    DefectType("orphan_reference", 0.001, True, "consistency",
               "an order of an unknown customer, a line of an unknown product"),
    DefectType("nonpositive_value", 0.002, False, "validity", "a line's quantity or unit price of 0, -1 or -2"),
    DefectType("bad_timestamp", 0.002, False, "validity",
               "an order dated after the as-of date, or a few days before its customer's signup"),
    DefectType("outlier_amount", 0.001, False, None, "an ordinary order's quantities scaled to 10-50x the median order"),
)
BY_NAME = {d.name: d for d in CATALOGUE}
HARD = tuple(d.name for d in CATALOGUE if d.hard)

"""ecompipe: a notebook-driven analytics pipeline for e-commerce data on PostgreSQL.

Two facts every part of it shares live here, where importing them costs nothing.
"""

from datetime import date

__version__ = "0.1.0"

STAGES = ("generate", "ingest", "transform", "validate", "anomalies", "report")
"""Stage names in run order; stage N is ``notebooks/NN_<name>.ipynb``."""

DEFAULT_AS_OF = date(2026, 11, 24)
"""The as-of date of generated data unless one is given: fixed, so that runs reproduce."""

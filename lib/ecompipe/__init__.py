"""ecompipe: a notebook-driven analytics pipeline for e-commerce data on PostgreSQL."""

__version__ = "0.1.0"

"""Generation: exact counts, byte-for-byte determinism, key integrity and value domains."""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
import sys
from datetime import date

import pandas as pd
import pytest

from ecompipe import generate
from ecompipe.generate import COLUMNS, GenerateSpec, PAYMENT_METHODS, STATUSES

from conftest import TINY


def read(raw, name):
    return pd.read_csv(raw / f"{name}.csv", keep_default_na=False, na_values=[""])


def test_scale_one_has_the_documented_counts(tmp_path):
    rows = generate.write_dataset(GenerateSpec(scale=1), tmp_path)
    assert (rows["customers"], rows["products"], rows["orders"]) == (10_000, 495, 50_000)
    assert rows["order_items"] > rows["orders"]
    assert sum(1 for _ in open(tmp_path / "orders.csv")) == 50_001  # header + rows


def test_customers_and_orders_scale_linearly_products_do_not():
    spec = GenerateSpec(scale=0.3)
    assert (spec.n_customers, spec.n_orders) == (3_000, 15_000)
    assert generate.products_table(spec).num_rows == 495


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, tiny_raw):
    again, other = tmp_path / "again", tmp_path / "other"
    generate.write_dataset(GenerateSpec(scale=TINY), again)
    generate.write_dataset(GenerateSpec(scale=TINY, seed=7), other)
    for name in COLUMNS:
        assert filecmp.cmp(tiny_raw / f"{name}.csv", again / f"{name}.csv", shallow=False), name
    assert not filecmp.cmp(tiny_raw / "orders.csv", other / "orders.csv", shallow=False)


def test_chunked_generation_matches_its_own_chunks(tmp_path, monkeypatch):
    """Chunk boundaries are fixed by the spec, so orders stay sorted and ids contiguous across chunks."""
    monkeypatch.setattr(generate, "CHUNK_ROWS", 300)
    generate.write_dataset(GenerateSpec(scale=TINY), tmp_path)
    orders = read(tmp_path, "orders")
    assert orders["order_id"].tolist() == list(range(1, len(orders) + 1))
    assert orders["order_ts"].is_monotonic_increasing
    customers = read(tmp_path, "customers")
    assert customers["customer_id"].tolist() == list(range(1, len(customers) + 1))


def test_files_have_the_documented_header(tiny_raw):
    for name, columns in COLUMNS.items():
        assert (tiny_raw / f"{name}.csv").read_text().splitlines()[0] == ",".join(columns)


def test_keys_are_unique_and_references_resolve(tiny_raw):
    customers, products = read(tiny_raw, "customers"), read(tiny_raw, "products")
    orders, items = read(tiny_raw, "orders"), read(tiny_raw, "order_items")
    assert customers["customer_id"].is_unique and products["product_id"].is_unique
    assert orders["order_id"].is_unique
    assert not items.duplicated(["order_id", "line_no"]).any()
    assert orders["customer_id"].isin(customers["customer_id"]).all()
    assert items["product_id"].isin(products["product_id"]).all()
    assert set(items["order_id"]) == set(orders["order_id"])  # every order has at least one line
    first_line = items.groupby("order_id")["line_no"].agg(["min", "max", "count"])
    assert (first_line["min"] == 1).all() and (first_line["max"] == first_line["count"]).all()


def test_values_fall_in_their_domains(tiny_raw):
    spec = GenerateSpec(scale=TINY)
    customers, products = read(tiny_raw, "customers"), read(tiny_raw, "products")
    orders, items = read(tiny_raw, "orders"), read(tiny_raw, "order_items")

    assert set(orders["status"]) <= set(STATUSES)
    assert set(orders["payment_method"]) <= set(PAYMENT_METHODS)
    assert customers["email"].map(lambda e: bool(re.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+", e))).all()
    assert customers[["first_name", "last_name", "city", "state", "country", "phone"]].notna().all().all()
    assert (products["unit_price"] > 0).all() and (products["unit_cost"] > 0).all()
    assert (products["unit_cost"] < products["unit_price"]).all()
    assert products["category"].nunique() == 11
    assert (items["quantity"] >= 1).all()
    assert ((items["discount"] >= 0) & (items["discount"] <= items["quantity"] * items["unit_price"])).all()
    list_price = items["product_id"].map(products.set_index("product_id")["unit_price"])
    assert (items["unit_price"] == list_price).all()

    ts = pd.to_datetime(orders["order_ts"], utc=True)
    assert ts.min().date() >= spec.first_order_day and ts.max().date() <= spec.as_of
    signup = pd.to_datetime(orders["customer_id"].map(customers.set_index("customer_id")["signup_date"]))
    assert (ts.dt.tz_localize(None).dt.normalize() >= signup).all(), "an order predates its customer's signup"


def test_the_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        GenerateSpec(scale=0)
    assert GenerateSpec(as_of="2025-01-31").as_of == date(2025, 1, 31)


def test_files_are_identical_across_processes_with_different_hash_seeds(tmp_path):
    """Faker providers that draw from a set would make names depend on PYTHONHASHSEED."""
    code = ("import sys; from pathlib import Path; from ecompipe import generate as g; "
            "g.write_dataset(g.GenerateSpec(scale=0.01), Path(sys.argv[1]))")
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], check=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    for name in COLUMNS:
        assert filecmp.cmp(tmp_path / "1" / f"{name}.csv", tmp_path / "2" / f"{name}.csv", shallow=False), name

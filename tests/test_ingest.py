"""Ingest: bulk loads that are idempotent, enforce keys, and roll back whole on any failure."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from ecompipe import ingest
from ecompipe.generate import COLUMNS

FINGERPRINT = {  # an order-independent digest of each table's full contents
    t: f"select count(*), md5(string_agg(t::text, '|' order by t::text)) from {t} t" for t in COLUMNS
}


def snapshot(engine) -> dict:
    with engine.connect() as conn:
        return {t: tuple(conn.execute(sa.text(q)).one()) for t, q in FINGERPRINT.items()}


def copy_raw(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_load_fills_the_core_tables_with_every_row(engine, tiny_raw):
    loaded = ingest.load(tiny_raw, engine)
    for table in COLUMNS:
        lines = sum(1 for _ in open(tiny_raw / f"{table}.csv")) - 1
        assert loaded[table] == lines
    assert {t: n for t, (n, _) in snapshot(engine).items()} == loaded


def test_loading_the_same_files_twice_gives_the_same_tables(engine, tiny_raw):
    ingest.load(tiny_raw, engine)
    first = snapshot(engine)
    ingest.load(tiny_raw, engine)
    assert snapshot(engine) == first


def test_keys_are_enforced_after_a_load(engine, tiny_raw):
    ingest.load(tiny_raw, engine)
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        with engine.begin() as conn:
            conn.execute(sa.text("insert into orders values (999999, 424242, now(), 'placed', 'paypal')"))
    with pytest.raises(sa.exc.IntegrityError, match="duplicate key"):
        with engine.begin() as conn:
            conn.execute(sa.text("insert into customers (customer_id) values (1)"))


def test_a_bad_value_mid_file_rolls_back_everything(engine, tiny_raw, tmp_path):
    ingest.load(tiny_raw, engine)
    before = snapshot(engine)
    bad = copy_raw(tiny_raw, tmp_path / "bad")
    lines = (bad / "order_items.csv").read_text().splitlines()
    middle = len(lines) // 2
    fields = lines[middle].split(",")
    fields[3] = "three"  # quantity
    lines[middle] = ",".join(fields)
    (bad / "order_items.csv").write_text("\n".join(lines) + "\n")

    with pytest.raises(ingest.IngestError) as caught:
        ingest.load(bad, engine)
    message = str(caught.value)
    assert "order_items.csv" in message and f"line {middle + 1}" in message and "quantity" in message
    assert snapshot(engine) == before


def test_an_orphan_reference_fails_the_load_and_names_the_file(engine, tiny_raw, tmp_path):
    ingest.load(tiny_raw, engine)
    before = snapshot(engine)
    bad = copy_raw(tiny_raw, tmp_path / "orphan")
    with open(bad / "orders.csv", "a") as f:
        f.write("99999999,77777777,2026-01-01 10:00:00Z,placed,paypal\n")
    with pytest.raises(ingest.IngestError, match=r"orders\.csv.*(77777777|foreign key)"):
        ingest.load(bad, engine)
    assert snapshot(engine) == before


def test_a_renamed_column_is_refused_with_file_and_column(engine, tiny_raw, tmp_path):
    bad = copy_raw(tiny_raw, tmp_path / "renamed")
    text = (bad / "customers.csv").read_text()
    (bad / "customers.csv").write_text(text.replace("signup_date", "signed_up", 1))
    with pytest.raises(ingest.IngestError, match=r"customers\.csv.*signed_up"):
        ingest.load(bad, engine)


def test_a_missing_file_is_named(engine, tiny_raw, tmp_path):
    bad = copy_raw(tiny_raw, tmp_path / "missing")
    (bad / "products.csv").unlink()
    with pytest.raises(ingest.IngestError, match=r"products\.csv"):
        ingest.load(bad, engine)

"""Daily increments: a day's new signups and orders, generated against the warehouse and upserted."""

from __future__ import annotations

import filecmp
import json
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import generate, ingest, planting, rawformat, transform, warehouse
from ecompipe.generate import GenerateSpec
from ecompipe.rawformat import COLUMNS

from conftest import ecompipe

BASE = GenerateSpec(scale=0.05)
DAY = BASE.as_of + timedelta(days=1)


def increment(day: date, out, engine):
    return generate.write_dataset(GenerateSpec(scale=BASE.scale, as_of=day, increment=True), out, engine=engine)


def table(engine, name) -> pd.DataFrame:
    key = ", ".join(rawformat.KEYS[name])
    return pd.read_sql(f"select * from {name} order by {key}", engine)


@pytest.fixture(scope="module")
def base(engine, tmp_path_factory):
    raw = tmp_path_factory.mktemp("base")
    generate.write_dataset(BASE, raw)
    ingest.load(raw, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("truncate increment_ids"))
    return {name: table(engine, name) for name in COLUMNS}


def test_an_increment_holds_only_that_days_new_rows_with_ids_that_continue(engine, base, tmp_path):
    result = increment(DAY, tmp_path, engine)
    customers, orders = pd.read_csv(tmp_path / "customers.csv"), pd.read_csv(tmp_path / "orders.csv")
    assert result.rows["products"] == 0 and len(orders) > 0
    assert (customers["signup_date"] == DAY.isoformat()).all()
    real = orders[orders["order_id"] < planting.ORPHAN_ID_OFFSET]
    assert real["order_id"].min() == base["orders"]["order_id"].max() + 1
    assert customers["customer_id"].min() == base["customers"]["customer_id"].max() + 1
    ts = pd.to_datetime(real["order_ts"], utc=True).dt.date
    assert (ts == DAY).mean() > 0.9  # the rest are planted timestamp defects


def test_generating_the_same_day_twice_gives_identical_rows(engine, base, tmp_path):
    increment(DAY, tmp_path / "a", engine)
    ingest.load(tmp_path / "a", engine, mode="upsert")  # even once it has been loaded
    increment(DAY, tmp_path / "b", engine)
    for name in [*COLUMNS, "_defects"]:
        assert filecmp.cmp(tmp_path / "a" / f"{name}.csv", tmp_path / "b" / f"{name}.csv", shallow=False), name


def test_days_never_collide(engine, base, tmp_path):
    ids = {}
    for offset in (2, 3):
        day = BASE.as_of + timedelta(days=offset)
        increment(day, tmp_path / str(offset), engine)
        ids[offset] = set(pd.read_csv(tmp_path / str(offset) / "orders.csv")["order_id"])
        ingest.load(tmp_path / str(offset), engine, mode="upsert")
    assert not ids[2] & ids[3]
    assert not ids[2] & set(base["orders"]["order_id"])


def test_an_upserted_increment_touches_no_other_day_and_reloading_changes_nothing(engine, base, tmp_path):
    day = BASE.as_of + timedelta(days=5)
    increment(day, tmp_path, engine)
    before = {name: table(engine, name) for name in COLUMNS}
    reports = ingest.load(tmp_path, engine, mode="upsert")
    assert all(r.reconciles for r in reports)
    after = {name: table(engine, name) for name in COLUMNS}
    for name in COLUMNS:
        key = list(rawformat.KEYS[name])
        kept = after[name].merge(before[name][key], on=key)
        pd.testing.assert_frame_equal(kept.reset_index(drop=True), before[name].reset_index(drop=True))
    assert len(after["orders"]) > len(before["orders"])
    ingest.load(tmp_path, engine, mode="upsert")
    for name in COLUMNS:
        pd.testing.assert_frame_equal(table(engine, name), after[name])


def test_an_increment_updates_a_row_it_changes(engine, base, tmp_path):
    day = BASE.as_of + timedelta(days=7)
    increment(day, tmp_path, engine)
    ingest.load(tmp_path, engine, mode="upsert")
    orders = pd.read_csv(tmp_path / "orders.csv", dtype=str, keep_default_na=False)
    orders.loc[0, "status"] = "shipped"
    orders.to_csv(tmp_path / "orders.csv", index=False)
    ingest.load(tmp_path, engine, mode="upsert")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select status from orders where order_id = :id"),
                           {"id": int(orders.loc[0, "order_id"])}) == "shipped"


def test_an_increment_before_any_signup_is_refused(engine, base, tmp_path):
    spec = GenerateSpec(scale=BASE.scale, as_of=date(1990, 1, 1), increment=True)
    with pytest.raises(ValueError, match="signed up before it"):
        generate.write_dataset(spec, tmp_path, engine=engine)


def test_the_marts_rebuilt_after_an_increment_count_its_day(engine, base, tmp_path):
    day = BASE.as_of + timedelta(days=9)
    increment(day, tmp_path, engine)
    ingest.load(tmp_path, engine, mode="upsert", as_of=day)  # the data is now as of that day
    transform.build(engine)
    with engine.connect() as conn:
        expected = conn.execute(sa.text("""
            select count(*), count(distinct customer_id) from orders o join order_statuses s using (status)
            where s.is_revenue_bearing and o.order_ts::date = :day"""), {"day": day}).one()
        shown = conn.execute(sa.text(
            "select total_orders, unique_customers from daily_sales_summary where sale_date = :day"), {"day": day}).one()
        customers = conn.scalar(sa.text("select count(*) from customers"))
        summarised = conn.scalar(sa.text("select count(*) from customer_summary"))
    assert tuple(shown) == tuple(expected) and expected[0] > 0
    assert summarised == customers


# ---------------------------------------------------------------- the warehouse knows what it was generated with

def test_increments_take_the_scale_and_seed_of_the_last_full_load_and_refuse_others(isolated_settings, engine):
    full = ecompipe("run", "--scale", "0.02", "--seed", "42", "--stages", "generate,ingest", "--run-id", "inc-full")
    assert full.returncode == 0, full.stderr
    assert "core rows:  customers 200" in full.stdout
    assert "mart rows" not in full.stdout and "the marts were not rebuilt by this run" in full.stdout
    assert warehouse.last_full_load(engine)[3:] == (Decimal("0.02"), 42)

    wrong = ecompipe("run", "--increment", "--as-of", "2026-11-25", "--scale", "0.5", "--stages", "generate,ingest",
                     "--run-id", "inc-wrong")
    assert wrong.returncode == 1
    assert "an increment must use the same: --scale 0.02 --seed 42" in wrong.stderr
    assert not isolated_settings.run_dir("inc-wrong").exists(), "something was generated before the refusal"

    right = ecompipe("run", "--increment", "--as-of", "2026-11-25", "--stages", "generate,ingest", "--run-id", "inc-1")
    assert right.returncode == 0, right.stderr
    manifest = json.loads((isolated_settings.run_dir("inc-1") / "manifest.json").read_text())
    assert (manifest["parameters"]["scale"], manifest["parameters"]["seed"]) == (0.02, 42)
    assert manifest["ingest"]["as_of"] == "2026-11-25" and manifest["ingest"]["mode"] == "upsert"
    new = pd.read_csv(isolated_settings.run_dir("inc-1") / "raw" / "customers.csv")
    assert new.empty or new["customer_id"].min() == 201

    # A full load starts the history again: the day's ids are reserved afresh, right after the new customers.
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from increment_ids")) == 1
    ingest.load(isolated_settings.run_dir("inc-full") / "raw", engine, scale=0.02, seed=42)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from increment_ids")) == 0
    spec = GenerateSpec(scale=0.02, as_of=date(2026, 11, 26), increment=True)
    generate.write_dataset(spec, isolated_settings.outputs_dir / "inc-again", engine=engine)
    with engine.connect() as conn:
        first_customer, first_order = conn.execute(sa.text(
            "select first_customer_id, first_order_id from increment_ids")).one()
    assert (first_customer, first_order) == (201, 1001)

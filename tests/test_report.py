"""The report's figures that no mart holds as such, against a recomputation from the orders in pandas."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import ingest, report, transform


@pytest.fixture(scope="module")
def built(engine, tiny_raw) -> None:
    ingest.load(tiny_raw, engine)
    transform.build(engine)


def test_the_kpis_of_the_last_28_days_and_the_28_before_match_the_orders(engine, built):
    with engine.connect() as conn:
        orders = pd.read_sql(sa.text("select customer_id, order_date, revenue from order_totals "
                                     "where is_revenue_bearing and order_date is not null"), conn)
        as_of = conn.scalar(sa.text("select as_of_date from data_as_of"))
    periods = [(as_of - timedelta(days=27), as_of), (as_of - timedelta(days=55), as_of - timedelta(days=28))]
    expected, repeat_rates = [], []
    for first, last in periods:
        inside = orders[(orders["order_date"] >= first) & (orders["order_date"] <= last)]
        buyers = inside["customer_id"].unique()
        orders_by_the_end = orders[orders["order_date"] <= last].groupby("customer_id").size()
        revenue = float(inside["revenue"].sum())
        repeat_rates.append(100 * (orders_by_the_end[buyers] >= 2).mean())
        expected.append([f"{revenue:,.2f}", f"{len(inside):,}", f"{revenue / len(inside):,.2f}", f"{len(buyers):,}",
                         f"{repeat_rates[-1]:,.2f}"])
    assert all(0 < rate < 100 for rate in repeat_rates), "the data has no first-time buyer, or no repeat buyer"

    table = report.kpis(engine)
    assert list(table.columns[:2]) == [f"{first} to {last}" for first, last in periods]
    assert list(table.index) == ["revenue", "orders", "average order value", "customers", "repeat rate (%)"]
    assert [table.iloc[:, 0].tolist(), table.iloc[:, 1].tolist()] == expected

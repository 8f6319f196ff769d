"""Transform, checked against an independent recomputation in pandas from the core tables alone.

Each summary table built by ``transform.build`` is recomputed here from customers, products, orders and
order_items (never from another summary table), following the written contract, and compared row for
row. Money is recomputed in integer cents so that ties (which decide ntile and rank) are exact.
"""

from __future__ import annotations

import csv
import shutil
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import DEFAULT_AS_OF, ingest, transform

REVENUE_STATUSES = ("placed", "shipped", "delivered")
SUMMARIES = ("order_totals", "customer_summary", "product_summary", "daily_sales_summary", "monthly_sales_summary")
CORE = ("customers", "products", "orders", "order_items")
MONEY_TOL = 1e-6
RATIO_TOL = 0.0  # ratios are rounded to cents on both sides, exactly as PostgreSQL rounds
SHOW_AT_MOST = 15  # differing rows listed per column in a failure message


# ---------------------------------------------------------------- the built warehouse, read once

@pytest.fixture(scope="module")
def built(engine, tiny_raw) -> dict:
    return load_build_read(engine, tiny_raw)


def load_build_read(engine, raw_dir) -> dict:
    """Load ``raw_dir`` as of the generator's default as-of date, build the transform, and read back core and
    summary tables (a snapshot)."""
    ingest.load(raw_dir, engine, as_of=DEFAULT_AS_OF)
    transform.build(engine)
    with engine.connect() as conn:
        tz = conn.execute(sa.text("show timezone")).scalar_one()
        as_of = conn.execute(sa.text("select as_of_date from data_as_of")).scalar_one()
        column_types = {
            (t, c): d for t, c, d in conn.execute(sa.text(
                "select table_name, column_name, data_type from information_schema.columns "
                "where table_schema = 'public' and table_name = any(:t)"), {"t": list(SUMMARIES)})
        }
    frames = {t: pd.read_sql(f"select * from {t}", engine) for t in (*CORE, *SUMMARIES)}
    return {"tz": tz, "as_of": as_of, "column_types": column_types, **frames}


@pytest.fixture(scope="module")
def expected(built) -> dict:
    return recompute(built)


# ---------------------------------------------------------------- helpers: exact money, PostgreSQL's functions

def cents(values: pd.Series) -> pd.Series:
    """numeric(12, 2) values as exact integer cents (nullable)."""
    def one(v):
        if v is None or pd.isna(v):
            return pd.NA
        c = Decimal(str(v)) * 100
        assert c == c.to_integral_value(), f"{v!r} has more than two decimals"
        return int(c)
    return pd.Series([one(v) for v in values], index=values.index, dtype="Int64")


def pg_round(numerator, denominator, places: int = 2):
    """round(numerator / denominator, places) as PostgreSQL numeric does it (half away from zero)."""
    if denominator is None or pd.isna(denominator) or denominator == 0 or pd.isna(numerator):
        return None
    q = Decimal(int(numerator)) / Decimal(int(denominator))
    return float(q.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def ntile(n_rows: int, buckets: int) -> list[int]:
    """SQL ntile(buckets) for rows 0..n_rows-1 already in order: the first n % buckets buckets get one extra row."""
    size, extra = divmod(n_rows, buckets)
    big = extra * (size + 1)  # rows held by the larger buckets
    return [i // (size + 1) + 1 if i < big else extra + (i - big) // size + 1 for i in range(n_rows)]


def ntile_by(frame: pd.DataFrame, order: list[str]) -> pd.Series:
    """ntile(5) over ``frame`` ordered ascending by ``order``; nulls sort first (only dates can be null)."""
    ordered = frame.sort_values(order, ascending=True, na_position="first", kind="mergesort")
    return pd.Series(ntile(len(ordered), 5), index=ordered.index, dtype="Int64").reindex(frame.index)


def segment(r, f) -> str:
    if pd.isna(r) or pd.isna(f):
        return "no orders"
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 4 and f == 1:
        return "new customers"
    if r >= 4 and f == 2:
        return "promising"
    if r == 3:
        return "needs attention"
    if r == 1 and f >= 4:
        return "cannot lose them"
    if f >= 3:
        return "at risk"
    if r == 1 and f == 1:
        return "lost"
    return "hibernating"


def money(c: pd.Series) -> pd.Series:
    return c.astype("Float64") / 100


# ---------------------------------------------------------------- the recomputation

def recompute(db: dict) -> dict:
    customers, products, orders, items = (db[t].copy() for t in CORE)

    # Lines: revenue and cost in cents; a null quantity or price makes the line's revenue null.
    items["quantity"] = pd.to_numeric(items["quantity"]).astype("Int64")
    items["rev_c"] = items["quantity"] * cents(items["unit_price"]) - cents(items["discount"]).fillna(0)
    unit_cost = pd.Series(cents(products["unit_cost"]).to_numpy(), index=products["product_id"])

    # Orders: revenue (0 without lines), date in the session's time zone, revenue-bearing or not. The as-of
    # rule: an order dated after the data's as-of date has no date.
    order_rev = items.groupby("order_id")["rev_c"].sum()  # skips nulls; all-null sums to 0
    orders["rev_c"] = orders["order_id"].map(order_rev).fillna(0).astype("Int64")
    ts = pd.to_datetime(orders["order_ts"], utc=True).dt.tz_convert(db["tz"])
    as_of = pd.Timestamp(db["as_of"])
    day = ts.dt.tz_localize(None).dt.normalize()
    orders["after_as_of"] = day > as_of
    orders["odate"] = day.where(~orders["after_as_of"])
    orders["revenue_bearing"] = orders["status"].isin(REVENUE_STATUSES)
    units = items.groupby("order_id")["quantity"].sum()  # skips nulls
    ot = orders[["order_id", "customer_id", "status"]].assign(
        order_date=orders["odate"], is_after_as_of=orders["after_as_of"], is_revenue_bearing=orders["revenue_bearing"],
        units=orders["order_id"].map(units).fillna(0).astype("Int64"), revenue=money(orders["rev_c"]))
    rb = orders[orders["revenue_bearing"]]
    rb_items = items.merge(rb[["order_id", "customer_id", "odate"]], on="order_id", how="inner")

    # ---- customer_summary
    cs = customers[["customer_id"]].copy()
    by_cust = rb.groupby("customer_id").agg(
        total_orders=("order_id", "size"), spent_c=("rev_c", "sum"),
        first_order_date=("odate", "min"), last_order_date=("odate", "max"))
    cs = cs.merge(by_cust, left_on="customer_id", right_index=True, how="left")
    cs["total_orders"] = cs["total_orders"].fillna(0).astype("Int64")
    cs["spent_c"] = cs["spent_c"].fillna(0).astype("Int64")
    cs["total_spent"] = money(cs["spent_c"])
    cs["avg_order_value"] = [pg_round(s, 100 * n) for s, n in zip(cs["spent_c"], cs["total_orders"])]
    cs["days_since_last_order"] = (as_of - cs["last_order_date"]).dt.days.astype("Int64")
    for status, column in (("cancelled", "cancelled_orders"), ("returned", "returned_orders")):
        counts = orders[orders["status"] == status].groupby("customer_id").size()
        cs[column] = cs["customer_id"].map(counts).fillna(0).astype("Int64")
    buyers = cs[cs["total_orders"] > 0]
    orders_for = {
        "recency_score": ["last_order_date", "total_orders", "spent_c", "customer_id"],
        "frequency_score": ["total_orders", "spent_c", "last_order_date", "customer_id"],
        "monetary_score": ["spent_c", "total_orders", "last_order_date", "customer_id"],
    }
    for column, order in orders_for.items():
        cs[column] = ntile_by(buyers, order).reindex(cs.index).astype("Int64")
    cs["rfm_segment"] = [segment(r, f) for r, f in zip(cs["recency_score"], cs["frequency_score"])]

    # ---- product_summary
    by_prod = rb_items.groupby("product_id").agg(
        units_sold=("quantity", "sum"), orders_count=("order_id", "nunique"),
        rev_c=("rev_c", "sum"))
    ps = products[["product_id", "product_name", "category"]].merge(
        by_prod, left_on="product_id", right_index=True, how="left")
    for column in ("units_sold", "orders_count", "rev_c"):
        ps[column] = ps[column].fillna(0).astype("Int64")
    # cost: units sold x unit_cost; unknown (null), with the margin, when the product has no unit_cost
    ps["cost_c"] = ps["units_sold"] * ps["product_id"].map(unit_cost).astype("Int64")
    ps["margin_c"] = ps["rev_c"] - ps["cost_c"]
    ps["total_revenue"] = money(ps["rev_c"])
    ps["total_cost"] = money(ps["cost_c"])
    ps["total_margin"] = money(ps["margin_c"])
    ps["margin_pct"] = [pg_round(100 * m, r) for m, r in zip(ps["margin_c"], ps["rev_c"])]
    ps["revenue_rank"] = ps["rev_c"].astype("int64").rank(method="min", ascending=False).astype("Int64")

    # ---- daily_sales_summary
    dated = orders[orders["odate"].notna()]
    days = pd.date_range(dated["odate"].min(), dated["odate"].max(), freq="D")
    rb_dated = rb[rb["odate"].notna()]
    by_day = rb_dated.groupby("odate").agg(
        total_orders=("order_id", "size"), rev_c=("rev_c", "sum"), unique_customers=("customer_id", "nunique"))
    units_by_day = rb_items[rb_items["odate"].notna()].groupby("odate")["quantity"].sum()
    ds = pd.DataFrame({"sale_date": days})
    ds = ds.merge(by_day, left_on="sale_date", right_index=True, how="left")
    ds["units_sold"] = ds["sale_date"].map(units_by_day)
    for column in ("total_orders", "rev_c", "unique_customers", "units_sold"):
        ds[column] = ds[column].fillna(0).astype("Int64")
    ds["total_revenue"] = money(ds["rev_c"])
    ds["avg_order_value"] = [pg_round(r, 100 * n) for r, n in zip(ds["rev_c"], ds["total_orders"])]

    # ---- monthly_sales_summary
    month_of = lambda d: d.dt.to_period("M").dt.to_timestamp()  # noqa: E731
    months = pd.date_range(month_of(dated["odate"]).min(), month_of(dated["odate"]).max(), freq="MS")
    rb_m = rb_dated.assign(month=month_of(rb_dated["odate"]))
    by_month = rb_m.groupby("month").agg(
        total_orders=("order_id", "size"), rev_c=("rev_c", "sum"), unique_customers=("customer_id", "nunique"))
    first_dates = cs.loc[cs["first_order_date"].notna(), "first_order_date"]
    new_by_month = month_of(first_dates).value_counts()
    ms = pd.DataFrame({"month": months})
    ms = ms.merge(by_month, left_on="month", right_index=True, how="left")
    ms["new_customers"] = ms["month"].map(new_by_month)
    for column in ("total_orders", "rev_c", "unique_customers", "new_customers"):
        ms[column] = ms[column].fillna(0).astype("Int64")
    ms["total_revenue"] = money(ms["rev_c"])
    ms["avg_order_value"] = [pg_round(r, 100 * n) for r, n in zip(ms["rev_c"], ms["total_orders"])]
    previous = ms["rev_c"].shift(1)
    ms["revenue_growth_pct"] = [
        None if pd.isna(p) else pg_round(100 * (r - p), p) for r, p in zip(ms["rev_c"], previous)]

    return {"order_totals": ot, "customer_summary": cs, "product_summary": ps, "daily_sales_summary": ds,
            "monthly_sales_summary": ms, "orders": orders, "as_of": as_of}


# ---------------------------------------------------------------- row-for-row comparison

def as_float(values: pd.Series) -> pd.Series:
    return pd.Series([float("nan") if v is None or pd.isna(v) else float(v) for v in values],
                     index=values.index, dtype="float64")


def as_date(values: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.Series(list(values), index=values.index, dtype="object")).astype("datetime64[us]")


def as_text(values: pd.Series) -> pd.Series:
    return pd.Series([None if v is None or pd.isna(v) else str(v) for v in values], index=values.index,
                     dtype="object")


def differing(kind: str, a: pd.Series, e: pd.Series) -> pd.Series:
    """Mask of rows where actual ``a`` and expected ``e`` disagree; a null matches only a null."""
    if kind in ("int", "money", "ratio"):
        a, e = as_float(a), as_float(e)
        tol = {"int": 0.0, "money": MONEY_TOL, "ratio": RATIO_TOL}[kind]
        close = (a - e).abs() <= tol
    elif kind == "date":
        a, e = as_date(a), as_date(e)
        close = a == e
    else:
        a, e = as_text(a), as_text(e)
        close = pd.Series([x == y for x, y in zip(a, e)], index=a.index)
    both_null = a.isna() & e.isna()
    return ~(close.fillna(False).astype(bool) | both_null)


def assert_matches(actual: pd.DataFrame, expected: pd.DataFrame, key: str, columns: dict[str, str]) -> None:
    """Every expected row, and no other, with every contract column equal (by its kind)."""
    missing_columns = sorted((set(columns) | {key}) - set(actual.columns))
    assert not missing_columns, f"columns missing from the built table: {missing_columns}"
    a_key, e_key = actual[key], expected[key]
    if columns.get(key) == "date" or key in ("sale_date", "month"):
        a_key, e_key = as_date(a_key), as_date(e_key)
    else:
        a_key, e_key = as_float(a_key), as_float(e_key)
    duplicated = a_key[a_key.duplicated()].tolist()
    assert not duplicated, f"{key} values repeated in the built table: {duplicated[:SHOW_AT_MOST]}"
    extra, lacking = sorted(set(a_key) - set(e_key)), sorted(set(e_key) - set(a_key))
    assert not extra and not lacking, (
        f"{key}: {len(extra)} rows not expected {extra[:SHOW_AT_MOST]}; "
        f"{len(lacking)} expected rows missing {lacking[:SHOW_AT_MOST]}")
    a = actual.assign(_k=a_key.to_numpy()).set_index("_k")
    e = expected.assign(_k=e_key.to_numpy()).set_index("_k").reindex(a.index)
    e, a = e.sort_index(), a.sort_index()
    problems = []
    for column, kind in columns.items():
        mask = differing(kind, a[column], e[column])
        if mask.any():
            rows = pd.DataFrame({"actual": a.loc[mask, column], "expected": e.loc[mask, column]})
            problems.append(f"{column} ({kind}): {int(mask.sum())} of {len(mask)} rows differ; first:\n"
                            f"{rows.head(SHOW_AT_MOST).to_string()}")
    assert not problems, "\n\n".join(problems)


def assert_date_typed(built: dict, table: str, *columns: str) -> None:
    types = {c: built["column_types"].get((table, c)) for c in columns}
    assert all(t == "date" for t in types.values()), f"{table}: these must be of type date: {types}"


# ---------------------------------------------------------------- one test per table

CONTRACT = {  # table: (key, {column: kind})
    "order_totals": ("order_id", {
        "customer_id": "int", "status": "text", "order_date": "date", "is_after_as_of": "text",
        "is_revenue_bearing": "text",
        "units": "int", "revenue": "money",
    }),
    "customer_summary": ("customer_id", {
        "total_orders": "int", "total_spent": "money", "avg_order_value": "ratio",
        "first_order_date": "date", "last_order_date": "date", "days_since_last_order": "int",
        "cancelled_orders": "int", "returned_orders": "int",
        "recency_score": "int", "frequency_score": "int", "monetary_score": "int", "rfm_segment": "text",
    }),
    "product_summary": ("product_id", {
        "product_name": "text", "category": "text", "units_sold": "int", "orders_count": "int",
        "total_revenue": "money", "total_cost": "money", "total_margin": "money", "margin_pct": "ratio",
        "revenue_rank": "int",
    }),
    "daily_sales_summary": ("sale_date", {
        "total_orders": "int", "total_revenue": "money", "unique_customers": "int", "units_sold": "int",
        "avg_order_value": "ratio",
    }),
    "monthly_sales_summary": ("month", {
        "total_orders": "int", "total_revenue": "money", "unique_customers": "int", "avg_order_value": "ratio",
        "new_customers": "int", "revenue_growth_pct": "ratio",
    }),
}
DATE_COLUMNS = {
    "order_totals": ("order_date",),
    "customer_summary": ("first_order_date", "last_order_date"),
    "product_summary": (),
    "daily_sales_summary": ("sale_date",),
    "monthly_sales_summary": ("month",),
}


def assert_table_matches(db: dict, exp: dict, table: str) -> None:
    assert_date_typed(db, table, *DATE_COLUMNS[table])
    key, columns = CONTRACT[table]
    assert_matches(db[table], exp[table], key, columns)


def test_order_totals_matches_the_contract(built, expected):
    assert len(built["order_totals"]) == len(built["orders"])
    assert_table_matches(built, expected, "order_totals")


def test_customer_summary_matches_the_contract(built, expected):
    assert len(built["customer_summary"]) == len(built["customers"])
    assert_table_matches(built, expected, "customer_summary")


def test_product_summary_matches_the_contract(built, expected):
    assert len(built["product_summary"]) == len(built["products"])
    pairs = built["order_items"].groupby(["order_id", "product_id"]).size()
    assert (pairs > 1).any(), "no order repeats a product: orders_count would not be tested against lines"
    assert_table_matches(built, expected, "product_summary")


def test_daily_sales_summary_matches_the_contract(built, expected):
    assert_table_matches(built, expected, "daily_sales_summary")


def test_monthly_sales_summary_matches_the_contract(built, expected):
    assert_table_matches(built, expected, "monthly_sales_summary")


# ---------------------------------------------------------------- the edge rows exist and are right

def test_daily_sales_summary_zero_fills_days_without_revenue_bearing_orders(built, expected):
    daily = built["daily_sales_summary"].assign(day=lambda d: as_date(d["sale_date"]))
    empty = daily[as_float(daily["total_orders"]) == 0]
    assert len(empty) > 0, "the tiny data set should have days without orders; none were zero-filled"
    orders = expected["orders"]
    busy_days = set(orders.loc[orders["revenue_bearing"] & orders["odate"].notna(), "odate"])
    wrongly_empty = sorted(d for d in empty["day"] if d in busy_days)
    assert not wrongly_empty, f"days with revenue-bearing orders reported as empty: {wrongly_empty[:SHOW_AT_MOST]}"
    assert (as_float(empty["total_revenue"]) == 0).all()
    assert (as_float(empty["unique_customers"]) == 0).all()
    assert (as_float(empty["units_sold"]) == 0).all()
    assert empty["avg_order_value"].isna().all()
    # zero-filled means no gap: one row per day between the first and last dated order
    assert daily["day"].sort_values().diff().dropna().eq(pd.Timedelta(days=1)).all()


def test_customers_without_revenue_bearing_orders_have_empty_metrics(built, expected):
    orders = expected["orders"]
    buyers = set(orders.loc[orders["revenue_bearing"], "customer_id"])
    never = set(built["customers"]["customer_id"]) - buyers
    assert never, "the tiny data set should have customers without revenue-bearing orders"
    cs = built["customer_summary"]
    rows = cs[cs["customer_id"].isin(never)]
    assert set(rows["customer_id"]) == never, "customers without revenue-bearing orders missing from the summary"
    assert (as_float(rows["total_orders"]) == 0).all()
    assert (as_float(rows["total_spent"]) == 0).all()
    for column in ("avg_order_value", "first_order_date", "last_order_date", "days_since_last_order",
                   "recency_score", "frequency_score", "monetary_score"):
        assert rows[column].isna().all(), f"{column} should be null for customers without orders"
    assert (rows["rfm_segment"] == "no orders").all()
    # and nobody with such orders is called 'no orders'
    assert not cs.loc[cs["customer_id"].isin(buyers), "rfm_segment"].eq("no orders").any()


# ---------------------------------------------------------------- the same contract, on rows the tiny data lacks
# The generated data has no undated orders, no null quantities, prices or discounts, no order without lines
# and no month without revenue. A copy of the raw files is spoiled to add each, and the comparison rerun.

def rewrite(path, edit) -> None:
    """Apply ``edit`` to the rows (lists of strings) of a raw CSV; empty cells are written unquoted: nulls."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    rows = edit(header, rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def spoil(raw_dir, core: dict) -> dict:
    """Add edge rows to raw files, picked among rows that loaded into ``core``; return what was done."""
    done = {}
    orders, items = core["orders"], core["order_items"]
    orders = orders.assign(month=pd.to_datetime(orders["order_ts"], utc=True).dt.strftime("%Y-%m"),
                           oid=orders["order_id"].astype(str))
    rb = orders[orders["status"].isin(REVENUE_STATUSES) & orders["order_ts"].notna()]
    per_customer = rb.groupby("customer_id")["oid"].agg(list)
    lone = [ids[0] for ids in per_customer[per_customer.str.len() == 1].head(2)]
    many = [ids[0] for ids in per_customer[per_customer.str.len() >= 3].head(2)]
    cancelled = orders.loc[orders["status"] == "cancelled", "oid"].head(1).tolist()
    done["undated"] = lone + many + cancelled  # lone: buyers whose every revenue-bearing order is undated
    done["emptied_month"] = "2025-06"
    emptied = set(rb.loc[rb["month"] == done["emptied_month"], "oid"])
    later = [o for o in rb["oid"] if o not in set(done["undated"]) | emptied]
    # the as-of rule: orders dated after the as-of date, one of them a buyer's last order
    done["after_as_of"] = {later.pop(): "2026-12-01 10:00:00Z", later.pop(): "2026-11-25 00:00:01Z"}
    done["odd_status"] = {later[0]: "pending", later[1]: "refunded", later[2]: ""}
    line_counts = items.groupby(items["order_id"].astype(str)).size()
    multi = [o for o in later[3:] if line_counts.get(o, 0) >= 2]
    done["no_lines"], done["null_lines"] = multi[0], multi[1]  # an order with no lines; one with only null-revenue lines
    lines = items[items["order_id"].astype(str).isin(later[3:]) & ~items["order_id"].astype(str).isin(multi[:2])]
    line_keys = list(zip(lines["order_id"].astype(str), lines["line_no"].astype(str)))
    done["null_quantity"], done["null_price"], done["null_discount"] = line_keys[:2], line_keys[2:3], line_keys[3:6]
    # an order whose every line is the same product: three or more repeats count as one order
    done["one_product"] = next(o for o in later[3:] if line_counts.get(o, 0) >= 3 and o not in multi[:2]
                               and not any(k[0] == o for k in line_keys[:6]))
    first_product = {}
    sold = items[items["order_id"].astype(str).isin(later)]["product_id"].value_counts()
    done["no_cost"] = str(sold.index[0])  # a product sold in revenue-bearing orders, its cost unknown

    def edit_products(header, rows):
        pid, cost = header.index("product_id"), header.index("unit_cost")
        for row in rows:
            if row[pid] == done["no_cost"]:
                row[cost] = ""
        return rows

    def edit_orders(header, rows):
        oid, ts, st = header.index("order_id"), header.index("order_ts"), header.index("status")
        for row in rows:
            if row[oid] in done["undated"]:
                row[ts] = ""
            row[ts] = done["after_as_of"].get(row[oid], row[ts])
            if row[oid] in emptied:
                row[st] = "cancelled"
            if row[oid] in done["odd_status"]:
                row[st] = done["odd_status"][row[oid]]
        return rows

    def edit_items(header, rows):
        oid, no = header.index("order_id"), header.index("line_no")
        q, p, d = header.index("quantity"), header.index("unit_price"), header.index("discount")
        product = header.index("product_id")
        kept = []
        for row in rows:
            line = (row[oid], row[no])
            if row[oid] == done["one_product"]:
                row[product] = first_product.setdefault(row[oid], row[product])
            if row[oid] == done["no_lines"]:
                continue
            if row[oid] == done["null_lines"] or line in done["null_quantity"]:
                row[q] = ""
            if line in done["null_price"]:
                row[p] = ""
            if line in done["null_discount"]:
                row[d] = ""
            kept.append(row)
        return kept

    rewrite(raw_dir / "orders.csv", edit_orders)
    rewrite(raw_dir / "products.csv", edit_products)
    rewrite(raw_dir / "order_items.csv", edit_items)
    return done


@pytest.fixture(scope="module")
def edge(engine, tiny_raw, tmp_path_factory, built) -> tuple[dict, dict, dict]:
    raw = shutil.copytree(tiny_raw, tmp_path_factory.mktemp("edge") / "raw")
    done = spoil(raw, built)
    db = load_build_read(engine, raw)
    return db, recompute(db), done


def test_the_spoiled_copy_has_the_edge_rows(edge):
    db, exp, done = edge
    orders, items, cs = db["orders"], db["order_items"], exp["customer_summary"]
    by_id = orders.set_index(orders["order_id"].astype(str))
    assert by_id.loc[done["undated"], "order_ts"].isna().all()
    after = db["order_totals"].set_index(db["order_totals"]["order_id"].astype(str)).loc[list(done["after_as_of"])]
    assert after["is_after_as_of"].all() and after["order_date"].isna().all()
    assert db["as_of"] == DEFAULT_AS_OF
    lone_buyers = by_id.loc[done["undated"][:2], "customer_id"]
    assert cs.set_index("customer_id").loc[lone_buyers, "last_order_date"].isna().all()
    assert (cs.loc[cs["last_order_date"].isna(), "total_orders"] > 0).sum() >= 2, "buyers with no dated order"
    assert int(done["no_lines"]) not in set(items["order_id"])
    assert items["quantity"].isna().sum() >= 2 and items["unit_price"].isna().sum() >= 1
    assert items["discount"].isna().sum() >= 3
    ms = exp["monthly_sales_summary"]
    assert (ms["total_orders"] == 0).sum() >= 1, "a month without revenue-bearing orders"
    assert orders["status"].isna().sum() >= 1 and orders["status"].isin(["pending", "refunded"]).sum() == 2
    no_cost = db["products"].set_index("product_id").loc[int(done["no_cost"])]
    assert pd.isna(no_cost["unit_cost"])
    assert exp["product_summary"].set_index("product_id").loc[int(done["no_cost"]), "units_sold"] > 0
    one = items[items["order_id"] == int(done["one_product"])]
    assert len(one) >= 3 and one["product_id"].nunique() == 1


@pytest.mark.parametrize("table", SUMMARIES)
def test_summaries_match_the_contract_on_edge_rows(edge, table):
    db, exp, _ = edge
    assert_table_matches(db, exp, table)


def test_orders_after_as_of_count_in_totals_but_in_no_day_and_recency_runs_from_as_of(edge):
    db, _, done = edge
    as_of = db["as_of"]
    totals = db["order_totals"]
    late = totals[totals["is_after_as_of"]]
    assert set(late["order_id"].astype(str)) >= set(done["after_as_of"]) and late["order_date"].isna().all()
    assert (as_date(db["daily_sales_summary"]["sale_date"]) <= pd.Timestamp(as_of)).all()
    cs = db["customer_summary"]
    buyers = cs[cs["last_order_date"].notna()]
    since = (pd.Timestamp(as_of) - as_date(buyers["last_order_date"])).dt.days
    assert len(buyers) > 0 and (as_float(buyers["days_since_last_order"]) == since).all()
    bearing = totals[totals["is_revenue_bearing"]]
    assert as_float(pd.Series([bearing["revenue"].sum()])).iloc[0] == as_float(pd.Series([cs["total_spent"].sum()])).iloc[0]

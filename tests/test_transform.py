"""Transform: the views keep their written rules, and a rebuild is atomic, idempotent and safe to read through.

The four summary tables are recomputed from core in test_transform_reference.py; this module checks what
that does not: the analytical views against the tables they read, and how a build behaves.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
import threading
import time
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa

from ecompipe import generate, ingest, marts, transform

from conftest import TINY, fingerprint

MARTS = (*transform.TABLES, *transform.VIEWS)
FAR_FROM_UTC = "Pacific/Kiritimati"  # UTC+14: any order after 10:00 UTC falls on the next local day
MIDNIGHT_SKIPPED = "America/Santiago"  # daylight saving starts at midnight: 2025-09-07 begins at 01:00


def snapshot(engine) -> dict:
    return fingerprint(engine, MARTS)


def lock_held(engine, lock: str = "ecompipe.transform") -> bool:
    """Whether a session holds the build's lock (or ``lock``: the build also holds ingest's, shared)."""
    with engine.connect() as conn:
        return bool(conn.scalar(sa.text(
            "select count(*) from pg_locks where locktype = 'advisory' and objid::int = hashtext(:lock)"),
            {"lock": lock}))


def build_schema_exists(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(sa.text("select count(*) from pg_namespace where nspname = :s"),
                                {"s": transform.BUILD_SCHEMA}))


def read(engine, query: str) -> pd.DataFrame:
    """Rows with numerics kept as Decimal, so sums and boundaries are exact."""
    with engine.connect() as conn:
        result = conn.execute(sa.text(query))
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def pg_round(value: Decimal, places: int = 2) -> Decimal:
    """round(numeric, places) as PostgreSQL does it: half away from zero."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def built(engine, tiny_raw) -> list[transform.Built]:
    ingest.load(tiny_raw, engine)
    return transform.build(engine)


@pytest.fixture(scope="module")
def customers(engine, built) -> pd.DataFrame:
    return read(engine, "select * from customer_summary")


# ---------------------------------------------------------------- what a build reports

def test_build_reports_every_model_in_order_with_its_row_count(engine, built):
    assert [(b.name, b.kind) for b in built] == [(t, "table") for t in transform.TABLES] + \
                                               [(v, "view") for v in transform.VIEWS]
    with engine.connect() as conn:
        counts = {t: conn.scalar(sa.text(f"select count(*) from {t}")) for t in transform.TABLES}
    assert {b.name: b.rows for b in built if b.kind == "table"} == counts
    assert all(b.rows is None for b in built if b.kind == "view")
    assert counts["order_totals"] > 0 and counts["customer_summary"] > 0


# ---------------------------------------------------------------- RFM

SCORES = {  # score: the measure it ranks first (bucket 1 holds its lowest values; 5 is best)
    "recency_score": "last_order_date",
    "frequency_score": "total_orders",
    "monetary_score": "total_spent",
}

# The recency x frequency grid, written out cell by cell: GRID[recency][frequency - 1].
GRID = {
    5: ["new customers", "promising", "loyal", "champions", "champions"],
    4: ["new customers", "promising", "loyal", "champions", "champions"],
    3: ["needs attention", "needs attention", "loyal", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at risk", "at risk", "at risk"],
    1: ["lost", "hibernating", "at risk", "cannot lose them", "cannot lose them"],
}


@pytest.mark.parametrize("score", SCORES)
def test_rfm_scores_are_quintiles_with_the_lowest_values_in_bucket_1(customers, score):
    measure = SCORES[score]
    buyers = customers[customers["total_orders"] > 0]
    assert len(buyers) >= 5 and buyers[measure].notna().all()
    sizes = buyers[score].value_counts().sort_index()
    assert list(sizes.index) == [1, 2, 3, 4, 5]
    assert sizes.max() - sizes.min() <= 1, f"{score} buckets are uneven: {sizes.to_dict()}"
    assert sizes.is_monotonic_decreasing, f"ntile gives the extra rows to the first buckets: {sizes.to_dict()}"
    bounds = buyers.groupby(score)[measure].agg(["min", "max"])
    for k in range(1, 5):
        assert bounds.loc[k, "max"] <= bounds.loc[k + 1, "min"], \
            f"{score}: bucket {k} reaches {bounds.loc[k, 'max']}, above bucket {k + 1}'s lowest " \
            f"{bounds.loc[k + 1, 'min']}"
    assert bounds.loc[1, "min"] < bounds.loc[5, "max"]  # the buckets do separate something
    never = customers[customers["total_orders"] == 0]
    assert len(never) > 0 and never[score].isna().all()


def test_every_customer_sits_in_the_segment_of_their_grid_cell(customers):
    buyers = customers[customers["total_orders"] > 0]
    wrong = [(r.customer_id, r.recency_score, r.frequency_score, r.rfm_segment) for r in buyers.itertuples()
             if r.rfm_segment != GRID[int(r.recency_score)][int(r.frequency_score) - 1]]
    assert not wrong, f"customers in the wrong segment (id, r, f, segment): {wrong[:15]}"
    assert (customers.loc[customers["total_orders"] == 0, "rfm_segment"] == "no orders").all()


def test_rfm_segments_respect_the_grid_and_cover_every_customer(engine, customers):
    segments = read(engine, "select * from rfm_segments").set_index("rfm_segment")
    cells = {}  # segment: the (recency, frequency) cells the grid gives it
    for r, row in GRID.items():
        for f, name in enumerate(row, start=1):
            cells.setdefault(name, []).append((r, f))
    assert set(segments.index) <= set(cells) | {"no orders"}
    assert {"champions", "no orders"} <= set(segments.index)
    for name, s in segments.drop(index="no orders").iterrows():
        rs, fs = [r for r, _ in cells[name]], [f for _, f in cells[name]]
        assert min(rs) <= s["min_recency_score"] <= s["max_recency_score"] <= max(rs), f"{name}: {s.to_dict()}"
        assert min(fs) <= s["min_frequency_score"] <= s["max_frequency_score"] <= max(fs), f"{name}: {s.to_dict()}"
    champions = segments.loc["champions"]
    assert champions["min_recency_score"] >= 4 and champions["min_frequency_score"] >= 4
    none = segments.loc["no orders"]
    assert pd.isna(none["min_recency_score"]) and pd.isna(none["max_frequency_score"])
    assert none["total_spent"] == 0
    assert segments["customers"].to_dict() == customers["rfm_segment"].value_counts().to_dict()
    assert segments["customers"].sum() == len(customers)
    assert abs(segments["customers_pct"].sum() - 100) <= Decimal("0.05")
    assert abs(segments["revenue_pct"].sum() - 100) <= Decimal("0.05")


# ---------------------------------------------------------------- cohorts

@pytest.fixture(scope="module")
def cohorts(engine, built) -> pd.DataFrame:
    return read(engine, "select * from cohort_retention order by cohort_month, months_since_first")


def test_cohort_sizes_are_the_new_customers_of_their_month(engine, cohorts):
    monthly = read(engine, "select month, new_customers from monthly_sales_summary")
    new = monthly[monthly["new_customers"] > 0].set_index("month")["new_customers"].to_dict()
    sizes = cohorts.groupby("cohort_month")["cohort_size"].agg(["min", "max"])
    assert (sizes["min"] == sizes["max"]).all(), "a cohort's size changes between its rows"
    assert sizes["min"].to_dict() == new
    assert len(new) >= 12


def test_a_cohort_starts_whole_and_never_exceeds_itself(cohorts):
    first = cohorts[cohorts["months_since_first"] == 0]
    assert len(first) == cohorts["cohort_month"].nunique()
    assert (first["retention_pct"] == 100).all()
    assert (first["active_customers"] == first["cohort_size"]).all()
    assert (cohorts["retention_pct"] <= 100).all() and (cohorts["retention_pct"] >= 0).all()
    assert (cohorts["active_customers"] <= cohorts["cohort_size"]).all()
    later = cohorts[cohorts["months_since_first"] > 0]
    assert (later["active_customers"] > 0).any() and (later["active_customers"] == 0).any()
    expected_pct = [pg_round(Decimal(100) * a / s) for a, s in zip(later["active_customers"], later["cohort_size"])]
    assert list(later["retention_pct"]) == expected_pct


def test_a_cohorts_active_customers_are_its_customers_with_a_revenue_bearing_order_that_month(engine, cohorts):
    orders = read(engine, "select customer_id, order_date from order_totals "
                          "where is_revenue_bearing and order_date is not null")
    orders["month"] = pd.to_datetime(orders["order_date"]).dt.to_period("M")
    orders["cohort"] = orders.groupby("customer_id")["month"].transform("min")
    active = orders.drop_duplicates(["customer_id", "month"]).groupby(["cohort", "month"]).size()
    mine = cohorts.assign(cohort=pd.to_datetime(cohorts["cohort_month"]).dt.to_period("M"),
                          month=pd.to_datetime(cohorts["active_month"]).dt.to_period("M"))
    assert mine.set_index(["cohort", "month"])["active_customers"][lambda a: a > 0].to_dict() == active.to_dict()


def test_each_cohort_runs_month_by_month_to_the_last_month_in_the_data(engine, cohorts):
    last = read(engine, "select max(month) as last from monthly_sales_summary")["last"][0]
    for cohort_month, rows in cohorts.groupby("cohort_month"):
        span = (last.year - cohort_month.year) * 12 + last.month - cohort_month.month
        assert list(rows["months_since_first"]) == list(range(span + 1)), f"cohort {cohort_month}"
        expected = [(pd.Timestamp(cohort_month) + pd.DateOffset(months=m)).date() for m in range(span + 1)]
        assert list(rows["active_month"]) == expected, f"cohort {cohort_month}"


def test_the_cohort_heatmap_shows_the_last_cohorts_of_the_calendar_from_month_1(engine, cohorts):
    heatmap = marts.cohort_heatmap(engine, months=5, cohorts=6)
    last = cohorts["cohort_month"].max()
    shown = [(pd.Timestamp(last) - pd.DateOffset(months=n)).strftime("%Y-%m") for n in range(5, -1, -1)]
    # in calendar order, each cohort of the last six months that has a month 1 to 5 (the newest has none yet)
    later = {d.strftime("%Y-%m") for d, m in zip(cohorts["cohort_month"], cohorts["months_since_first"]) if 1 <= m <= 5}
    assert list(heatmap.index) == [c for c in shown if c in later] and len(heatmap) >= 4
    assert list(heatmap.columns) == [1, 2, 3, 4, 5]
    for cohort, row in heatmap.iterrows():
        expected = cohorts[cohorts["cohort_month"].map(lambda d: d.strftime("%Y-%m")) == cohort] \
            .set_index("months_since_first")["retention_pct"].astype(float).reindex(range(1, 6))
        assert row.tolist() == pytest.approx(expected.tolist(), nan_ok=True), cohort


# ---------------------------------------------------------------- ABC

@pytest.fixture(scope="module")
def abc(engine, built) -> pd.DataFrame:
    return read(engine, "select * from product_abc order by pareto_rank")


def test_abc_shares_add_up_and_follow_revenue(engine, abc):
    products = read(engine, "select product_id from product_summary")
    assert sorted(abc["product_id"]) == sorted(products["product_id"])
    assert list(abc["pareto_rank"]) == list(range(1, len(abc) + 1))
    assert abc["total_revenue"].is_monotonic_decreasing
    assert abs(abc["revenue_share_pct"].sum() - 100) <= Decimal("1e-6")
    assert abs(abc["cumulative_share_pct"].iloc[-1] - 100) <= Decimal("1e-6")
    assert (abc["cumulative_share_pct"].diff().dropna() >= 0).all()


def test_abc_classes_are_contiguous_and_cut_at_80_and_95_percent(abc):
    classes = "".join(abc["abc_class"])
    assert re.fullmatch(r"A+B+C+", classes), f"classes out of pareto order: {classes[:80]}..."
    for cls, cut in (("A", 80), ("B", 95)):
        last = abc[abc["abc_class"] == cls].iloc[-1]
        assert last["cumulative_share_pct"] >= cut, f"the last {cls} product stops short of {cut}%"
        assert last["cumulative_share_pct"] - last["revenue_share_pct"] < cut, \
            f"the last {cls} product starts at or past {cut}%: it belongs to the next class"
        following = abc.iloc[int(last["pareto_rank"])]  # the first product of the next class
        assert following["cumulative_share_pct"] - following["revenue_share_pct"] >= cut


# ---------------------------------------------------------------- sales trends

def test_sales_trends_roll_the_daily_revenue(engine, built):
    daily = read(engine, "select sale_date, total_revenue from daily_sales_summary order by sale_date")
    trends = read(engine, "select * from sales_trends order by sale_date")
    assert list(trends["sale_date"]) == list(daily["sale_date"])
    revenue = list(daily["total_revenue"])
    assert len(revenue) > 60

    def window(i: int, days: int, back: int = 0) -> Decimal:
        return sum(revenue[i - back - days + 1:i - back + 1], Decimal(0))

    def change(now: Decimal, before: Decimal):
        return None if before == 0 else pg_round(100 * (now - before) / before)

    assert trends["revenue_7d"][:6].isna().all() and trends["revenue_28d"][:27].isna().all()
    for i in (6, 7, 13, 100, len(revenue) // 2, len(revenue) - 1):
        assert trends["revenue_7d"][i] == window(i, 7), f"revenue_7d on {trends['sale_date'][i]}"
    for i in (27, 28, 55, 100, len(revenue) - 1):
        assert trends["revenue_28d"][i] == window(i, 28), f"revenue_28d on {trends['sale_date'][i]}"
    for i in range(len(revenue)):
        wow = change(window(i, 7), window(i, 7, back=7)) if i >= 13 else None
        mom = change(window(i, 28), window(i, 28, back=28)) if i >= 55 else None
        day = trends.iloc[i]
        assert (None if pd.isna(day["wow_pct"]) else day["wow_pct"]) == wow, f"wow_pct on {day['sale_date']}"
        assert (None if pd.isna(day["mom_pct"]) else day["mom_pct"]) == mom, f"mom_pct on {day['sale_date']}"
    assert trends["wow_pct"].notna().sum() > len(revenue) / 2


# ---------------------------------------------------------------- categories

def test_category_performance_sums_product_summary(engine, built):
    categories = read(engine, "select * from category_performance").set_index("category").sort_index()
    products = read(engine, "select * from product_summary")
    expected = products.groupby("category").agg(
        products=("product_id", "size"), products_sold=("units_sold", lambda u: int((u > 0).sum())),
        units_sold=("units_sold", "sum"), total_revenue=("total_revenue", "sum"), total_cost=("total_cost", "sum"))
    assert len(expected) > 1
    pd.testing.assert_frame_equal(categories[list(expected.columns)], expected, check_dtype=False, check_names=False)
    assert (categories["total_margin"] == categories["total_revenue"] - categories["total_cost"]).all()
    best = products.sort_values(["total_revenue", "product_id"], ascending=[False, True]).groupby("category").first()
    assert categories["best_product"].to_dict() == best["product_name"].to_dict()
    assert abs(categories["revenue_share_pct"].sum() - 100) <= Decimal("0.05")
    assert list(categories.sort_values("revenue_rank")["total_revenue"]) == \
           sorted(categories["total_revenue"], reverse=True)


# ---------------------------------------------------------------- session time zone

def test_order_dates_are_taken_in_the_session_time_zone(engine, built):
    far = sa.create_engine(engine.url, poolclass=sa.NullPool,
                           connect_args={"options": f"-c timezone={FAR_FROM_UTC}"})
    try:
        with far.connect() as conn:
            assert conn.scalar(sa.text("show timezone")) == FAR_FROM_UTC
        transform.build(far)
        shifted = read(engine, "select order_id, order_ts, order_date from order_totals where order_ts is not null")
    finally:
        far.dispose()
        transform.build(engine)
    ts = pd.to_datetime(shifted["order_ts"], utc=True)
    local, utc = ts.dt.tz_convert(FAR_FROM_UTC).dt.date, ts.dt.date
    assert (shifted["order_date"] == local).all()
    assert (shifted["order_date"] != utc).sum() > len(shifted) / 10
    # and the rebuild through the ordinary engine takes them back
    restored = read(engine, "select order_id, order_ts, order_date from order_totals where order_ts is not null")
    with engine.connect() as conn:
        session_tz = conn.scalar(sa.text("show timezone"))
    expected = pd.to_datetime(restored["order_ts"], utc=True).dt.tz_convert(session_tz).dt.date
    assert (restored["order_date"] == expected).all()


def test_a_day_whose_midnight_is_skipped_keeps_its_row(engine, built):
    dst = sa.create_engine(engine.url, poolclass=sa.NullPool,
                           connect_args={"options": f"-c timezone={MIDNIGHT_SKIPPED}"})
    try:
        transform.build(dst)
        days = read(engine, "select sale_date from daily_sales_summary order by sale_date")["sale_date"].tolist()
        months = read(engine, "select month from monthly_sales_summary order by month")["month"].tolist()
        cohort_months = read(engine, "select distinct active_month from cohort_retention order by 1")["active_month"]
        first, last = read(engine, "select min(order_date), max(order_date) from order_totals").iloc[0]
    finally:
        dst.dispose()
        transform.build(engine)
    assert first < date(2025, 9, 7) < last
    assert days == [first + timedelta(days=n) for n in range((last - first).days + 1)]
    assert [(m.year, m.month) for m in months] == sorted({(d.year, d.month) for d in days})
    assert cohort_months.iloc[-1] == months[-1]


def test_abc_classes_cut_exactly_at_80_and_95_percent(engine):
    """Rounded percentages put a product starting at exactly 80% in A; the exact sums put it in B."""
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:  # a temporary product_summary hides the real one from this session
            cur.execute("""create temp table product_summary as
                select g::bigint as product_id, 'p' || g as product_name, 'c' as category,
                       (case when g = 1 then 240 else 1 end)::numeric(14, 2) as total_revenue
                from generate_series(1, 61) as g""")  # 240 + 60 x 1 = 300: product 2 starts at 240, 80%
            cur.execute(transform.model_sql("product_abc"))
            abc = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    finally:
        conn.rollback()
        conn.close()
    classes = abc.set_index("product_id")["abc_class"]
    assert (classes[1], classes[2]) == ("A", "B")
    assert (classes[46], classes[47]) == ("B", "C")  # product 47 starts at 285 of 300: exactly 95%


# ---------------------------------------------------------------- rebuilds: idempotent, atomic, readable throughout

def test_building_twice_gives_identical_marts(engine, built):
    first = snapshot(engine)
    assert all(n > 0 for n, _ in first.values())
    transform.build(engine)
    assert snapshot(engine) == first
    assert not build_schema_exists(engine)
    assert not lock_held(engine)


def test_a_table_an_earlier_version_published_as_a_view_is_rebuilt_as_its_table(engine, built):
    """cohort_retention was a view until it became a table: the build drops what a warehouse holds by its kind."""
    before = fingerprint(engine, ["cohort_retention"])
    with engine.begin() as conn:
        conn.execute(sa.text("drop table cohort_retention"))
        conn.execute(sa.text("create view cohort_retention as\n" + transform.model_sql("cohort_retention")))
    transform.build(engine)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select relkind from pg_class where relname = 'cohort_retention' "
                                   "and relnamespace = current_schema()::regnamespace")) == "r"
    assert fingerprint(engine, ["cohort_retention"]) == before


BROKEN = {  # which model to break: a table of the last level, one of the first (before the swap), and a view (after
    # it, in the same transaction)
    "a table": "monthly_sales_summary",
    "a table built while another builds": "product_summary",
    "a view": transform.VIEWS[2],
}


@pytest.mark.parametrize("where", BROKEN, ids=list(BROKEN))
def test_a_failure_mid_build_leaves_the_previous_marts(engine, built, monkeypatch, where):
    broken = BROKEN[where]
    before = snapshot(engine)
    real = transform.model_sql
    reached = []
    monkeypatch.setattr(transform, "model_sql", lambda name:
                        "select no_such_column from orders" if name == broken else real(name))
    with pytest.raises(transform.TransformError,
                       match=rf'^sql/transform/{broken}\.sql: column "no_such_column" does not exist'):
        transform.build(engine, progress=lambda model: reached.append(model.name))
    # it failed where it was broken, not before: what it reads was built (a view reads the tables)
    assert broken not in reached
    assert set(transform.INPUTS.get(broken, transform.TABLES)) <= set(reached)
    assert snapshot(engine) == before
    assert not build_schema_exists(engine)
    assert not lock_held(engine) and not lock_held(engine, "ecompipe.ingest")
    monkeypatch.undo()
    transform.build(engine)  # nothing left behind stops the next build
    assert snapshot(engine) == before


def test_a_failure_cancels_the_table_building_beside_it_and_frees_the_locks(engine, built, monkeypatch):
    before = snapshot(engine)
    real = transform.model_sql
    monkeypatch.setattr(transform, "model_sql", lambda name: {  # the two tables of the first level
        "order_totals": "select no_such_column from orders",
        "product_summary": "select 1 as slept from pg_sleep(600)"}.get(name) or real(name))
    started = time.monotonic()
    with pytest.raises(transform.TransformError, match=r"^sql/transform/order_totals\.sql: column "):
        transform.build(engine)
    assert time.monotonic() - started < 60, "the table building beside it ran on: it was not cancelled"
    assert not lock_held(engine) and not lock_held(engine, "ecompipe.ingest")
    assert snapshot(engine) == before and not build_schema_exists(engine)


def test_readers_see_the_same_marts_throughout_a_rebuild(engine, built):
    query = sa.text("select count(*), sum(total_spent) from customer_summary")
    with engine.connect() as conn:
        expected = tuple(conn.execute(query).one())
    seen, errors, reads = [], [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            started = time.monotonic()
            try:
                with engine.connect() as conn:
                    seen.append(tuple(conn.execute(query).one()))
            except Exception as exc:  # surfaced below
                errors.append(exc)
            reads.append(started)

    swap, tables = [], []  # when the swap began: right after the last table was built

    def slowly(model):  # hold the build open: tables are built before the swap, views after it, then it commits
        time.sleep(0.1)
        if model.kind == "table":
            tables.append(model.name)
            if len(tables) == len(transform.TABLES):
                swap.append(time.monotonic())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.1)
        transform.build(engine, progress=slowly)
        committed = time.monotonic()
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert set(seen) == {expected}
    assert sum(started < swap[0] for started in reads) > 10, "no reads while the new tables were built"
    assert any(swap[0] <= started < committed for started in reads), "no read ran into the swap"
    assert any(started >= committed for started in reads), "no read after the commit"


@pytest.mark.parametrize("target", ["customer_summary", "rfm_segments"])
def test_a_users_own_view_on_a_mart_stops_the_build_and_is_named(engine, built, target):
    before = snapshot(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create view my_report as select count(*) as n from {target}"))
    try:
        with pytest.raises(psycopg2.Error, match=f"view my_report depends on (table|view) {target}"):
            transform.build(engine)
        assert snapshot(engine) == before
        assert not build_schema_exists(engine)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("select n from my_report")) > 0  # the user's view was not dropped
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("drop view if exists my_report"))
    transform.build(engine)
    assert snapshot(engine) == before


def test_two_builds_at_once_take_turns(engine, built):
    before = snapshot(engine)
    errors = []

    def build():
        try:
            transform.build(engine)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert snapshot(engine) == before
    assert not build_schema_exists(engine) and not lock_held(engine)


def test_each_table_builds_once_the_tables_its_header_names_are_built():
    for name in transform.TABLES:
        named = re.search(r"^-- Inputs: ([^(.\n]*)", transform.model_sql(name), re.M).group(1)
        assert set(transform.INPUTS[name]) == {n.strip() for n in named.split(",")} & set(transform.TABLES), name
    # so the two connections build the tables two by two, the cohorts beside customer_summary
    assert transform.LEVELS == (("order_totals", "product_summary"), ("customer_summary", "daily_sales_summary"),
                                ("cohort_retention",), ("monthly_sales_summary",))


def load_waiting(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(sa.text(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'")))


def test_a_load_waits_for_a_build_under_way_whose_marts_are_all_of_the_data_before_it(engine, built, tiny_raw,
                                                                                     tmp_path):
    other = tmp_path / "raw"
    generate.write_dataset(generate.GenerateSpec(scale=TINY, seed=7), other)
    before = snapshot(engine)
    held, release, done = threading.Event(), threading.Event(), {}

    def holding(model):  # hold the build open once its first table is built
        held.set()
        release.wait(60)

    def run(name, work):
        try:
            done[name] = work()
        except Exception as exc:  # noqa: BLE001 - asserted below
            done[name] = exc

    builder = threading.Thread(target=run, args=("build", lambda: transform.build(engine, progress=holding)))
    loader = threading.Thread(target=run, args=("load", lambda: ingest.load(other, engine)))
    try:
        builder.start()
        assert held.wait(60)
        loader.start()
        deadline = time.monotonic() + 60
        while not load_waiting(engine):
            assert time.monotonic() < deadline, "the load did not wait for the build"
            time.sleep(0.05)
        assert builder.is_alive() and loader.is_alive()
        release.set()
        builder.join(120)
        loader.join(120)
        assert not isinstance(done["build"], Exception) and not isinstance(done["load"], Exception), done
        assert snapshot(engine) == before  # every mart of the data before the load: none read the new rows
        with engine.connect() as conn:
            assert conn.scalar(sa.text("select source_dir from ingest_loads order by load_id desc limit 1")) == str(other)
    finally:
        release.set()
        builder.join()
        loader.join()
        ingest.load(tiny_raw, engine)
        transform.build(engine)
    assert snapshot(engine) == before

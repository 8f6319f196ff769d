"""Generation: counts, determinism, realism within documented tolerances, and planted defects that match
their ledger row by row. The defect detectors here are written independently of the generator."""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from ecompipe import generate, planting, seeds, shop
from ecompipe.generate import DefectRates, GenerateSpec
from ecompipe.rawformat import COLUMNS, DEFECTS_FILE, KEYS
from ecompipe.shop import PAYMENT_METHODS, STATUSES

from conftest import TINY

EMAIL = re.compile(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+")
NOISY = DefectRates(**{name: 0.01 for name in DefectRates.model_fields})


def read(raw, name):
    return pd.read_csv(raw / f"{name}.csv", keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def clean_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("clean")
    generate.write_dataset(GenerateSpec(scale=0.2, clean=True), raw)
    return raw


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    raw = tmp_path_factory.mktemp("noisy")
    spec = GenerateSpec(scale=0.2, defects=NOISY, chunk_rows=2_000)
    return spec, generate.write_dataset(spec, raw, workers=1)


# ---------------------------------------------------------------- counts and determinism

@pytest.fixture(scope="module")
def scale_one(tmp_path_factory):
    """Scale 1 with the default defects: anomalous days included."""
    raw = tmp_path_factory.mktemp("scale1")
    return GenerateSpec(scale=1), generate.write_dataset(GenerateSpec(scale=1), raw)


def test_scale_one_has_the_documented_counts(scale_one):
    spec, result = scale_one
    orders = read(result.raw_dir, "orders")
    real = orders[orders["order_id"] < planting.ORPHAN_ID_OFFSET]
    assert real["order_id"].nunique() == 50_000 and read(result.raw_dir, "customers")["customer_id"].nunique() == 10_000
    assert result.rows["products"] == 495
    assert result.defects["anomalous_day"] == 8  # what outages lose and surges gain came from other days


def daily(result) -> pd.Series:
    orders = read(result.raw_dir, "orders").drop_duplicates("order_id")
    orders = orders[orders["order_id"] < planting.ORPHAN_ID_OFFSET]
    days = pd.to_datetime(orders["order_ts"], utc=True).dt.tz_localize(None).dt.normalize()
    return days.value_counts().sort_index().asfreq("D", fill_value=0)


def ordinary(per_day: pd.Series, day: pd.Timestamp, events: set) -> float:
    """The median of the same weekday in the four weeks either side, retail events left out."""
    around = [day + pd.Timedelta(weeks=k) for k in (-4, -3, -2, -1, 1, 2, 3, 4)]
    return float(per_day.reindex([d for d in around if d not in events]).median())


def test_anomalous_days_are_outages_or_surges_of_whole_days(scale_one):
    spec, result = scale_one
    ledger = pd.read_csv(result.raw_dir / DEFECTS_FILE)
    planted = ledger[ledger["defect"] == "anomalous_day"]
    per_day = daily(result)
    for row in planted.itertuples():
        day = pd.Timestamp(row.key)
        ratio = per_day[day] / ordinary(per_day, day, set())
        if row.detail.startswith("outage"):
            assert ratio < 0.5, (row.key, ratio)
        else:
            assert 2.2 < ratio < 7, (row.key, ratio)


def test_retail_events_peak_and_january_slumps(scale_one):
    spec, result = scale_one
    per_day = daily(result)
    events = {e: (pd.Timestamp(a), pd.Timestamp(b)) for e, a, b in
              ((r["event_id"], r["first_day"], r["last_day"]) for r in seeds.rows("retail_events"))}
    event_days = {d for a, b in events.values() for d in pd.date_range(a, b)}
    for year in (2024, 2025):
        for event in ("black-friday", "cyber-monday"):
            day = events[f"{event}-{year}"][0]
            if spec.first_order_day <= day.date() <= spec.as_of:
                lift = per_day[day] / ordinary(per_day, day, event_days)
                assert 1.8 <= lift <= 3.6, (event, year, lift)  # 2-3x, give or take a day's chance
    rush = per_day[events["christmas-rush-2025"][0]:events["christmas-rush-2025"][1]].mean()
    early_december = per_day["2025-12-01":"2025-12-09"].mean()
    assert rush > 1.2 * early_december
    assert per_day["2026-01-02":"2026-01-31"].mean() < 0.85 * per_day["2025-11-01":"2025-11-20"].mean()
    months = per_day[(per_day.index >= "2025-11-01") & (per_day.index < "2026-11-01")].resample("MS").sum()
    assert months.idxmax().month in (11, 12), months.to_dict()  # the last 12 full months before as-of


def test_defects_add_rows_but_never_change_the_clean_key_counts(tmp_path):
    generate.write_dataset(GenerateSpec(scale=0.2), tmp_path)
    customers, orders = read(tmp_path, "customers"), read(tmp_path, "orders")
    assert customers["customer_id"].nunique() == 2_000
    assert orders.loc[orders["order_id"] < planting.ORPHAN_ID_OFFSET, "order_id"].nunique() == 10_000


def test_customers_and_orders_scale_linearly_products_do_not():
    spec = GenerateSpec(scale=0.3)
    assert (spec.n_customers, spec.n_orders) == (3_000, 15_000)
    assert shop.products_table(spec).num_rows == 495


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, tiny_raw):
    again, other = tmp_path / "again", tmp_path / "other"
    generate.write_dataset(GenerateSpec(scale=TINY), again)
    generate.write_dataset(GenerateSpec(scale=TINY, seed=7), other)
    for name in [*COLUMNS, "_defects"]:
        assert filecmp.cmp(tiny_raw / f"{name}.csv", again / f"{name}.csv", shallow=False), name
    assert not filecmp.cmp(tiny_raw / "orders.csv", other / "orders.csv", shallow=False)


def test_worker_threads_write_the_same_bytes_as_one_thread(tmp_path, noisy):
    spec, result = noisy
    generate.write_dataset(spec, tmp_path, workers=2)
    for name in [*COLUMNS, "_defects"]:
        assert filecmp.cmp(result.raw_dir / f"{name}.csv", tmp_path / f"{name}.csv", shallow=False), name


def test_files_are_identical_across_processes_with_different_hash_seeds(tmp_path):
    """Faker providers that draw from a set would make names depend on PYTHONHASHSEED."""
    code = ("import sys; from pathlib import Path; from ecompipe import generate as g; "
            "g.write_dataset(g.GenerateSpec(scale=0.01), Path(sys.argv[1]))")
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], check=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    for name in COLUMNS:
        assert filecmp.cmp(tmp_path / "1" / f"{name}.csv", tmp_path / "2" / f"{name}.csv", shallow=False), name


PINNED = {  # sha256 of the files of two specs: a refactoring of the generator must leave them unchanged
    "tiny": {
        "customers.csv": "45a31cf6b5e0e5bb5655236b19db75d515c3413f9d125a4c7a7ca99ba90c1804",
        "products.csv": "e8ddb6af8b0b5b85d3b47209a0379089a4627bd091781f46514e18bb09397a81",
        "orders.csv": "7f3e1470cb97780cda0c9ed028855e3635f981c9a032a88a784132fe2199021b",
        "order_items.csv": "1934cf401300eaf8bcde7fb7fa3b1fe524cb6bc0a0184e69bf4fdb8992b06722",
        "_defects.csv": "7ebb8f7af53fd8844d8fb593bf829fbbc7e416cdf03b32222e9331f4dee006b6",
    },
    "noisy": {
        "customers.csv": "2f448246ed49022c9689d4000028fc492e01ae4a0a56ba07749394022a899805",
        "products.csv": "e8ddb6af8b0b5b85d3b47209a0379089a4627bd091781f46514e18bb09397a81",
        "orders.csv": "2716e3fa7af82fb42720266f734a5991847c85bd1a2703639de0db37cf56baba",
        "order_items.csv": "fb1ec9fc4c30d5c33dbed9357fd7faa0fbcc44e3980b439e4d68fadb89b9d242",
        "_defects.csv": "aeee0b620899207d35b8fbece8c5c84260edde91fb01c4715176e6fcc00039ac",
    },
}


def test_the_files_are_the_pinned_bytes(tiny_raw, noisy):
    folders = {"tiny": tiny_raw, "noisy": noisy[1].raw_dir}
    hashes = {label: {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in PINNED[label]}
              for label, folder in folders.items()}
    assert hashes == PINNED


def test_files_have_the_documented_header(tiny_raw):
    for name, columns in COLUMNS.items():
        assert (tiny_raw / f"{name}.csv").read_text().splitlines()[0] == ",".join(columns)


# ---------------------------------------------------------------- clean data: integrity and domains

def test_keys_are_unique_and_references_resolve(clean_raw):
    customers, products = read(clean_raw, "customers"), read(clean_raw, "products")
    orders, items = read(clean_raw, "orders"), read(clean_raw, "order_items")
    assert orders["order_id"].tolist() == list(range(1, len(orders) + 1))
    assert customers["customer_id"].tolist() == list(range(1, len(customers) + 1))
    assert products["product_id"].is_unique and not items.duplicated(["order_id", "line_no"]).any()
    assert orders["customer_id"].isin(customers["customer_id"]).all()
    assert items["product_id"].isin(products["product_id"]).all()
    assert set(items["order_id"]) == set(orders["order_id"])  # every order has a line
    lines = items.groupby("order_id")["line_no"].agg(["min", "max", "count"])
    assert (lines["min"] == 1).all() and (lines["max"] == lines["count"]).all()


def test_values_fall_in_their_domains(clean_raw):
    spec = GenerateSpec(scale=0.2)
    customers, products = read(clean_raw, "customers"), read(clean_raw, "products")
    orders, items = read(clean_raw, "orders"), read(clean_raw, "order_items")
    assert set(orders["status"]) == set(STATUSES)
    assert set(orders["payment_method"]) == set(PAYMENT_METHODS)
    assert customers["email"].map(lambda e: bool(EMAIL.fullmatch(e))).all()
    assert customers.notna().all().all() and orders.notna().all().all() and items.notna().all().all()
    assert customers["country"].nunique() == 6 and customers["city"].nunique() > 100
    assert (products["unit_cost"] > 0).all() and (products["unit_cost"] < products["unit_price"]).all()
    assert products["category"].nunique() == 11
    assert items["quantity"].between(1, shop.MAX_QUANTITY).all()
    assert ((items["discount"] >= 0) & (items["discount"] <= items["quantity"] * items["unit_price"])).all()
    assert (items["unit_price"] == items["product_id"].map(products.set_index("product_id")["unit_price"])).all()
    ts = pd.to_datetime(orders["order_ts"], utc=True)
    assert ts.min().date() >= spec.first_order_day and ts.max().date() <= spec.as_of
    signup = pd.to_datetime(orders["customer_id"].map(customers.set_index("customer_id")["signup_date"]))
    assert (ts.dt.tz_localize(None).dt.normalize() >= signup).all(), "an order predates its customer's signup"


# ---------------------------------------------------------------- realism (tolerances documented in README)

@pytest.fixture(scope="module")
def revenue(clean_raw):
    orders, items = read(clean_raw, "orders"), read(clean_raw, "order_items")
    items["revenue"] = items["quantity"] * items["unit_price"] - items["discount"]
    orders = orders.join(items.groupby("order_id")["revenue"].sum(), on="order_id")
    orders["ts"] = pd.to_datetime(orders["order_ts"], utc=True)
    return orders


def test_the_seasonal_peak_falls_in_november_or_december(revenue):
    per_day = revenue.groupby(revenue["ts"].dt.date).size()
    per_day.index = pd.to_datetime(per_day.index)
    by_month = per_day.groupby(per_day.index.month).mean()
    assert by_month.idxmax() in (11, 12)
    assert by_month.max() > 1.5 * by_month.min()


def test_volume_grows_about_twenty_percent_a_year(revenue):
    first_year = revenue["ts"] < revenue["ts"].min() + pd.Timedelta(days=365)
    growth = (~first_year).sum() / first_year.sum() - 1
    assert 0.10 <= growth <= 0.30


def test_weekends_and_evenings_are_busier(revenue):
    assert revenue["ts"].dt.day_of_week.value_counts().idxmax() in (4, 5, 6)
    assert revenue["ts"].dt.hour.value_counts().idxmax() in range(18, 22)


def test_the_top_fifth_of_customers_brings_most_revenue(revenue):
    bearing = revenue[revenue["status"].isin(shop.REVENUE_STATUSES)]
    spend = bearing.groupby("customer_id")["revenue"].sum().sort_values(ascending=False)
    top = spend.head(int(len(spend) * 0.2)).sum() / spend.sum()
    assert top >= 0.5
    orders_per_customer = revenue.groupby("customer_id").size()
    assert (orders_per_customer == 1).any() and (orders_per_customer >= 5).any()  # one-time and repeat buyers


def test_status_mix_is_plausible_and_recent_orders_are_open(revenue):
    spec = GenerateSpec(scale=0.2)
    age = (pd.Timestamp(spec.as_of, tz="UTC") - revenue["ts"].dt.normalize()).dt.days
    old = revenue.loc[age >= 7, "status"].value_counts(normalize=True)
    assert 0.85 <= old["delivered"] <= 0.92
    assert 0.03 <= old["cancelled"] <= 0.08 and 0.04 <= old["returned"] <= 0.08
    assert old.get("placed", 0) == 0
    recent = revenue.loc[age <= 1, "status"].value_counts(normalize=True)
    assert recent.get("placed", 0) + recent.get("shipped", 0) >= 0.8


def test_basket_sizes_and_product_popularity(clean_raw):
    items = read(clean_raw, "order_items")
    lines = items.groupby("order_id").size()
    assert lines.max() <= shop.MAX_LINES and 1.8 <= lines.mean() <= 2.2
    assert 0.45 <= (lines == 1).mean() <= 0.55
    share = items["product_id"].value_counts(normalize=True)
    assert share.head(10).sum() > 0.25  # Zipf-like: a few products sell most
    assert items["discount"].gt(0).mean() > 0.05  # promotions happen


# ---------------------------------------------------------------- planted defects against the ledger

def detected(spec: GenerateSpec, raw) -> set[tuple[str, int, str]]:
    """Every defect found in the files by looking, as (file, line, defect); outliers excepted (see below)."""
    found = set()
    frames = {name: read(raw, name) for name in COLUMNS}
    for name, frame in frames.items():
        frame["line"] = frame.index + 2
    customers, orders, items = frames["customers"], frames["orders"], frames["order_items"]

    for name, columns in planting.NULLABLE_REQUIRED.items():
        for line in frames[name].loc[frames[name][list(columns)].isna().any(axis=1), "line"]:
            found.add((f"{name}.csv", line, "null_required"))
    bad_email = customers["email"].notna() & ~customers["email"].fillna("").map(lambda e: bool(EMAIL.fullmatch(e)))
    found |= {("customers.csv", line, "malformed_email") for line in customers.loc[bad_email, "line"]}
    for name, key in KEYS.items():
        dup = frames[name].duplicated(list(key), keep="first")
        found |= {(f"{name}.csv", line, "duplicate_key") for line in frames[name].loc[dup, "line"]}
    orphan = ~orders["customer_id"].isin(customers["customer_id"])
    found |= {("orders.csv", line, "orphan_reference") for line in orders.loc[orphan, "line"]}
    orphan = ~items["product_id"].isin(frames["products"]["product_id"])
    found |= {("order_items.csv", line, "orphan_reference") for line in items.loc[orphan, "line"]}
    bad = (items["quantity"] <= 0) | (items["unit_price"] <= 0)
    found |= {("order_items.csv", line, "nonpositive_value") for line in items.loc[bad, "line"]}

    first = orders.drop_duplicates("order_id")
    first = first[~first["order_id"].duplicated() & first["customer_id"].isin(customers["customer_id"])]
    ts = pd.to_datetime(first["order_ts"], utc=True).dt.tz_localize(None)
    signup = pd.to_datetime(first["customer_id"].map(customers.drop_duplicates("customer_id").set_index("customer_id")["signup_date"]))
    late = ts >= pd.Timestamp(spec.as_of) + pd.Timedelta(days=1)
    found |= {("orders.csv", line, "bad_timestamp") for line in first.loc[late | (ts.dt.normalize() < signup), "line"]}
    return found


def test_every_planted_defect_is_in_the_ledger_and_nothing_else(noisy):
    spec, result = noisy
    ledger = pd.read_csv(result.raw_dir / DEFECTS_FILE)
    planted = {(r.file, r.line, r.defect) for r in ledger.itertuples()
               if r.defect not in ("outlier_amount", "anomalous_day")}  # each checked by a test of its own below
    assert detected(spec, result.raw_dir) == planted
    assert set(ledger["defect"]) == set(DefectRates.model_fields)  # every type planted at these rates


def test_ledger_rows_name_the_right_key_and_column(noisy):
    _, result = noisy
    ledger = pd.read_csv(result.raw_dir / DEFECTS_FILE, dtype={"key": str})
    days = ledger[ledger["defect"] == "anomalous_day"]
    for file, rows in ledger.drop(days.index).groupby("file"):
        frame = pd.read_csv(result.raw_dir / file, dtype=str, keep_default_na=False)
        name = file.removesuffix(".csv")
        at = frame.iloc[rows["line"] - 2]
        keys = at[list(KEYS[name])].agg("|".join, axis=1).tolist()
        assert keys == rows["key"].tolist(), file
        assert set(rows["column"]) <= set(COLUMNS[name]) | {"amount"}
    # a day's key is its date, at the line of its first order (of the next day's, when an outage left none)
    orders = pd.read_csv(result.raw_dir / "orders.csv", dtype=str)
    at = orders.iloc[days["line"] - 2]["order_ts"].str[:10].to_numpy()
    before = orders.iloc[days["line"] - 3]["order_ts"].str[:10].to_numpy()
    assert len(days) > 0 and (before < days["key"].to_numpy()).all() and (at >= days["key"].to_numpy()).all()


def test_outliers_are_ten_to_fifty_times_a_typical_order(noisy):
    _, result = noisy
    items = read(result.raw_dir, "order_items")
    items["amount"] = items["quantity"] * items["unit_price"]
    amount = items.drop_duplicates(["order_id", "line_no"]).groupby("order_id")["amount"].sum()
    ledger = pd.read_csv(result.raw_dir / DEFECTS_FILE)
    outliers = amount[ledger.loc[ledger["defect"] == "outlier_amount", "key"].astype(int)]
    assert len(outliers) > 5
    assert (outliers / amount.median()).between(7, 60).all()  # medians differ a little between chunks and the whole


def test_timestamp_slips_stay_in_the_history_and_clear_of_any_time_zone(noisy):
    """Before a signup: two to seven days before it, inside the history window. After as-of: two days or more."""
    spec, result = noisy
    ledger = pd.read_csv(result.raw_dir / DEFECTS_FILE)
    slips = ledger[ledger["defect"] == "bad_timestamp"]
    orders = read(result.raw_dir, "orders").drop_duplicates("order_id").set_index("order_id")
    customers = read(result.raw_dir, "customers").drop_duplicates("customer_id").set_index("customer_id")
    early = orders.loc[slips.loc[slips["detail"] == "before the signup", "key"].astype(int)]
    late = orders.loc[slips.loc[slips["detail"] == "after the as-of date", "key"].astype(int)]
    assert len(early) > 5 and len(late) > 5
    day = pd.to_datetime(early["order_ts"], utc=True).dt.tz_localize(None).dt.normalize()
    signup = pd.to_datetime(early["customer_id"].map(customers["signup_date"]))
    assert ((signup - day).dt.days.between(2, 7)).all()
    assert (day >= pd.Timestamp(spec.first_order_day)).all(), "a slip before the history window"
    late_day = pd.to_datetime(late["order_ts"], utc=True).dt.tz_localize(None)
    assert (late_day >= pd.Timestamp(spec.as_of) + pd.Timedelta(days=3)).all()


def test_defect_counts_follow_their_rates(noisy):
    spec, result = noisy
    assert 0.5 * 0.01 * spec.n_customers <= result.defects["malformed_email"] <= 1.5 * 0.01 * spec.n_customers
    assert result.defects == pd.read_csv(result.raw_dir / DEFECTS_FILE)["defect"].value_counts().to_dict()


def test_clean_data_has_no_defect_of_any_type(clean_raw):
    assert pd.read_csv(clean_raw / DEFECTS_FILE).empty
    assert detected(GenerateSpec(scale=0.2), clean_raw) == set()


def test_the_same_seed_plants_the_same_defects(tmp_path, noisy):
    spec, result = noisy
    generate.write_dataset(spec, tmp_path, workers=1)
    assert filecmp.cmp(result.raw_dir / DEFECTS_FILE, tmp_path / DEFECTS_FILE, shallow=False)


def test_the_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        GenerateSpec(scale=0)
    with pytest.raises(ValueError):
        DefectRates(duplicate_key=0.9)
    with pytest.raises(ValueError):
        DefectRates(typo=0.1)

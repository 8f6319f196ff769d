"""Anomalies, measured against the anomalies the generator planted (the ledger), not just run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import anomalies, defects, generate, ingest, transform, warehouse
from ecompipe.generate import DefectRates, GenerateSpec
from ecompipe.rawformat import DEFECTS_FILE

NONE = {d.name: 0.0 for d in defects.CATALOGUE}


def load(engine, raw, spec: GenerateSpec) -> None:
    generate.write_dataset(spec, raw)
    ingest.load(raw, engine, as_of=spec.as_of, scale=spec.scale, seed=spec.seed)
    transform.build(engine)


def detected(engine) -> dict[tuple[str, str], anomalies.Detection]:
    found, _, _ = anomalies.detect(engine)
    return {(d.kind, d.method): d for d in found}


def caught(detection: anomalies.Detection, raw, defect: str) -> tuple[int, int, int]:
    """(flagged, planted, flagged that were planted), matched on the ledger's keys independently."""
    ledger = pd.read_csv(raw / DEFECTS_FILE, dtype={"key": str})
    truth = set(ledger.loc[ledger["defect"] == defect, "key"])
    flagged = set(detection.flagged["key"].astype(str))
    return len(flagged), len(truth), len(flagged & truth)


def test_robust_scale_falls_back_when_most_values_are_equal():
    center, scale = anomalies.robust(np.array([0, 0, 0, 0, 0, 0, 1.0, 2.0]))
    assert center == 0 and scale == pytest.approx(1.2533 * 3 / 8)
    center, scale = anomalies.robust(np.array([1.0, 2, 3, 4, 100]))
    assert center == 3 and scale == pytest.approx(1.4826)
    center, _ = anomalies.robust(np.array([1.0, 5.0]), weights=np.array([1, 3]))
    assert center == 5.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_robust_method_finds_planted_outlier_orders_at_scale_1(engine, tmp_path, seed):
    """Targets: recall >= 0.95 and precision >= 0.8, for seeds 1 to 5, default rates; the z-score beside it."""
    load(engine, tmp_path, GenerateSpec(scale=1, seed=seed))
    found = detected(engine)
    flagged, planted, hit = caught(found["order_amount", "robust"], tmp_path, "outlier_amount")
    assert planted > 20
    assert hit / planted >= 0.95, f"recall {hit}/{planted}"
    assert hit / flagged >= 0.8, f"precision {hit}/{flagged}"
    z_flagged, _, z_hit = caught(found["order_amount", "z-score"], tmp_path, "outlier_amount")
    assert z_hit / z_flagged < 0.2  # the baseline drowns in ordinary large orders


def test_planted_days_stand_out_and_retail_events_do_not(engine, tmp_path):
    """At scale 2 (about 140 orders a day) the planted outages and surges are the only days flagged."""
    load(engine, tmp_path, GenerateSpec(scale=2, seed=3, defects=DefectRates(**{**NONE, "anomalous_day": 0.011})))
    days, scored = anomalies.daily_robust(anomalies.daily_series(engine))
    flagged, planted, hit = caught(days, tmp_path, "anomalous_day")
    assert planted == 8 and hit >= 7 and flagged == hit
    events = scored[scored["event"] != ""]
    assert events["score"].notna().sum() > 40, "event days were not judged at all"
    assert (events["score"].dropna().abs() <= anomalies.DAY_Z).all()


def test_clean_data_flags_no_day_and_calls_its_large_orders_natural_extremes(engine, tmp_path):
    load(engine, tmp_path, GenerateSpec(scale=1, clean=True))
    found = detected(engine)
    assert found["daily_revenue", "robust"].flagged.empty
    checks = anomalies.against_ledger(list(found.values()), warehouse.planted_defects(engine))
    assert (checks["planted"] == 0).all()
    said = anomalies.in_words(checks)
    assert "natural extremes" in said and "precision" not in said


def test_without_a_ledger_there_is_no_ground_truth(engine, tmp_path):
    load(engine, tmp_path, GenerateSpec(scale=0.1))
    (tmp_path / DEFECTS_FILE).unlink()
    checks = anomalies.against_ledger(list(detected(engine).values()), warehouse.planted_defects(engine))
    assert checks["planted"].isna().all()
    assert anomalies.in_words(checks).count("no ground truth") == 4


def test_too_few_days_are_said_so_not_failed(engine, tmp_path):
    spec = GenerateSpec(scale=0.05, history_days=10, signup_lead_days=30)
    load(engine, tmp_path, spec)
    found = detected(engine)
    assert "too few" in found["daily_revenue", "robust"].note
    assert found["daily_revenue", "robust"].flagged.empty


def test_flagged_rows_and_checks_are_stored_per_run(engine, tmp_path):
    load(engine, tmp_path, GenerateSpec(scale=0.5, seed=2))
    found = list(detected(engine).values())
    checks = anomalies.against_ledger(found, warehouse.planted_defects(engine))
    anomalies.store(engine, "anomalies-run", found, checks)
    anomalies.store(engine, "anomalies-run", found, checks)  # a rerun replaces its own rows
    with engine.connect() as conn:
        stored = pd.read_sql(sa.text("select * from anomalies where run_id = 'anomalies-run'"), conn)
    assert len(stored) == sum(len(d.flagged) for d in found) > 0
    assert set(stored["kind"]) == {"order_amount", "daily_revenue"} or set(stored["kind"]) == {"order_amount"}
    assert stored[["key", "metric", "value", "expected", "score", "method", "threshold", "reason"]].notna().all().all()
    for d in found:  # every value as detected: numbers to the last digit, reasons with their commas
        rows = stored[(stored["kind"] == d.kind) & (stored["method"] == d.method)].set_index("key").loc[d.flagged["key"]]
        assert (rows["threshold"].astype(float) == d.threshold).all()
        assert rows["reason"].tolist() == d.flagged["reason"].tolist()
        for column in ("value", "expected", "score"):
            assert rows[column].astype(float).tolist() == d.flagged[column].astype(float).tolist(), column
    record = anomalies.record(engine, "anomalies-run")
    assert {c["method"] for c in record["checks"]} == {"z-score", "robust"} and len(record["checks"]) == 4


def test_the_amount_statistics_read_from_bins_match_the_orders_themselves(engine, tmp_path):
    """One binned scan stands in for sorting every order: the z-score's mean and deviation are exact, the robust
    median and MAD within the bins' width, and the chart's histogram counts every order with revenue."""
    load(engine, tmp_path, GenerateSpec(scale=0.2, seed=4))
    revenue = pd.read_sql("select revenue::float as r from order_totals where revenue > 0", engine)["r"]
    bins = anomalies.amount_bins(engine)
    zscore = anomalies.amount_zscore(engine, bins)
    assert zscore.cut == pytest.approx(revenue.mean() + anomalies.Z * revenue.std(), rel=1e-9)
    assert set(zscore.flagged["key"].astype(int)) == set(
        pd.read_sql("select order_id, revenue::float as r from order_totals where revenue > 0", engine)
        .query(f"abs(r - {revenue.mean()}) > {anomalies.Z * revenue.std()}")["order_id"])
    center, scale = anomalies.robust(bins["log"].to_numpy(), bins["orders"].to_numpy())
    exact_center, exact_scale = anomalies.robust(np.log(revenue.to_numpy()))
    assert abs(center - exact_center) <= anomalies.LOG_BIN
    assert abs(scale - exact_scale) <= 1.4826 * 2 * anomalies.LOG_BIN
    histogram = anomalies.amount_histogram(bins)
    assert histogram["orders"].sum() == len(revenue)
    assert histogram["low"].min() <= revenue.min() and histogram["high"].max() >= revenue.max()

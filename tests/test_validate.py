"""Validation: the suites load as written, and the scores are proven against the defects we planted.

The exact-match tests read the generator's ledger (raw/_defects.csv) and the defect catalogue, and place each
row a rule flags in its raw file themselves, independently of ecompipe.validate's own comparison.
"""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import defects, generate, ingest, report, transform, validate
from ecompipe.generate import DefectRates, GenerateSpec
from ecompipe.rawformat import DEFECTS_FILE, KEYS

from conftest import ecompipe

SCALE = 0.2  # 2,000 customers and 10,000 orders: every defect type planted at its default rate
NONE = {d.name: 0.0 for d in defects.CATALOGUE}


def build(engine, raw, spec: GenerateSpec) -> list[validate.Result]:
    generate.write_dataset(spec, raw)
    ingest.load(raw, engine, as_of=spec.as_of, scale=spec.scale, seed=spec.seed)
    transform.build(engine)
    return validate.run(engine, validate.load_suites())


def flagged(results: list[validate.Result]) -> dict[str, set]:
    """Per dimension, where the rows its rules flagged sit: (raw file, key) or (raw file path, line)."""
    out: dict[str, set] = {}
    for r in results:
        for key in r.keys:
            if r.suite == "quarantine":
                place = (key["source_file"], int(key["line"]))
            else:
                table = "orders" if r.suite == "order_totals" else r.suite
                place = (f"{table}.csv", "|".join(str(key[c]) for c in KEYS.get(table, key)))
            out.setdefault(r.dimension, set()).add(place)
    return out


def planted_places(raw) -> pd.DataFrame:
    ledger = pd.read_csv(raw / DEFECTS_FILE, dtype={"key": str})
    ledger["place"] = list(zip(ledger["file"], ledger["key"]))
    ledger["line_place"] = [(str(raw / f), int(n)) for f, n in zip(ledger["file"], ledger["line"])]
    ledger["dimension"] = ledger["defect"].map({d.name: d.dimension for d in defects.CATALOGUE})
    return ledger


def assert_exact(results, raw) -> pd.DataFrame:
    """No false alarm and no miss; return the ledger."""
    ledger = planted_places(raw)
    found = flagged(results)
    everything = set(ledger["place"]) | set(ledger["line_place"])
    alarms = {(dim, p) for dim, places in found.items() for p in places if p not in everything}
    assert not alarms, f"flagged rows that are no planted defect: {sorted(alarms)[:10]}"
    for row in ledger[ledger["dimension"].notna()].itertuples():
        mine = found.get(row.dimension, set())
        assert row.place in mine or row.line_place in mine, f"missed: {row.defect} at {row.file} line {row.line}"
    for r in results:
        if r.expectation == "expect_no_unexpected_rows":  # rows come back 200 at most: compare only below that
            assert r.unexpected_count <= 200 and len(r.keys) == r.unexpected_count, r.description
    return ledger


@pytest.fixture(scope="module")
def default_run(engine, tmp_path_factory):
    raw = tmp_path_factory.mktemp("validate") / "raw"
    return raw, build(engine, raw, GenerateSpec(scale=SCALE))


# ---------------------------------------------------------------- the suites

def test_every_suite_loads_from_json_with_a_dimension_a_sentence_and_a_severity_per_rule():
    suites = validate.load_suites()
    names = {s.name for s in suites}
    assert names == {"customers", "products", "orders", "order_items", "order_totals", "customer_summary",
                     "product_summary", "daily_sales_summary", "monthly_sales_summary", "quarantine"}
    for suite in suites:
        raw = json.loads((validate.SUITES_DIR / f"{suite.name}.json").read_text())
        assert len(suite.gx_suite.expectations) == len(raw["expectations"]) > 0
        for e in suite.gx_suite.expectations:
            assert e.meta["dimension"] in defects.DIMENSIONS and e.severity.value in ("critical", "warning")
            assert e.meta["description"].endswith(".") and "severity" not in e.meta
        assert (validate.SUITES_DIR / f"{suite.name}.json").read_text().count("\n") > 10  # pretty-printed
    dimensions = {e["meta"]["dimension"] for s in suites for e in s.entries}
    assert dimensions == set(defects.DIMENSIONS)


BAD_ENTRIES = {
    "an unknown type, which GX drops with a log line": (
        {"type": "expect_column_values_to_be_email", "kwargs": {"column": "email"}}, "expect_column_values_to_be_email"),
    "a misspelt argument, which makes GX refuse the whole suite": (
        {"type": "expect_column_values_to_be_unique", "kwargs": {"colum": "email"}}, "colum"),
    "no dimension": ({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "email"}, "meta": {}},
                     "meta needs a dimension"),
    "the description of another rule, whose results it would take": (
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "email"}, "meta": {
            "dimension": "uniqueness",
            "description": json.loads((validate.SUITES_DIR / "customers.json").read_text())["expectations"][0][
                "meta"]["description"]}}, "the description of expectation 1"),
}


@pytest.mark.parametrize("case", BAD_ENTRIES, ids=list(BAD_ENTRIES))
def test_an_invalid_entry_fails_loading_and_is_named(tmp_path, case):
    entry, said = BAD_ENTRIES[case]
    entry = {"meta": {"dimension": "validity", "description": "A rule."}, "severity": "warning", **entry}
    suite = json.loads((validate.SUITES_DIR / "customers.json").read_text())
    suite["expectations"].append(entry)
    (tmp_path / "customers.json").write_text(json.dumps(suite, indent=2))
    with pytest.raises(validate.SuiteError, match=rf"customers\.json, expectation {len(suite['expectations'])} .*"):
        validate.load_suites(["customers"], folder=tmp_path)
    with pytest.raises(validate.SuiteError) as refused:
        validate.load_suites(["customers"], folder=tmp_path)
    assert said in str(refused.value)


def with_rule(tmp_path, name: str, entry: dict):
    """A copy of the suites in ``tmp_path``, with ``entry`` added to the suite ``name``; return its folder."""
    folder = tmp_path / "suites"
    shutil.copytree(validate.SUITES_DIR, folder)
    path = folder / f"{name}.json"
    suite = json.loads(path.read_text())
    suite["expectations"].append(entry)
    path.write_text(json.dumps(suite, indent=2))
    return folder


def test_a_suite_whose_keys_are_not_columns_of_its_table_is_refused_before_it_runs(engine, default_run, tmp_path):
    """The keys are asked of GX only for rules that found rows: a wrong one must not wait for bad data."""
    folder = tmp_path / "suites"
    shutil.copytree(validate.SUITES_DIR, folder)
    suite = json.loads((folder / "products.json").read_text())
    suite["meta"]["keys"] = ["product_number"]
    (folder / "products.json").write_text(json.dumps(suite, indent=2))
    with pytest.raises(validate.SuiteError, match=r"products\.json: meta\.keys: product_number is not a column of "
                                                  r"products"):
        validate.run(engine, validate.load_suites(["products", "orders"], folder=folder))


def test_a_rule_added_to_a_json_file_is_run_and_scored_with_no_code_change(engine, default_run, tmp_path):
    folder = with_rule(tmp_path, "products", {
        "type": "expect_column_values_to_be_between", "kwargs": {"column": "unit_price", "max_value": 100},
        "meta": {"dimension": "validity", "description": "No product costs more than 100."}, "severity": "warning"})
    results = validate.run(engine, validate.load_suites(["products"], folder=folder))
    (added,) = [r for r in results if r.description == "No product costs more than 100."]
    with engine.connect() as conn:
        dear = conn.scalar(sa.text("select count(*) from products where unit_price > 100"))
    assert not added.success and added.unexpected_count == dear > 0
    assert added.element_count == 495 and {k["product_id"] for k in added.keys} and len(added.keys) == dear
    validity = validate.scores(results).set_index("dimension").loc["validity"]
    assert validity["unexpected_count"] == dear and validity["score"] < 100


def test_a_rule_over_rows_runs_its_query_once_and_counts_every_row_it_returns_200_of(engine, default_run, tmp_path):
    """GX's own rule over rows runs its query twice, for the rows and for their count."""
    folder = with_rule(tmp_path, "orders", {
        "type": "expect_no_unexpected_rows",
        "kwargs": {"unexpected_rows_query": "select order_id from {batch} where mod(order_id, 7) = 0"},
        "meta": {"dimension": "validity", "description": "No order id is a multiple of 7."}, "severity": "warning"})
    ran = []

    def seen(conn, cursor, statement, *args):
        if "mod(order_id, 7)" in statement:
            ran.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        results = validate.run(engine, validate.load_suites(["orders"], folder=folder))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    (added,) = [r for r in results if r.description == "No order id is a multiple of 7."]
    with engine.connect() as conn:
        sevenths = conn.scalar(sa.text("select count(*) from orders where mod(order_id, 7) = 0"))
    assert len(ran) == 1
    assert not added.success and added.unexpected_count == sevenths > 200
    assert len(added.keys) == 200 and all(k["order_id"] % 7 == 0 for k in added.keys)
    assert len(added.sample) == validate.SAMPLE


def test_a_column_rule_that_passes_fetches_no_rows_and_one_that_fails_lists_its_keys_in_one_query(
        engine, default_run, tmp_path):
    """Asked for every unexpected row's key in a validation, GX counts again and lists the values apart, each a
    full scan: the counts come first, in one query with the other rules', then the keys alone where there are
    some."""
    everything, early = "^[^~]*zzq?$|.", "^[A-G]"  # every category matches the first; a few match the second
    folder = with_rule(tmp_path, "products", {
        "type": "expect_column_values_to_match_regex", "kwargs": {"column": "category", "regex": everything},
        "meta": {"dimension": "validity", "description": "Every category is text."}, "severity": "warning"})
    suite = json.loads((folder / "products.json").read_text())
    suite["expectations"].append({
        "type": "expect_column_values_to_match_regex", "kwargs": {"column": "category", "regex": early},
        "meta": {"dimension": "validity", "description": "Categories start early."}, "severity": "warning"})
    (folder / "products.json").write_text(json.dumps(suite))
    ran = []

    def seen(conn, cursor, statement, parameters, *args):
        ran.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        results = validate.run(engine, validate.load_suites(["products"], folder=folder))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    def may_return_rows(statement, parameters):
        limit = re.search(r"LIMIT %\((\w+)\)s", statement)
        return not limit or parameters[limit.group(1)] > 0

    def carrying(regex):
        return [s for s, p in ran if regex in dict(p or {}).values() and may_return_rows(s, p)]

    assert len(carrying(everything)) == 1 and "unexpected_count" in carrying(everything)[0]  # its count, with others
    counted, listed = carrying(early)  # its count, then its keys with its value
    assert "unexpected_count" in counted and re.match(r"SELECT product_id, category\s", listed)
    passed, failed = (next(r for r in results if r.description == d)
                      for d in ("Every category is text.", "Categories start early."))
    with engine.connect() as conn:
        late = set(conn.scalars(sa.text("select product_id from products where category !~ :r"), {"r": early}))
    assert passed.success and passed.unexpected_count == 0 and not passed.keys
    assert not failed.success and failed.unexpected_count == len(late) > 0
    assert {k["product_id"] for k in failed.keys} == late and len(failed.keys) == len(late)


def test_a_failing_rule_over_compound_columns_lists_the_repeated_values(engine, default_run, tmp_path):
    """GX lists no keys for compound columns in SQL: the rows' values stand in for them."""
    folder = with_rule(tmp_path, "products", {
        "type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["category", "unit_price"]},
        "meta": {"dimension": "uniqueness", "description": "No two products share a category and a price."},
        "severity": "warning"})
    result = next(r for r in validate.run(engine, validate.load_suites(["products"], folder=folder))
                  if r.description == "No two products share a category and a price.")
    with engine.connect() as conn:
        repeated = conn.execute(sa.text("""
            select category, unit_price::float from products where (category, unit_price) in (
                select category, unit_price from products group by 1, 2 having count(*) > 1)""")).all()
    assert not result.success and result.unexpected_count == len(repeated) > 0
    assert len(result.sample) == min(len(repeated), validate.SAMPLE)
    assert {(r["category"], float(r["unit_price"])) for r in result.sample} <= set(repeated)


# ---------------------------------------------------------------- proven against the ledger

def test_every_flagged_row_is_a_planted_defect_and_every_planted_defect_is_flagged(default_run):
    raw, results = default_run
    ledger = assert_exact(results, raw)
    assert set(ledger["defect"]) == {d.name for d in defects.CATALOGUE}, "some type was not planted at this scale"


def test_the_library_comparison_agrees(engine, default_run):
    _, results = default_run
    report = validate.ledger_report(engine, results)
    assert (report["missed"] == 0).all() and (report["false alarms in the dimension"] == 0).all()
    assert set(report.index) == {d.name for d in defects.CATALOGUE if d.dimension}


def test_scores_are_the_share_of_values_checked_that_pass(default_run):
    _, results = default_run
    table = validate.scores(results).set_index("dimension")
    for dimension in defects.DIMENSIONS:
        mine = [r for r in results if r.dimension == dimension]
        checked, bad = sum(r.element_count for r in mine), sum(r.unexpected_count for r in mine)
        assert table.loc[dimension, "score"] == round(100 * (1 - bad / checked), 2)
        assert 99 < table.loc[dimension, "score"] < 100
    assert table["overall_score"].iloc[0] == round(table["score"].mean(), 2) and table["grade"].iloc[0] == "A"


def test_a_rule_over_the_quarantine_counts_against_the_rows_read_from_its_file(engine, default_run):
    _, results = default_run
    (orphans,) = [r for r in results if r.suite == "quarantine" and "orders.csv" in r.description
                  and r.dimension == "consistency"]
    with engine.connect() as conn:
        read = conn.scalar(sa.text("""select (f ->> 'read')::int from ingest_loads, jsonb_array_elements(files) f
                                      where f ->> 'table' = 'orders' order by load_id desc limit 1"""))
        refused = conn.scalar(sa.text("select count(*) from quarantine where table_name = 'orders' "
                                      "and 'orphan' = any(rules)"))
    assert (orphans.element_count, orphans.unexpected_count) == (read, refused) and refused > 0


def test_a_validation_leaves_no_connection_open(engine, default_run):
    """GX's engines keep their pooled connections until collected; a long process (the tests, a scheduler's
    worker) validating again and again ran the server out of connections."""
    def others() -> int:
        with engine.connect() as conn:
            return conn.scalar(sa.text("select count(*) from pg_stat_activity "
                                       "where backend_type = 'client backend' and pid <> pg_backend_pid()"))

    before = others()
    validate.run(engine, validate.load_suites(["products", "orders"]))
    assert others() == before


def test_great_expectations_sessions_run_without_parallel_workers_and_keep_the_urls_options(monkeypatch):
    url = sa.make_url("postgresql+psycopg2://me:secret@/shop?host=/tmp/socket&options=-c%20search_path%3Dshop")
    made = sa.make_url(validate.gx_url(url))
    assert made.query["options"] == "-c search_path=shop -c max_parallel_workers_per_gather=0"
    assert (made.password, made.query["host"], made.database) == ("secret", "/tmp/socket", "shop")
    monkeypatch.setenv("ECOMPIPE_VALIDATE_PARALLEL_WORKERS", "2")
    assert sa.make_url(validate.gx_url(url.difference_update_query(["options"]))).query["options"] == \
        "-c max_parallel_workers_per_gather=2"


@pytest.mark.parametrize("grade_for", [(100, "A"), (95, "A"), (94.99, "B"), (90, "B"), (80, "C"), (70, "D"), (69.9, "F")])
def test_grades(grade_for):
    score, letter = grade_for
    assert validate.grade(score) == letter


@pytest.mark.parametrize("defect", [d.name for d in defects.CATALOGUE if d.dimension])
def test_one_defect_type_alone_lowers_only_its_dimension_by_what_was_planted(engine, tmp_path, defect):
    spec = GenerateSpec(scale=0.1, defects=DefectRates(**{**NONE, defect: 0.01}))
    results = build(engine, tmp_path, spec)
    assert_exact(results, tmp_path)
    table = validate.scores(results).set_index("dimension")
    mine = defects.BY_NAME[defect].dimension
    assert table.loc[mine, "score"] < 100
    assert (table.drop(index=mine)["score"] == 100).all(), table["score"].to_dict()
    planted = len(pd.read_csv(tmp_path / DEFECTS_FILE))
    assert table.loc[mine, "unexpected_count"] >= planted > 0  # a defect may break two rules (a zero quantity,
    # its discount), never fewer than one


def test_clean_data_scores_100_in_every_dimension_with_no_failed_rule(engine, tmp_path):
    results = build(engine, tmp_path, GenerateSpec(scale=0.1, clean=True))
    table = validate.scores(results)
    assert (table["score"] == 100).all() and table["grade"].iloc[0] == "A"
    assert all(r.success for r in results), [r.description for r in results if not r.success]


def test_dates_are_compared_with_as_of_in_the_session_time_zone(engine, tmp_path):
    """Kiritimati is UTC+14: orders late on the as-of day (UTC) fall after it there, and the rule says so."""
    spec = GenerateSpec(scale=0.1, clean=True)
    generate.write_dataset(spec, tmp_path)
    ingest.load(tmp_path, engine, as_of=spec.as_of)
    with engine.begin() as conn:
        conn.execute(sa.text("alter database ecompipe set timezone = 'Pacific/Kiritimati'"))
    engine.dispose()  # new sessions take the database's zone
    try:
        transform.build(engine)
        results = validate.run(engine, validate.load_suites(["order_totals"]))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("alter database ecompipe reset timezone"))
        engine.dispose()
    orders = pd.read_csv(tmp_path / "orders.csv")
    local = pd.to_datetime(orders["order_ts"], utc=True).dt.tz_convert("Pacific/Kiritimati").dt.date
    late = set(orders.loc[local > spec.as_of, "order_id"])
    (rule,) = [r for r in results if "after the data's as-of date" in r.description]
    assert late and {k["order_id"] for k in rule.keys} == late and rule.unexpected_count == len(late)


def test_no_ledger_no_claim(engine, tmp_path):
    generate.write_dataset(GenerateSpec(scale=0.02), tmp_path)
    (tmp_path / DEFECTS_FILE).unlink()  # what someone's own files look like
    ingest.load(tmp_path, engine)
    transform.build(engine)
    results = validate.run(engine, validate.load_suites())
    assert validate.ledger_report(engine, results).startswith("No ground truth")


def test_results_and_scores_are_stored_per_run_and_a_retry_replaces_its_own(engine, default_run):
    _, results = default_run
    validate.store(engine, "run-a", results)
    validate.store(engine, "run-a", [r for r in results if r.suite == "orders"])  # a retried part
    validate.store_scores(engine, "run-a", validate.scores(results))
    again = validate.stored(engine, "run-a")
    assert len(again) == len(results)
    assert {(r.suite, r.description, r.unexpected_count) for r in again} == \
           {(r.suite, r.description, r.unexpected_count) for r in results}
    assert all(len(r.sample) <= validate.SAMPLE for r in again)
    failed = next(r for r in again if not r.success and r.suite == "orders")
    assert failed.sample and "order_id" in failed.sample[0]
    history = report.quality_history(engine)
    assert set(history.loc[history["run_id"] == "run-a", "dimension"]) == set(defects.DIMENSIONS)


def test_fail_on_names_the_failed_rules_in_one_line(default_run):
    _, results = default_run
    validate.check(results, "none")
    with pytest.raises(validate.QualityFailed) as failed:
        validate.check(results, "critical")
    message = str(failed.value)
    assert "\n" not in message and "critical expectation(s) failed" in message
    assert "order_items: Every quantity is above 0." in message
    assert "customers: Every email address" not in message  # a warning
    with pytest.raises(validate.QualityFailed, match="customers: Every email address"):
        validate.check(results, "any")


def test_the_stage_fails_on_planted_critical_defects_and_names_them(isolated_settings):
    done = ecompipe("run", "--scale", "0.05", "--fail-on", "critical", "--run-id", "strict")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "stage validate failed" in last and "QualityFailed" in last and "critical expectation(s) failed" in last
    manifest = json.loads((isolated_settings.run_dir("strict") / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["quality"]["grade"] in "ABCDF"
    assert any(f["severity"] == "critical" for f in manifest["quality"]["failed"])

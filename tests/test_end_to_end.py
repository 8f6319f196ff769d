"""End to end: `ecompipe run` at a tiny scale through papermill, as a user runs it."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from datetime import datetime

import matplotlib
import nbformat
import pandas as pd
import pytest
import sqlalchemy as sa

from ecompipe import STAGES, defects, generate, rawformat, transform
from ecompipe.charts import WIDE
from ecompipe.settings import Settings
from ecompipe.rawformat import COLUMNS

from conftest import TINY, ecompipe, fingerprint


@pytest.fixture(scope="module")
def two_runs(isolated_settings):
    """The whole pipeline, then the same data generated and loaded again: the same seed, the same files."""
    done = [ecompipe("run", "--scale", str(TINY), "--seed", "42", "--run-id", "e2e-1"),
            ecompipe("run", "--scale", str(TINY), "--seed", "42", "--run-id", "e2e-2", "--stages", "generate,ingest")]
    return done, [json.loads((isolated_settings.run_dir(f"e2e-{i}") / "manifest.json").read_text()) for i in (1, 2)]


def test_run_succeeds_and_says_where_its_outputs_are(two_runs, isolated_settings):
    done, _ = two_runs
    for i, result in enumerate(done, start=1):
        assert result.returncode == 0, result.stderr
        assert "Run e2e-%d succeeded." % i in result.stdout
        assert str(isolated_settings.run_dir(f"e2e-{i}") / "manifest.json") in result.stdout


def test_every_stage_notebook_is_executed_without_errors(two_runs, isolated_settings):
    run_dir = isolated_settings.run_dir("e2e-1")
    for name in (Settings().notebook(stage).stem for stage in STAGES):
        executed = nbformat.read(run_dir / f"{name}.ipynb", as_version=4)
        code = [c for c in executed.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{name}: a cell did not run"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"]
        if name != "03_transform":  # 03 takes no run parameter: papermill injects nothing there
            injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
            assert injected and 'run_id = "e2e-1"' in injected[0].source
    assert charts(run_dir / "01_generate.ipynb"), "01_generate shows no chart"
    assert len(charts(run_dir / "03_transform.ipynb")) >= 5, "03_transform shows fewer than five charts"


def charts(notebook) -> list:
    return [o for c in nbformat.read(notebook, as_version=4).cells
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def test_charts_are_drawn_once_each_image_its_whole_figure(two_runs, isolated_settings):
    """Jupyter's inline backend crops a figure to its tight bounding box, drawing it twice; the notebooks turn
    that off (``charts.inline``) and their figures lay themselves out, so an image is its figure, uncropped."""
    from PIL import Image

    def sizes(notebook) -> list[tuple[int, int]]:
        return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).size for o in charts(notebook)]

    def pixels(inches) -> tuple[int, int]:
        return tuple(round(side * matplotlib.rcParams["figure.dpi"]) for side in inches)

    run_dir = isolated_settings.run_dir("e2e-1")
    assert set(sizes(run_dir / "01_generate.ipynb")) == {pixels(matplotlib.rcParams["figure.figsize"])}
    assert sizes(run_dir / "03_transform.ipynb")[:3] == [pixels(WIDE)] * 3  # top customers, months, Pareto


def test_manifest_records_the_run(two_runs):
    _, (manifest, _) = two_runs
    spec = generate.GenerateSpec(scale=TINY)
    assert manifest["run_id"] == "e2e-1" and manifest["status"] == "succeeded"
    assert manifest["finished_at"] >= manifest["started_at"]
    assert manifest["parameters"] == {"run_id": "e2e-1", "scale": TINY, "seed": 42, "as_of": "2026-11-24",
                                      "increment": False, "clean": False, "defect_rates": {}, "raw_dir": "",
                                      "force": False, "fail_on": "none"}
    assert [(s["name"], s["status"], s["notebook"]) for s in manifest["stages"]] == [
        (stage, "succeeded", f"outputs/runs/e2e-1/{Settings().notebook(stage).name}") for stage in STAGES]
    assert all(s["seconds"] > 0 for s in manifest["stages"])
    assert set(manifest["files"]) == {f"{t}.csv" for t in COLUMNS} | {"_defects.csv"}
    assert all(h.startswith("sha256:") and len(h) == 71 for h in manifest["files"].values())
    assert manifest["row_counts"]["customers"] == spec.n_customers
    assert manifest["row_counts"]["products"] == 495
    assert manifest["row_counts"]["orders"] == spec.n_orders
    assert manifest["row_counts"]["customer_summary"] == spec.n_customers
    assert manifest["row_counts"]["order_totals"] == spec.n_orders
    assert set(transform.TABLES) <= set(manifest["row_counts"])
    assert {"python", "pandas", "papermill", "ecompipe"} <= set(manifest["packages"])


def test_manifest_counts_planted_defects_and_reconciles_ingest(two_runs, isolated_settings):
    _, (manifest, _) = two_runs
    ledger = pd.read_csv(isolated_settings.run_dir("e2e-1") / "raw" / rawformat.DEFECTS_FILE)
    assert manifest["defects"] == ledger["defect"].value_counts().sort_index().to_dict()
    assert sum(manifest["defects"].values()) > 0
    files = {f["table"]: f for f in manifest["ingest"]["files"]}
    assert set(files) == set(COLUMNS)
    assert all(f["read"] == f["loaded"] + f["quarantined"] for f in files.values())
    hard = ledger[ledger["defect"].isin(defects.HARD)]
    assert sum(f["quarantined"] for f in files.values()) == len(hard)
    assert files["orders"]["loaded"] == manifest["row_counts"]["orders"]


def test_the_same_seed_records_identical_file_hashes(two_runs):
    _, (first, second) = two_runs
    assert first["files"] == second["files"]


def test_the_warehouse_holds_what_was_generated(two_runs, engine):
    _, (manifest, _) = two_runs
    with engine.connect() as conn:
        counts = {t: conn.scalar(sa.text(f"select count(*) from {t}")) for t in (*COLUMNS, *transform.TABLES)}
    assert counts == manifest["row_counts"]
    assert counts["customer_summary"] == counts["customers"] and counts["order_totals"] == counts["orders"]


def test_transform_alone_rebuilds_the_marts_of_the_last_run(two_runs, isolated_settings, engine):
    _, (_, last) = two_runs
    before = fingerprint(engine, (*transform.TABLES, *transform.VIEWS))
    done = ecompipe("run", "--stages", "transform", "--run-id", "transform-only")
    assert done.returncode == 0, done.stderr
    assert "Run transform-only succeeded." in done.stdout
    run_dir = isolated_settings.run_dir("transform-only")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert [(s["name"], s["status"], s["notebook"]) for s in manifest["stages"]] == [
        ("transform", "succeeded", "outputs/runs/transform-only/03_transform.ipynb"),
    ]
    assert manifest["row_counts"] == last["row_counts"]
    assert fingerprint(engine, (*transform.TABLES, *transform.VIEWS)) == before  # the same core tables give the same marts, row for row
    assert manifest["files"] == {} and manifest["defects"] == {}  # it generated nothing and read no raw files
    assert len(charts(run_dir / "03_transform.ipynb")) >= 5
    assert not (run_dir / "01_generate.ipynb").exists() and not (run_dir / "02_ingest.ipynb").exists()


@pytest.mark.parametrize("query, table, order_by", [
    ("SELECT * FROM customer_summary ORDER BY total_spent DESC LIMIT 10;", "customer_summary", "total_spent desc"),
    ("SELECT * FROM monthly_sales_summary ORDER BY month;", "monthly_sales_summary", "month"),
    ("SELECT * FROM product_summary ORDER BY total_revenue DESC LIMIT 10;", "product_summary", "total_revenue desc"),
])
def test_the_example_queries_work_verbatim_in_db_shell(two_runs, engine, query, table, order_by):
    done = ecompipe("db", "shell", "--", "--csv", "-c", query)
    assert done.returncode == 0, done.stderr
    shown = pd.read_csv(io.StringIO(done.stdout))
    limit = 10 if "LIMIT" in query else None
    expected = pd.read_sql(f"select * from {table} order by {order_by}" + (f" limit {limit}" if limit else ""), engine)
    assert list(shown.columns) == list(expected.columns)
    assert len(shown) == len(expected) > 0
    key = expected.columns[0]
    assert shown[key].astype(str).tolist() == expected[key].astype(str).tolist()


def test_runs_lists_both_runs_newest_first(two_runs):
    done = ecompipe("runs")
    assert done.returncode == 0
    lines = [line for line in done.stdout.splitlines() if line.startswith("e2e-")]
    assert [line.split()[0] for line in lines] == ["e2e-2", "e2e-1"]
    assert all("succeeded" in line for line in lines)


def test_a_stage_subset_runs_alone(isolated_settings):
    done = ecompipe("run", "--stages", "generate", "--scale", "0.01", "--run-id", "gen-only")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((isolated_settings.run_dir("gen-only") / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["generate"]
    assert not (isolated_settings.run_dir("gen-only") / "02_ingest.ipynb").exists()
    assert not (isolated_settings.run_dir("gen-only") / "03_transform.ipynb").exists()


# ---------------------------------------------------------------- dates the business would believe

def test_the_monthly_table_spans_exactly_the_history_window(two_runs, engine):
    spec = generate.GenerateSpec(scale=TINY)
    months = pd.read_sql("select month from monthly_sales_summary order by month", engine)["month"]
    expected = pd.period_range(spec.first_order_day, spec.as_of, freq="M")
    assert [m.strftime("%Y-%m") for m in months] == [str(p) for p in expected]


def test_the_last_four_weeks_of_trends_end_at_as_of_and_hold_real_sales(two_runs, engine):
    spec = generate.GenerateSpec(scale=TINY)
    trends = pd.read_sql("select * from sales_trends order by sale_date", engine)
    assert trends["sale_date"].iloc[-1] == spec.as_of
    year = trends.tail(365)
    assert float(trends["revenue_28d"].iloc[-1]) >= 0.5 * float(year["total_revenue"].sum()) * 28 / 365


# ---------------------------------------------------------------- what the executed notebooks show

def test_executed_notebooks_show_progress_as_one_line_and_no_error_coloured_output(two_runs, isolated_settings):
    run_dir = isolated_settings.run_dir("e2e-1")
    for name in (Settings().notebook(stage).stem for stage in STAGES):
        executed = nbformat.read(run_dir / f"{name}.ipynb", as_version=4)
        stderr = [o for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
        assert not stderr, f"{name}: {stderr[:2]}"
    bars = [o["data"]["text/plain"] for c in nbformat.read(run_dir / "01_generate.ipynb", as_version=4).cells
            for o in c.get("outputs", []) if "orders: 100%" in o.get("data", {}).get("text/plain", "")]
    assert len(bars) == 1 and "\r" not in bars[0]


def test_the_build_table_shows_whole_row_counts(two_runs, isolated_settings):
    executed = nbformat.read(isolated_settings.run_dir("e2e-1") / "03_transform.ipynb", as_version=4)
    cell = next(c for c in executed.cells if "transform.run(" in c.source)
    table = next(o["data"]["text/plain"] for o in cell.outputs if o["output_type"] == "execute_result")
    order_totals = next(line for line in table.splitlines() if line.startswith("order_totals"))
    assert f" {generate.GenerateSpec(scale=TINY).n_orders} " in f"{order_totals} "
    assert ".0 " not in table and "NaN" not in table


def test_the_manifest_counts_quarantined_rows_per_reason(two_runs, engine):
    _, (manifest, _) = two_runs
    expected = pd.read_sql("""select table_name as table, rule as reason, count(*) as rows
                              from quarantine, unnest(rules) as rule group by 1, 2""", engine)
    assert sorted(map(tuple, pd.DataFrame(manifest["quarantine"])[["table", "reason", "rows"]].values.tolist())) == \
           sorted(map(tuple, expected.values.tolist()))
    assert manifest["ingest"]["as_of"] == "2026-11-24" and manifest["ingest"]["scale"] == TINY


def test_ingest_opened_by_hand_loads_the_newest_successful_full_run_not_a_failed_one(two_runs, isolated_settings,
                                                                                      engine, tmp_path):
    import json
    import shutil

    import papermill as pm

    manifests = [json.loads(p.read_text()) for p in isolated_settings.runs_dir.glob("*/manifest.json")]
    newest = max((m for m in manifests if m["status"] == "succeeded" and not m["parameters"].get("increment")
                  and any(s["name"] == "generate" for s in m["stages"])), key=lambda m: m["started_at"])
    failed = isolated_settings.run_dir("zz-failed")
    (failed / "raw").mkdir(parents=True)
    for table, columns in COLUMNS.items():  # what a failed generation leaves: header-only files
        (failed / "raw" / f"{table}.csv").write_text(",".join(columns) + "\n")
    (failed / "manifest.json").write_text(json.dumps({
        "run_id": "zz-failed", "status": "failed", "started_at": "2999-01-01T00:00:00+00:00",
        "parameters": {"run_id": "zz-failed", "increment": False, "raw_dir": ""},
        "stages": [{"name": "generate", "status": "failed"}]}))
    try:
        out = tmp_path / "02_ingest.ipynb"
        pm.execute_notebook(str(isolated_settings.notebook("ingest")), str(out), kernel_name="ecompipe",
                            cwd=str(isolated_settings.notebooks_dir), progress_bar=False)
    finally:
        shutil.rmtree(failed)
    shown = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    source = isolated_settings.run_dir(newest["run_id"]) / "raw"
    assert f"Loading {source} (replace, as of {newest['parameters']['as_of']})" in shown and "zz-failed" not in shown
    customers = sum(1 for _ in open(source / "customers.csv")) - 1
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from customers")) == customers > 0


# ---------------------------------------------------------------- the report, the HTML copies, the index

SECTIONS = ("Key figures", "Sales by month", "Top products and customers", "Customers by RFM segment",
            "Retention by cohort", "Data quality", "Anomalies", "Ingest", "The run's notebooks")


@pytest.fixture(scope="module")
def report_html(two_runs, isolated_settings) -> str:
    return (isolated_settings.run_dir("e2e-1") / "report.html").read_text()


def test_the_report_has_every_section_and_no_code(report_html):
    headings = re.findall(r"<h2[^>]*>(.*?)<", report_html)
    assert [h for h in headings if h in SECTIONS] == list(SECTIONS)
    assert "hl-ipython3" not in report_html and "import pandas" not in report_html  # no code cell shown
    assert re.search(r"<td>[ABCDF]</td>", report_html), "no grade in the quality table"


def test_pages_are_self_contained(two_runs, isolated_settings):
    run_dir = isolated_settings.run_dir("e2e-1")
    pages = [run_dir / "report.html", *[run_dir / f"{Settings().notebook(s).stem}.html" for s in STAGES]]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script[^>]*\bsrc\s*=", text), page.name
        assert not re.search(r"""\b(?:src|href)\s*=\s*["']?https?://""", text), page.name
        assert not re.search(r"@import\s+url\(\s*['\"]?https?://", text), page.name


def test_the_reports_images_are_inline_pngs_that_decode(report_html):
    from PIL import Image

    images = re.findall(r'src="data:image/png;base64,([^"]+)"', report_html)
    assert len(images) >= 5  # monthly revenue, top customers, segments, cohorts, quality across runs
    for data in images:
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        picture.load()
        assert picture.width > 300 and picture.height > 150


def test_the_index_lists_every_run_newest_first_with_its_pages(two_runs, isolated_settings):
    index = (isolated_settings.outputs_dir / "index.html").read_text()
    listed = re.findall(r"<tr class=\"(\w+)\">\s*<td>([^<]+)</td>", index)
    ids = [run for _, run in listed]
    assert ids.index("e2e-2") < ids.index("e2e-1")
    assert 'href="runs/e2e-1/report.html"' in index and 'href="runs/e2e-1/04_validate.html"' in index
    row = index[index.index("<td>e2e-1</td>"):].split("</tr>")[0]
    assert re.search(r"\d+\.\d\d [ABCDF]", row), "no quality score in the run's row"


def test_the_report_renders_in_a_real_browser(two_runs, isolated_settings, tmp_path):
    """Needs Chromium (Debian's chromium package; .ci/run installs it, README says how)."""
    import shutil

    from PIL import Image, ImageStat

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (see README, Tests)")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400", f"--screenshot={shot}",
                    (isolated_settings.run_dir("e2e-1") / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    picture = Image.open(shot).convert("L")
    stats = ImageStat.Stat(picture)
    assert picture.size == (1200, 2400)
    assert stats.stddev[0] > 20, "the screenshot is blank"
    dark = sum(picture.histogram()[:128]) / (picture.width * picture.height)
    assert dark > 0.01, "hardly anything drawn"


def test_validate_and_anomalies_run_side_by_side_and_the_report_after_both(two_runs, isolated_settings):
    run_dir = isolated_settings.run_dir("e2e-1")
    ran = {}
    for stage in ("validate", "anomalies", "report"):
        timing = nbformat.read(run_dir / f"{Settings().notebook(stage).stem}.ipynb", as_version=4).metadata.papermill
        ran[stage] = (datetime.fromisoformat(timing.start_time), datetime.fromisoformat(timing.end_time))
    (v_start, v_end), (a_start, a_end), (r_start, _) = ran["validate"], ran["anomalies"], ran["report"]
    assert v_start < a_end and a_start < v_end, f"one ran after the other: {ran}"
    assert r_start >= max(v_end, a_end), "the report read what the two had not yet stored"

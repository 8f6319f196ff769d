"""The report: what 06_report shows, the self-contained HTML made from executed notebooks, and the index of runs.

The HTML uses JupyterLab's template with its CDN scripts taken out (``templates/ecompipe``), so a page opens
offline in any browser: styles inline, charts inline as PNG, no script. ``outputs/index.html`` lists every
run from its manifest.
"""

from __future__ import annotations

import functools
import html
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ecompipe import iri, runs
from ecompipe.settings import Settings

PERIOD_DAYS = 28
TEMPLATES = Path(__file__).parent / "templates"
REPORT = "report.html"
INDEX = "index.html"
CORE_TABLES = ("customers", "products", "orders", "order_items")


# ---------------------------------------------------------------- what the report shows

def kpis(engine: Engine) -> pd.DataFrame:
    """The last 28 days up to the data's as-of date against the 28 before them: revenue, orders, average order
    value, buying customers, and the repeat rate (the share of those customers with two or more revenue-bearing
    orders by the period's end)."""
    with engine.connect() as conn:
        periods = pd.read_sql(sa.text("""
            with as_of as (
                select coalesce((select as_of_date from data_as_of), (select max(order_date) from order_totals)) as d
            ),
            periods as (
                select 'last' as period, d - (:n - 1) as first_day, d as last_day from as_of
                union all select 'previous', d - (2 * :n - 1), d - :n from as_of
            ),
            buyers as (  -- the periods' orders, found in one scan
                select p.period, p.first_day, b.customer_id, sum(b.revenue) as revenue, count(*) as orders
                from order_totals b join periods p on b.order_date between p.first_day and p.last_day
                where b.is_revenue_bearing and b.order_date >= (select min(first_day) from periods)
                group by p.period, p.first_day, b.customer_id
            ),
            totals as (  -- a repeat buyer has two orders by the period's end: two in it, or one before it too
                select u.period, sum(u.revenue) as revenue, sum(u.orders) as orders, count(*) as customers,
                       avg((u.orders >= 2 or c.first_order_date < u.first_day)::int) as repeat_rate
                from buyers u join customer_summary c on c.customer_id = u.customer_id
                group by u.period
            )
            select p.period, p.first_day, p.last_day, coalesce(t.revenue, 0)::float as revenue,
                   coalesce(t.orders, 0)::bigint as orders, coalesce(t.customers, 0) as customers,
                   t.repeat_rate::float as repeat_rate
            from periods p left join totals t on t.period = p.period"""), conn, params={"n": PERIOD_DAYS}).set_index("period")
    if periods.empty or periods["first_day"].isna().all():
        return pd.DataFrame(columns=["last 28 days", "previous 28 days", "change"])
    last, previous = periods.loc["last"], periods.loc["previous"]
    rows = {
        "revenue": (last["revenue"], previous["revenue"]),
        "orders": (last["orders"], previous["orders"]),
        "average order value": (last["revenue"] / last["orders"] if last["orders"] else None,
                                previous["revenue"] / previous["orders"] if previous["orders"] else None),
        "customers": (last["customers"], previous["customers"]),
        "repeat rate (%)": tuple(None if pd.isna(v) else 100 * v for v in (last["repeat_rate"], previous["repeat_rate"])),
    }
    columns = [f"{last['first_day']} to {last['last_day']}", f"{previous['first_day']} to {previous['last_day']}"]
    table = pd.DataFrame({metric: [_shown(metric, v) for v in values] for metric, values in rows.items()},
                         index=columns).T
    table["change"] = [_change(*values) for values in rows.values()]
    return table


def _shown(metric: str, value) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{value:,.0f}" if metric in ("orders", "customers") else f"{value:,.2f}"


def _change(now, before) -> str:
    if now is None or before is None or pd.isna(now) or pd.isna(before) or before == 0:
        return ""
    return f"{100 * (now - before) / before:+.1f}%"


def quality(engine: Engine, run_id: str) -> pd.DataFrame:
    """The quality scores of ``run_id``, or of the newest run scored before it: the seed's table of dimensions."""
    return pd.read_sql(sa.text("""
        select dimension, score::float, overall_score::float as overall, grade, run_id as "scored in run"
        from quality_scores
        where run_id = coalesce((select run_id from quality_scores where run_id = :r limit 1),
                                (select run_id from quality_scores order by scored_at desc limit 1))
        order by dimension"""), engine, params={"r": run_id})


def quality_history(engine: Engine) -> pd.DataFrame:
    """Every run's scores, oldest first: one row per run and dimension."""
    return pd.read_sql("""select run_id, dimension, score::float, overall_score::float, grade, scored_at
                          from quality_scores order by scored_at, dimension""", engine)


def quality_record(engine: Engine, run_id: str) -> dict | None:
    """A run's quality scores and the rules that failed, as stored by the validate stage; None if unscored."""
    with engine.connect() as conn:
        scores = conn.execute(sa.text("select dimension, score::float, overall_score::float, grade "
                                      "from quality_scores where run_id = :r order by dimension"), {"r": run_id}).all()
        failed = conn.execute(sa.text("""select suite, description, severity, unexpected_count from quality_results
            where run_id = :r and not success order by severity, suite, description"""), {"r": run_id}).mappings().all()
    if not scores:
        return None
    return {"scores": {s.dimension: s.score for s in scores}, "overall_score": scores[0].overall_score,
            "grade": scores[0].grade, "failed": [dict(f) for f in failed]}


def anomaly_checks(engine: Engine, run_id: str) -> pd.DataFrame:
    return pd.read_sql(sa.text("""select kind, method, flagged, planted, caught, precision::float, recall::float
                                  from anomaly_checks where run_id = :r order by kind, method"""),
                       engine, params={"r": run_id})


def top_anomalies(engine: Engine, run_id: str, n: int = 10) -> pd.DataFrame:
    return pd.read_sql(sa.text("""select kind, key, value::float, expected::float, score::float, reason
                                  from anomalies where run_id = :r and method = 'robust'
                                  order by abs(score) desc limit :n"""), engine, params={"r": run_id, "n": n})


def reconciliation(engine: Engine) -> pd.DataFrame:
    """Each file of the latest load: rows read, loaded, quarantined and blank lines skipped."""
    with engine.connect() as conn:
        files = conn.scalar(sa.text("select files from ingest_loads order by load_id desc limit 1"))
    frame = pd.DataFrame(files or [], columns=["table", "read", "loaded", "quarantined", "blank_lines"])
    return frame.assign(reconciles=frame["read"] == frame["loaded"] + frame["quarantined"]).set_index("table")


def links(settings: Settings, run_id: str):
    """Links to the run's executed notebooks, as self-contained HTML beside this report."""
    from IPython.display import HTML

    run_dir = settings.run_dir(run_id)
    items = [f'<li><a href="{page.name}">{html.escape(page.stem)}</a></li>'
             for page in sorted(run_dir.glob("[0-9][0-9]_*.html"))]
    return HTML(f"<ul>{''.join(items)}</ul>" if items else "<p>No executed notebooks in this run's folder yet.</p>")


# ---------------------------------------------------------------- HTML

def to_html(notebook: Path, page: Path, code: bool = True) -> Path:
    """Write ``notebook`` as one self-contained HTML page; without ``code``, outputs and text only."""
    iri.defer_parser()
    import nbformat

    executed = nbformat.read(notebook, as_version=4)
    for cell in executed.cells:  # papermill's report mode (Airflow's operator forces it) hides code: show it
        cell.metadata.get("jupyter", {}).pop("source_hidden", None)
    body, _ = _exporter(code).from_notebook_node(executed)
    page.write_text(body, encoding="utf-8")
    return page


@functools.cache
def _exporter(code: bool):
    """One exporter per process and kind of page: each compiles its templates once, not per page."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="ecompipe", extra_template_basedirs=[str(TEMPLATES)],
                        exclude_input=not code, exclude_input_prompt=not code, exclude_output_prompt=not code)


def write_index(settings: Settings | None = None) -> Path:
    """``outputs/index.html``: every run, newest first, with its status, duration, rows, quality and anomalies,
    and links to its report and notebooks."""
    settings = settings or Settings()
    rows = []
    for m in runs.all_runs(settings):
        run_dir = settings.run_dir(m["run_id"])
        started = datetime.fromisoformat(m["started_at"])
        duration = (datetime.fromisoformat(m["finished_at"]) - started).total_seconds() if m.get("finished_at") else None
        counts = m.get("row_counts") or {}
        quality = m.get("quality") or {}
        anomalies = m.get("anomalies") or {}
        pages = [f'<a href="runs/{m["run_id"]}/{p.name}">{html.escape(p.stem)}</a>'
                 for p in sorted(run_dir.glob("[0-9][0-9]_*.html"))]
        if (run_dir / REPORT).exists():
            pages.insert(0, f'<a href="runs/{m["run_id"]}/{REPORT}"><b>report</b></a>')
        error = m.get("error") or {}
        rows.append(f"""<tr class="{html.escape(m['status'])}">
<td>{html.escape(m['run_id'])}</td><td>{html.escape(m.get('dag') or 'ecompipe run')}</td>
<td>{started:%Y-%m-%d %H:%M} UTC</td>
<td>{html.escape(m['status'])}{'<br><small>' + html.escape(error.get('exception', '')[:160]) + '</small>' if error else ''}</td>
<td>{'' if duration is None else f'{duration:,.0f} s'}</td>
<td>{f"{sum(counts.get(t, 0) for t in CORE_TABLES):,}" if counts else ''}</td>
<td>{f"{quality['overall_score']:.2f} {quality['grade']}" if quality else ''}</td>
<td>{anomalies.get('flagged', '') if anomalies else ''}</td>
<td>{' · '.join(pages)}</td></tr>""")
    page = settings.outputs_dir / INDEX
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ecompipe runs</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.4em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f5f8; }}
tr.failed td {{ background: #fdf0f0; }}
tr.running td {{ background: #fffbe6; }}
small {{ color: #a33; }}
</style></head>
<body><h1>ecompipe runs</h1>
<p>Every run, newest first. A run's folder holds its executed notebooks, their HTML and its manifest.</p>
<table><thead><tr><th>run</th><th>started by</th><th>started</th><th>status</th><th>duration</th>
<th>core rows</th><th>quality</th><th>anomalies flagged</th><th>pages</th></tr></thead>
<tbody>
{''.join(rows) or '<tr><td colspan="9">No runs yet.</td></tr>'}
</tbody></table></body></html>
""", encoding="utf-8")
    return page

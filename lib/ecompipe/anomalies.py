"""Anomalies: order amounts and days of revenue that do not look like the rest, found where the data lives.

Two kinds, each by the seed's method (a z-score) and a robust one:

- **Order amounts.** The z-score flags an order whose revenue is more than 3 standard deviations from the
  mean. Amounts are heavy-tailed, so it flags many ordinary large orders. The robust method learns each
  product's usual quantities: a line's score is the robust z of its log quantity among the product's lines
  (median and MAD, the scale floored at that of all products together), and an order is flagged when even
  its least unusual line scores above :data:`QUANTITY_Z` and its amount's robust z (of log revenue) is above
  :data:`AMOUNT_Z`: a fat-finger order, every line's quantity multiplied.
- **Daily revenue.** The z-score flags a day more than 3 standard deviations from the mean day. The robust
  method expects a day to look like the same weekday of the four weeks either side (so it follows the weekly
  cycle, growth and seasons), among days of the same retail event (the calendar, ``retail_events``); an
  event day without such neighbours is expected at its ordinary neighbours times the lift the same event
  had in other years. A day is flagged when its log revenue is more than :data:`DAY_Z` robust deviations
  from that. Black Friday is expected; an outage is not.

Statistics are computed in SQL over the warehouse; only aggregates (per product quantity counts, a day's
revenue) and the flagged rows come back.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

Z = 3.0  # the seed's threshold, for both kinds
QUANTITY_Z = 5.5
AMOUNT_Z = 1.5
DAY_Z = 5.0
WEEKS = 4  # the same weekday this many weeks either side is a day's neighbourhood
MIN_NEIGHBOURS = 3
HISTOGRAM_BINS = 60
LOG_BIN = 1e-4  # order amounts are binned by log revenue this finely: a median read from the bins is exact to 0.01%


@dataclass
class Detection:
    """What one method flagged, with what it needed to say so."""

    kind: str
    method: str
    threshold: float
    flagged: pd.DataFrame  # key, metric, value, expected, score, reason (and kind-specific columns)
    note: str = ""  # what the method could not do, in words (too little data)
    cut: float | None = None  # for order amounts: the revenue above which the method can flag an order


# ---------------------------------------------------------------- robust statistics

def robust(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Median and robust scale (1.4826 x MAD) of ``values``; where the MAD is 0 (most values equal), the
    mean absolute deviation x 1.2533 instead, which is the same scale for normal data."""
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    center = _weighted_median(values, weights)
    deviation = np.abs(values - center)
    mad = _weighted_median(deviation, weights)
    scale = 1.4826 * mad if mad > 0 else 1.2533 * float(np.average(deviation, weights=weights))
    return center, scale


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


# ---------------------------------------------------------------- order amounts

def amount_bins(engine: Engine) -> pd.DataFrame:
    """Orders with revenue per bin of log revenue, :data:`LOG_BIN` wide, with the sum and the sum of squares
    of their revenue: one scan of ``order_totals``, from which every statistic of order amounts is read (the
    mean and standard deviation exactly, medians and deviations to the bin's width, the chart's histogram)."""
    bins = pd.read_sql(sa.text("""
        select floor(ln(revenue::float) / :width)::int as bin, count(*) as orders,
               sum(revenue::float) as total, sum(revenue::float ^ 2) as squares
        from order_totals where revenue > 0 group by 1 order by 1"""), engine, params={"width": LOG_BIN})
    return bins.assign(log=(bins["bin"] + 0.5) * LOG_BIN)


def amount_histogram(bins: pd.DataFrame, n: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """The amount distribution for a chart: orders per bin of log revenue, ``n`` equal bins from ``bins``."""
    if bins.empty:
        return pd.DataFrame(columns=["low", "high", "orders"])
    span = (bins["bin"].min() * LOG_BIN, (bins["bin"].max() + 1) * LOG_BIN)  # the fine bins' outer edges
    orders, edges = np.histogram(bins["log"], bins=n, range=span, weights=bins["orders"])
    edges = np.exp(edges)
    keep = orders > 0
    return pd.DataFrame({"low": edges[:-1][keep], "high": edges[1:][keep], "orders": orders[keep].astype(int)})


def amount_zscore(engine: Engine, bins: pd.DataFrame) -> Detection:
    """The seed's method: orders whose revenue is more than :data:`Z` standard deviations from the mean."""
    n = int(bins["orders"].sum())
    mean = float(bins["total"].sum()) / n if n else 0.0
    sd = float(np.sqrt(max(float(bins["squares"].sum()) - n * mean**2, 0) / (n - 1))) if n > 1 else 0.0
    if not sd:
        return Detection("order_amount", "z-score", Z, _empty(), "too few orders with revenue for a z-score")
    flagged = pd.read_sql(sa.text("""
        select order_id::text as key, revenue::float as value from order_totals
        where revenue > 0 and abs(revenue - :mean) > :z * :sd order by revenue desc"""),
        engine, params={"mean": mean, "sd": sd, "z": Z})
    return Detection("order_amount", "z-score", Z, flagged.assign(
        metric="revenue", expected=mean, score=(flagged["value"] - mean) / sd,
        reason=[f"revenue {v:,.2f} is {(v - mean) / sd:.1f} standard deviations from the mean order"
                for v in flagged["value"]]), cut=mean + Z * sd)


def product_quantities(engine: Engine) -> pd.DataFrame:
    """How many lines of each product sold in each quantity (lines with a quantity and a price)."""
    return pd.read_sql(sa.text("""select product_id, quantity, count(*) as n from order_items
                                  where quantity > 0 and unit_price > 0 group by 1, 2"""), engine)


def amount_robust(engine: Engine, bins: pd.DataFrame, counts: pd.DataFrame) -> Detection:
    """Orders whose every line's quantity is far above what its product usually sells in, and whose amount is
    high (module docstring); ``bins`` from :func:`amount_bins`, ``counts`` from :func:`product_quantities`."""
    if counts.empty:
        return Detection("order_amount", "robust", QUANTITY_Z, _empty(), "no order lines to learn quantities from")
    amount, amount_scale = robust(bins["log"].to_numpy(), bins["orders"].to_numpy())
    pooled = robust(np.log(counts["quantity"].to_numpy(float)), counts["n"].to_numpy())[1]
    if bins.empty or not pooled or not amount_scale:  # no order with revenue: no amount to be unusual against
        return Detection("order_amount", "robust", QUANTITY_Z, _empty(),
                         "quantities or amounts do not vary: nothing to be unusual against")
    stats = pd.DataFrame([(pid, *robust(np.log(g["quantity"].to_numpy(float)), g["n"].to_numpy()))
                          for pid, g in counts.groupby("product_id")], columns=["product_id", "center", "scale"])
    stats["scale"] = np.maximum(stats["scale"].fillna(0), pooled)
    typical, gate = float(np.exp(amount)), float(np.exp(amount + AMOUNT_Z * amount_scale))
    # A flagged order's every line is unusual, so only orders with an unusual line are candidates: one pass
    # over the lines finds those few, and only their lines are scored.
    flagged = pd.read_sql(sa.text("""
        with stats as (
            select * from unnest(cast(:pids as bigint[]), cast(:centers as float[]), cast(:scales as float[]))
                as s(product_id, center, scale)
        ),
        unusual as (
            select distinct i.order_id from order_items i join stats s on s.product_id = i.product_id
            where i.quantity > 0 and (ln(i.quantity) - s.center) / s.scale > :qz
        ),
        candidates as (
            select order_id, customer_id, revenue from order_totals
            where revenue > :gate and order_id in (select order_id from unusual)
        ),
        scored as (
            select c.order_id, c.customer_id, c.revenue::float as value,
                   min((ln(i.quantity) - s.center) / s.scale) as quantity_z,
                   (array_agg(i.product_id order by i.quantity desc))[1] as product_id,
                   max(i.quantity) as quantity,
                   (array_agg(exp(s.center) order by i.quantity desc))[1] as usual_quantity
            from candidates c
            join order_items i on i.order_id = c.order_id and i.quantity > 0
            join stats s on s.product_id = i.product_id
            group by c.order_id, c.customer_id, c.revenue
        )
        select s.order_id::text as key, s.customer_id, cu.first_name || ' ' || cu.last_name as customer,
               p.product_name, p.category, s.value, s.quantity_z, s.quantity, s.usual_quantity
        from scored s
        left join customers cu on cu.customer_id = s.customer_id
        left join products p on p.product_id = s.product_id
        where s.quantity_z > :qz
        order by s.quantity_z desc"""), engine, params={
            "pids": stats["product_id"].tolist(), "centers": stats["center"].tolist(),
            "scales": stats["scale"].tolist(), "gate": gate, "qz": QUANTITY_Z})
    flagged["expected"] = typical
    flagged["amount_z"] = (np.log(flagged["value"]) - amount) / amount_scale
    return Detection("order_amount", "robust", QUANTITY_Z, flagged.assign(
        metric="revenue", score=flagged["quantity_z"],
        reason=[f"{int(q)} x {name} where the product usually sells {u:.0f}; revenue {v:,.0f} is {v / typical:.0f}x "
                f"the median order" for q, name, u, v in zip(flagged["quantity"], flagged["product_name"],
                                                                  flagged["usual_quantity"], flagged["value"])]),
        cut=gate)


# ---------------------------------------------------------------- daily revenue

def daily_series(engine: Engine) -> pd.DataFrame:
    """Revenue per day (``daily_sales_summary``), each day with its retail event ('' for none)."""
    with engine.connect() as conn:
        days = pd.read_sql(sa.text("""
            select d.sale_date as day, d.total_revenue::float as revenue, d.total_orders as orders,
                   coalesce(e.event, '') as event
            from daily_sales_summary d
            left join retail_events e on d.sale_date between e.first_day and e.last_day
            order by d.sale_date"""), conn, parse_dates=["day"])
    return days.drop_duplicates("day")


def daily_zscore(days: pd.DataFrame) -> Detection:
    if len(days) < 3 or not days["revenue"].std():
        return Detection("daily_revenue", "z-score", Z, _empty(), "too few days for a z-score")
    mean, sd = days["revenue"].mean(), days["revenue"].std()
    z = (days["revenue"] - mean) / sd
    hit = days[z.abs() > Z]
    return Detection("daily_revenue", "z-score", Z, pd.DataFrame({
        "key": hit["day"].dt.date.astype(str), "metric": "revenue", "value": hit["revenue"], "expected": mean,
        "score": z[hit.index], "reason": [f"{z[i]:+.1f} standard deviations from the mean day" for i in hit.index]}))


def daily_expected(days: pd.DataFrame) -> pd.DataFrame:
    """``days`` with the robust method's expectation: ``expected`` (log1p revenue) and its ``score``."""
    y = np.log1p(days["revenue"].clip(lower=0).to_numpy())
    position = {d: i for i, d in enumerate(days["day"])}
    events = days["event"].to_numpy()

    def neighbours(i: int, same_event: bool) -> list[int]:
        day = days["day"].iloc[i]
        near = [position.get(day + pd.Timedelta(weeks=w)) for w in range(-WEEKS, WEEKS + 1) if w]
        wanted = events[i] if same_event else ""
        return [j for j in near if j is not None and events[j] == wanted]

    base = np.full(len(y), np.nan)
    ordinary = np.full(len(y), np.nan)
    for i in range(len(y)):
        near = neighbours(i, same_event=True)
        if len(near) >= MIN_NEIGHBOURS:
            base[i] = np.median(y[near])
        plain = neighbours(i, same_event=False)
        if len(plain) >= MIN_NEIGHBOURS:
            ordinary[i] = np.median(y[plain])
    # An event day without its own neighbours: its ordinary neighbours, lifted as the same event was in other years
    for i in np.flatnonzero(np.isnan(base) & (events != "") & ~np.isnan(ordinary)):
        others = [j for j in np.flatnonzero(events == events[i])
                  if abs((days["day"].iloc[j] - days["day"].iloc[i]).days) > 60 and not np.isnan(ordinary[j])]
        if others:
            base[i] = ordinary[i] + np.median(y[others] - ordinary[others])
    residual = y - base
    usable = residual[(events == "") & ~np.isnan(residual)]
    scale = robust(usable)[1] if usable.size >= MIN_NEIGHBOURS else float("nan")
    return days.assign(expected=base, score=residual / scale if scale else np.nan, scale=scale)


def daily_robust(days: pd.DataFrame) -> tuple[Detection, pd.DataFrame]:
    """The robust method on ``days``; also returns every day with its expectation, for the chart."""
    scored = daily_expected(days) if len(days) else days.assign(expected=[], score=[], scale=[])
    checked = scored["score"].notna().sum()
    if checked == 0:
        return (Detection("daily_revenue", "robust", DAY_Z, _empty(),
                          f"{len(days)} days: too few to compare a day with the same weekday of other weeks "
                          f"(at least {MIN_NEIGHBOURS} neighbours a day)"), scored)
    hit = scored[scored["score"].abs() > DAY_Z]
    expected = np.expm1(hit["expected"])
    return Detection("daily_revenue", "robust", DAY_Z, pd.DataFrame({
        "key": hit["day"].dt.date.astype(str), "metric": "revenue", "value": hit["revenue"], "expected": expected,
        "score": hit["score"],
        "reason": [f"revenue {v:,.0f} against {e:,.0f} expected ({v / e if e else float('inf'):.2f}x)"
                   + (f"; {ev.replace('_', ' ')}" if ev else "")
                   for v, e, ev in zip(hit["revenue"], expected, hit["event"])]}),
        note="" if checked == len(days) else f"{len(days) - checked} of {len(days)} days had too few comparable "
                                               "days to be judged"), scored


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["key", "metric", "value", "expected", "score", "reason"])


# ---------------------------------------------------------------- everything, stored and judged

def detect(engine: Engine) -> tuple[list[Detection], pd.DataFrame, pd.DataFrame]:
    """Every method on the warehouse; also, for the charts, the daily series with the robust expectation and the
    amount distribution (:func:`amount_histogram`).

    The scans of ``order_totals`` and ``order_items`` run side by side, each on a connection of its own.
    """
    with ThreadPoolExecutor(2) as pool:
        counts = pool.submit(product_quantities, engine)
        bins = amount_bins(engine)
        zscore = pool.submit(amount_zscore, engine, bins)
        robust_amounts = amount_robust(engine, bins, counts.result())
        days = daily_series(engine)
        robust_days, scored = daily_robust(days)
        return [zscore.result(), robust_amounts, daily_zscore(days), robust_days], scored, amount_histogram(bins)


PLANTED = {"order_amount": "outlier_amount", "daily_revenue": "anomalous_day"}
"""The planted defect each kind of anomaly is judged against."""


def against_ledger(detections: list[Detection], planted: pd.DataFrame | None) -> pd.DataFrame:
    """Precision and recall of each method against the defects planted; no ground truth without a ledger."""
    rows = []
    for d in detections:
        row = {"kind": d.kind, "method": d.method, "flagged": len(d.flagged), "planted": None, "caught": None,
               "precision": None, "recall": None}
        if planted is not None:
            truth = set(planted.loc[planted["defect"] == PLANTED[d.kind], "key"].astype(str))
            caught = len(truth & set(d.flagged["key"].astype(str)))
            row.update(planted=len(truth), caught=caught,
                       precision=round(caught / len(d.flagged), 3) if len(d.flagged) else None,
                       recall=round(caught / len(truth), 3) if truth else None)
        rows.append(row)
    return pd.DataFrame(rows)


def store(engine: Engine, run_id: str, detections: list[Detection], checks: pd.DataFrame) -> None:
    """Append this run's flagged orders and days, and each method's record, replacing a rerun's."""
    flagged = pd.concat([d.flagged[["key", "metric", "value", "expected", "score", "reason"]].assign(
        run_id=run_id, kind=d.kind, method=d.method, threshold=d.threshold) for d in detections])
    with engine.begin() as conn:
        conn.execute(sa.text("delete from anomalies where run_id = :r"), {"r": run_id})
        conn.execute(sa.text("delete from anomaly_checks where run_id = :r"), {"r": run_id})
        with conn.connection.cursor() as cur:  # by COPY: at scale 100 the z-score flags 100,000 orders
            cur.copy_expert(f"copy anomalies ({', '.join(flagged.columns)}) from stdin with (format csv)",
                            io.StringIO(flagged.to_csv(index=False, header=False)))
        conn.execute(sa.text("""insert into anomaly_checks (run_id, kind, method, flagged, planted, caught, precision,
                                    recall)
                                values (:run_id, :kind, :method, :flagged, :planted, :caught, :precision, :recall)"""),
                     [{"run_id": run_id, **{k: _plain(v) for k, v in row.items()}} for row in checks.to_dict("records")])


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def summary(detections: list[Detection]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": d.kind, "method": d.method, "threshold": d.threshold, "flagged": len(d.flagged),
                          "note": d.note} for d in detections])


def top(detections: list[Detection], n: int = 15) -> pd.DataFrame:
    """The robust method's most unusual orders and days, in words."""
    orders = next(d for d in detections if d.kind == "order_amount" and d.method == "robust").flagged
    days = next(d for d in detections if d.kind == "daily_revenue" and d.method == "robust").flagged
    table = pd.concat([
        orders.assign(what="order").reindex(columns=["what", "key", "customer", "category", "value", "score", "reason"]),
        days.assign(what="day").reindex(columns=["what", "key", "customer", "category", "value", "score", "reason"]),
    ], ignore_index=True)
    return table.reindex(table["score"].abs().sort_values(ascending=False).index).head(n).reset_index(drop=True)


def in_words(checks: pd.DataFrame) -> str:
    """One line per method: what it flagged, and how that compares with what was planted."""
    lines = []
    for c in checks.itertuples():
        said = f"{c.kind.replace('_', ' ')}, {c.method}: {c.flagged} flagged"
        if c.planted is None or pd.isna(c.planted):
            said += "; no ground truth (the data was not generated)"
        elif c.planted == 0:
            said += "; none planted, so these are the data's natural extremes"
        else:
            precision = "n/a" if pd.isna(c.precision) else f"{c.precision:.2f}"
            said += f"; {c.caught} of {c.planted} planted caught: precision {precision}, recall {c.recall:.2f}"
        lines.append(said)
    return "\n".join(lines)


def record(engine: Engine, run_id: str) -> dict | None:
    """A run's anomaly checks, as the manifest keeps them."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select kind, method, flagged, planted, caught, precision::float, recall::float "
                                    "from anomaly_checks where run_id = :r order by kind, method"),
                            {"r": run_id}).mappings().all()
    return {"checks": [dict(r) for r in rows], "flagged": sum(r["flagged"] for r in rows if r["method"] == "robust")} \
        if rows else None

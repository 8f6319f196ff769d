"""Reading the marts: the questions the transform notebook and the report ask of them, one function each.

Every function returns a DataFrame, empty (with its columns) when the marts hold nothing to show, so that a
notebook run on a few rows of data shows empty tables instead of failing.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.engine import Engine


def _read(engine: Engine, query: str, **params) -> pd.DataFrame:
    return pd.read_sql(query, engine, params=params or None)


def top_customers(engine: Engine, n: int = 10) -> pd.DataFrame:
    return _read(engine, "select * from customer_summary where total_orders > 0 "
                         "order by total_spent desc, customer_id limit %(n)s", n=int(n))


def monthly(engine: Engine) -> pd.DataFrame:
    frame = _read(engine, "select * from monthly_sales_summary order by month")
    frame["month"] = pd.to_datetime(frame["month"])
    return frame


def top_products(engine: Engine, n: int = 10) -> pd.DataFrame:
    return _read(engine, "select * from product_summary order by total_revenue desc, product_id limit %(n)s", n=int(n))


def pareto(engine: Engine) -> pd.DataFrame:
    """``product_abc`` in Pareto order, with each product's position as a % of all products."""
    abc = _read(engine, "select * from product_abc order by pareto_rank")
    return abc.assign(products_pct=100 * abc["pareto_rank"] / max(len(abc), 1))


def abc_classes(abc: pd.DataFrame) -> pd.DataFrame:
    """Products and share of revenue per ABC class."""
    return (abc.groupby("abc_class")
            .agg(products=("product_id", "size"), revenue_share_pct=("revenue_share_pct", "sum"))
            .astype({"revenue_share_pct": float}).round(2))


def categories(engine: Engine) -> pd.DataFrame:
    return _read(engine, "select * from category_performance order by revenue_rank, category")


def segments(engine: Engine) -> pd.DataFrame:
    return _read(engine, "select * from rfm_segments order by customers desc, rfm_segment")


def cohort_heatmap(engine: Engine, months: int = 12, cohorts: int = 24) -> pd.DataFrame:
    """Retention (% of each cohort buying again) of the last ``cohorts`` cohorts, 1 to ``months`` months on:
    one row per cohort (``YYYY-MM``), one column per month after the first order."""
    # the view read once, a few hundred rows: a subquery for its last cohort would compute it twice
    retention = _read(engine, """
        select cohort_month, months_since_first, retention_pct from cohort_retention
        where months_since_first <= %(months)s""", months=int(months))
    cohort = pd.to_datetime(retention["cohort_month"])
    shown = retention.assign(cohort=cohort.dt.strftime("%Y-%m"))[
        (cohort > cohort.max() - pd.DateOffset(months=int(cohorts))) & (retention["months_since_first"] >= 1)]
    return shown.pivot(index="cohort", columns="months_since_first", values="retention_pct").astype(float)


def recent_trends(engine: Engine, days: int = 28) -> pd.DataFrame:
    return _read(engine, "select * from sales_trends order by sale_date desc limit %(n)s", n=int(days))


def revenue_totals(engine: Engine) -> pd.Series:
    """Revenue as each summary table totals it. Every revenue-bearing line counts once by product and once by
    customer; the days and the months cover the same dated orders. Unequal figures mean a broken model."""
    return _read(engine, """
        select (select coalesce(sum(total_revenue), 0) from product_summary) as by_product,
               (select coalesce(sum(total_spent), 0) from customer_summary) as by_customer,
               (select coalesce(sum(total_revenue), 0) from daily_sales_summary) as by_day,
               (select coalesce(sum(total_revenue), 0) from monthly_sales_summary) as by_month""").iloc[0]

"""The marts' charts, shared by the transform notebook and the report: one function each.

Each takes the frame a :mod:`ecompipe.marts` function returns, draws one seaborn chart on a figure of its
own, sized for a page, with a title that states what it shows, and returns the Axes. With nothing to draw,
it draws an empty frame that says so, instead of failing.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

WIDE = (10, 4.2)


def inline() -> None:
    """In a notebook: show each figure as it lays itself out. Jupyter's inline backend crops every figure to
    its tight bounding box, which draws it twice; with constrained layout (this module's figures have it, and
    this gives it to any other) the figure fits its page as it is, drawn once, in a quarter less time."""
    from matplotlib_inline.backend_inline import InlineBackend, set_matplotlib_formats

    plt.rcParams["figure.constrained_layout.use"] = True
    backend = InlineBackend.instance()
    backend.print_figure_kwargs = {"bbox_inches": None}  # for the backend, if not yet started
    set_matplotlib_formats(*backend.figure_formats)  # and if it is


def _axes(size=WIDE):
    return plt.subplots(figsize=size, layout="constrained")[1]


def _empty(ax, title: str):
    ax.set(title=f"{title}: no data yet", xticks=[], yticks=[])
    ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes, color="grey")
    return ax


def top_customers(top: pd.DataFrame):
    ax = _axes()
    if top.empty:
        return _empty(ax, "Top customers")
    sns.barplot(data=top, y=top["customer_id"].astype(str), x=top["total_spent"].astype(float), color="steelblue",
                orient="h", ax=ax)
    best = top.iloc[0]
    ax.set(title=f"Top {len(top)} customers: the first spent {float(best['total_spent']):,.0f} "
           f"in {int(best['total_orders'])} orders",
           xlabel="Total spent (currency units)", ylabel="Customer id")
    return ax


def monthly_revenue(monthly: pd.DataFrame):
    ax = _axes()
    if monthly.empty:
        return _empty(ax, "Revenue per month")
    revenue = monthly["total_revenue"].astype(float)
    best = monthly.loc[revenue.idxmax(), "month"]
    sns.lineplot(x=monthly["month"], y=revenue, marker="o", markersize=3, ax=ax)
    ax.set(title=f"Revenue per month (revenue-bearing orders): best month {best:%B %Y}, {revenue.max():,.0f}",
           xlabel="Month", ylabel="Revenue (currency units)")
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def pareto(abc: pd.DataFrame):
    ax = _axes()
    if abc.empty or abc["total_revenue"].astype(float).sum() == 0:
        return _empty(ax, "Pareto curve")
    a_share = 100 * (abc["abc_class"] == "A").mean()
    sns.scatterplot(x=abc["products_pct"], y=abc["cumulative_share_pct"].astype(float), hue=abc["abc_class"],
                    s=12, linewidth=0, ax=ax)
    ax.axhline(80, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(95, color="grey", linestyle=":", linewidth=0.8)
    ax.set(title=f"Pareto curve: {a_share:.0f}% of products (class A) make 80% of revenue",
           xlabel="Products, best sellers first (%)", ylabel="Cumulative share of revenue (%)")
    return ax


def segments(mix: pd.DataFrame):
    ax = _axes((8, 4))
    if mix.empty:
        return _empty(ax, "RFM segment mix")
    buyers = mix[mix["rfm_segment"] != "no orders"]
    top = (buyers if not buyers.empty else mix).iloc[0]
    sns.barplot(data=mix, y="rfm_segment", x="customers", color="steelblue", orient="h", ax=ax)
    ax.set(title=f"RFM segment mix: the largest group of buyers is '{top['rfm_segment']}' "
           f"({float(top['customers_pct']):.0f}% of customers)",
           xlabel="Customers", ylabel="Segment")
    return ax


def cohort_heatmap(heatmap: pd.DataFrame):
    ax = _axes((10, max(4, len(heatmap) * 0.22)))
    if heatmap.empty or heatmap.isna().all().all():
        return _empty(ax, "Cohort retention")
    month_one = heatmap[1].mean() if 1 in heatmap.columns else float("nan")
    sns.heatmap(heatmap, cmap="Blues", cbar_kws={"label": "Customers buying again (% of cohort)"}, ax=ax)
    ax.set(title=f"Cohort retention: {month_one:.1f}% of a cohort buy again the month after, on average",
           xlabel="Months after the first order", ylabel="Cohort (month of first order)")
    return ax


def quality_scores(table: pd.DataFrame):
    """The four dimensions' scores and the overall one, with its grade."""
    ax = _axes((8, 3.6))
    scores = pd.concat([table[["dimension", "score"]],
                        pd.DataFrame({"dimension": ["overall"], "score": [table["overall_score"].iloc[0]]})])
    sns.barplot(data=scores, y="dimension", x="score", orient="h", ax=ax,
                hue="dimension", palette=["steelblue"] * 4 + ["darkslategrey"], legend=False)
    for bar, value in zip(ax.patches, scores["score"]):
        ax.text(bar.get_width() - 0.3, bar.get_y() + bar.get_height() / 2, f"{value:.2f}", va="center", ha="right",
                color="white", fontsize=9)
    worst = table.loc[table["score"].idxmin()]
    ax.set(title=f"Data quality: grade {table['grade'].iloc[0]} ({table['overall_score'].iloc[0]:.2f}); "
                 f"weakest: {worst['dimension']} ({worst['score']:.2f})",
           xlabel="Score (% of values checked that pass their rules)", ylabel="",
           xlim=(min(90.0, float(scores["score"].min()) - 1), 100))
    return ax


def quality_history(history: pd.DataFrame):
    """Each dimension's score, run after run."""
    ax = _axes()
    if history.empty:
        return _empty(ax, "Data quality across runs")
    overall = history.drop_duplicates("run_id")
    sns.lineplot(data=history, x="scored_at", y="score", hue="dimension", marker="o", markersize=4, ax=ax)
    ax.set(title=f"Data quality across {len(overall)} runs: overall {overall['overall_score'].iloc[-1]:.2f} now, "
                 f"{overall['overall_score'].min():.2f} at worst",
           xlabel="Scored at (UTC)", ylabel="Score (%)")
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def amount_distribution(histogram: pd.DataFrame, zscore, robust):
    """Orders by amount on a log scale, each method's threshold, and the orders the robust method flagged."""
    ax = _axes()
    if histogram.empty:
        return _empty(ax, "Order amounts")
    ax.bar(histogram["low"], histogram["orders"], width=histogram["high"] - histogram["low"], align="edge",
           color="lightsteelblue", label="orders")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for detection, style in ((zscore, "--"), (robust, "-")):
        if detection.cut:
            ax.axvline(detection.cut, color="firebrick", linestyle=style, linewidth=1,
                       label=f"{detection.method}: {len(detection.flagged)} flagged above {detection.cut:,.0f}")
    if len(robust.flagged):
        ax.plot(robust.flagged["value"], [0.8] * len(robust.flagged), "|", color="firebrick", markersize=12,
                label="flagged by the robust method")
    ax.legend(fontsize=8)
    ax.set(title=f"Order amounts: the z-score flags {len(zscore.flagged):,} orders, the robust method "
                 f"{len(robust.flagged):,}", xlabel="Order revenue (currency units, log scale)",
           ylabel="Orders (log scale)")
    return ax


def daily_anomalies(scored: pd.DataFrame, robust, z: float):
    """Daily revenue, the band the robust method expects it in, retail events, and the flagged days."""
    ax = _axes((11, 4.5))
    if scored.empty or scored["expected"].isna().all():
        return _empty(ax, "Daily revenue")
    expected = scored["expected"]
    low, high = np.expm1(expected - z * scored["scale"]), np.expm1(expected + z * scored["scale"])
    ax.fill_between(scored["day"], low.clip(lower=0), high, color="lightsteelblue", alpha=0.6,
                    label=f"expected (within {z:g} robust deviations)")
    ax.plot(scored["day"], scored["revenue"], color="steelblue", linewidth=0.7, label="revenue")
    events = scored[scored["event"] != ""]
    ax.scatter(events["day"], events["revenue"], s=6, color="darkorange", label="retail event days")
    hit = scored[scored["day"].dt.date.astype(str).isin(robust.flagged["key"])]
    ax.scatter(hit["day"], hit["revenue"], s=40, facecolors="none", edgecolors="firebrick", linewidths=1.5,
               label=f"flagged: {len(hit)} days")
    ax.legend(fontsize=8, loc="upper left")
    ax.set(title=f"Daily revenue: {len(hit)} days outside what the same weekday of nearby weeks expects",
           xlabel="Day", ylabel="Revenue (currency units)", ylim=(0, 1.25 * scored["revenue"].max() or 1))
    return ax

"""Anomaly detection: how well each method finds the planted anomalies, and how long it takes.

    python bench/bench_anomalies.py [--quality] [--speed-scale 100]

``--quality`` (the default when no option is given) prints precision and recall against the ledger:
order amounts at scale 1 for seeds 1 to 5 (targets for the robust method: recall >= 0.95, precision >= 0.8),
and daily revenue at scale 10 pooled over seeds 1 to 3 (targets: both >= 0.9; no Black Friday, Cyber Monday
or Christmas-rush day flagged on clean data), with scale 1's daily figures, which carry no target, and the
z-score beside each.
``--speed-scale S`` times ``anomalies.detect`` (all four methods, their SQL included) at scale S, median of 3:
the stage's work beyond starting a kernel. The target is 15 s at scale 100.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import own_warehouse  # noqa: F401  (first: the benchmark's own warehouse)

from ecompipe import anomalies, generate, ingest, transform, warehouse


def load(engine, spec: generate.GenerateSpec):
    with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
        generate.write_dataset(spec, Path(tmp))
        ingest.load(Path(tmp), engine, as_of=spec.as_of, scale=spec.scale, seed=spec.seed)
        transform.build(engine)
        detections, scored, _ = anomalies.detect(engine)
        checks = anomalies.against_ledger(detections, warehouse.planted_defects(engine))
    return detections, scored, checks


def pooled(rows: list, kind: str, method: str) -> str:
    mine = [r for r in rows if r.kind == kind and r.method == method]
    flagged, planted, caught = (sum(int(getattr(r, f)) for r in mine) for f in ("flagged", "planted", "caught"))
    precision = caught / flagged if flagged else float("nan")
    return f"precision {precision:.3f}, recall {caught / planted if planted else float('nan'):.3f} " \
           f"({caught} of {planted} planted, {flagged} flagged)"


def quality(engine) -> None:
    print("Order amounts at scale 1 (targets for the robust method: recall >= 0.95, precision >= 0.8):")
    rows = []
    for seed in range(1, 6):
        _, _, checks = load(engine, generate.GenerateSpec(scale=1, seed=seed))
        amounts = checks[checks["kind"] == "order_amount"]
        rows += list(checks.itertuples())
        print(f"  seed {seed}: " + "; ".join(f"{r.method} p {r.precision:.2f} r {r.recall:.2f} ({r.flagged} flagged)"
                                         for r in amounts.itertuples()))
    for method in ("robust", "z-score"):
        print(f"  pooled {method:8}: {pooled(rows, 'order_amount', method)}")
    for scale in (10, 1):
        rows = []
        for seed in (1, 2, 3):
            _, _, checks = load(engine, generate.GenerateSpec(scale=scale, seed=seed))
            rows += list(checks.itertuples())
        target = " (targets: both >= 0.9)" if scale == 10 else " (no target: about 70 orders a day)"
        print(f"Daily revenue at scale {scale}, seeds 1-3 pooled{target}:")
        for method in ("robust", "z-score"):
            print(f"  {method:8}: {pooled(rows, 'daily_revenue', method)}")
    flagged_events = []
    for seed in (1, 2, 3):
        detections, scored, _ = load(engine, generate.GenerateSpec(scale=10, seed=seed, clean=True))
        robust = next(d for d in detections if d.kind == "daily_revenue" and d.method == "robust")
        days = scored.assign(day=scored["day"].dt.date.astype(str))
        flagged_events += list(days[days["day"].isin(robust.flagged["key"]) & (days["event"] != "")]["day"])
        print(f"Clean data at scale 10, seed {seed}: {len(robust.flagged)} days flagged, "
              f"{(days['event'] != '').sum()} retail-event days among {len(days)}")
    print(f"  retail-event days flagged on clean data: {flagged_events or 'none'}")


def speed(engine, scale: float) -> None:
    spec = generate.GenerateSpec(scale=scale)
    with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
        generate.write_dataset(spec, Path(tmp))
        ingest.load(Path(tmp), engine, as_of=spec.as_of)
    transform.build(engine)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        anomalies.detect(engine)
        seconds.append(time.perf_counter() - started)
    print(f"anomalies.detect at scale {scale:g}: {statistics.median(seconds):.2f} s (median of 3; target 15 s at 100)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed-scale", type=float)
    args = parser.parse_args()
    engine = warehouse.get_engine()
    if args.quality or args.speed_scale is None:
        quality(engine)
    if args.speed_scale:
        speed(engine, args.speed_scale)


if __name__ == "__main__":
    main()

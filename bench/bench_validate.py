"""Great Expectations' validation time against hand-written SQL computing the same unexpected counts.

    python bench/bench_validate.py [--scales 1,10] [--repeat 3]

For each scale: generates, loads and transforms data in the benchmark's own warehouse, then alternates
``validate.run`` over every suite (GX's validation alone: no import, no kernel) with one hand-written query
per table that counts, for each of its rules, the rows that break it. The two must agree, rule by rule.
``import great_expectations`` is timed apart, in fresh processes. Figures are medians. The target is GX at
most 4x the hand-written queries at scale 10.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

import own_warehouse  # noqa: F401  (first: the benchmark's own warehouse)

from ecompipe import generate, ingest, transform, validate, warehouse

from bench_ingest import timed

IMPORT = "import time; t = time.perf_counter(); from ecompipe import validate; print(time.perf_counter() - t)"


def counts_sql(suite: validate.Suite) -> str:
    """One query counting, for each rule of ``suite``, the rows of its table that break it."""
    table = suite.table
    parts = []
    for e in suite.entries:
        kw, kind = e["kwargs"], e["type"]
        col = kw.get("column")
        if kind == "expect_column_values_to_not_be_null":
            part = f"(select count(*) from {table} where {col} is null)"
        elif kind == "expect_column_values_to_match_regex":
            part = f"(select count(*) from {table} where {col} !~ '{kw['regex']}')"
        elif kind == "expect_column_values_to_be_between":
            low = f"{col} <{'=' if kw.get('strict_min') else ''} {kw['min_value']}" if "min_value" in kw else "false"
            high = f"{col} >{'=' if kw.get('strict_max') else ''} {kw['max_value']}" if "max_value" in kw else "false"
            part = f"(select count(*) from {table} where {low} or {high})"
        elif kind == "expect_column_values_to_be_in_set":
            values = ", ".join(repr(v).lower() if isinstance(v, bool) else repr(v) for v in kw["value_set"])
            part = f"(select count(*) from {table} where {col} not in ({values}))"
        elif kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            cols = ", ".join(kw.get("column_list", [col]))
            part = (f"(select coalesce(sum(n), 0) from (select count(*) as n from {table} "
                    f"where ({cols}) is not null group by {cols} having count(*) > 1) d)")
        elif kind == validate.ExpectNoUnexpectedRows.expectation_type:
            query = kw["unexpected_rows_query"]
            batch = f"(select * from {table})" + ("" if re.search(r"\bjoin\b", query, re.I) else " as subselect")
            part = f"(select count(*) from ({query.replace('{batch}', batch)}) q)"  # as GX expands {batch}
        else:
            raise SystemExit(f"no hand-written SQL for {kind}")
        parts.append(part)
    return "select " + ", ".join(parts)


def hand_written(engine, suites: list[validate.Suite]) -> list[int]:
    with engine.connect() as conn:
        return [n for suite in suites for n in conn.execute(sa.text(counts_sql(suite))).one()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    imports = [float(subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(args.repeat)]
    print(f"import great_expectations (fresh process, median of {args.repeat}): {statistics.median(imports):6.2f} s")
    engine = warehouse.get_engine()
    suites = validate.load_suites()
    for scale in (float(s) for s in args.scales.split(",")):
        with tempfile.TemporaryDirectory(prefix="ecompipe-bench-") as tmp:
            spec = generate.GenerateSpec(scale=scale)
            generate.write_dataset(spec, Path(tmp))
            ingest.load(Path(tmp), engine, as_of=spec.as_of)
        transform.build(engine)
        gx_s, sql_s = [], []
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both alike
            seconds, results = timed(validate.run, engine, suites)
            gx_s.append(seconds)
            seconds, counts = timed(hand_written, engine, suites)
            sql_s.append(seconds)
        differ = [(r.suite, r.description, r.unexpected_count, n) for r, n in zip(results, counts)
                  if r.unexpected_count != n]
        if differ:
            raise SystemExit(f"GX and the hand-written SQL disagree: {differ}")
        gx, hand = statistics.median(gx_s), statistics.median(sql_s)
        print(f"scale {scale:g}: {len(results)} rules on {sum(r.element_count for r in results):,} values, "
              f"median of {args.repeat}")
        print(f"  GX validation        : {gx:7.2f} s")
        print(f"  hand-written SQL     : {hand:7.2f} s (one query per table, the same counts)")
        print(f"  GX / hand-written    : {gx / hand:7.2f}x")


if __name__ == "__main__":
    main()

"""Validation: the quality rules of ``expectations/*.json``, run by Great Expectations inside the warehouse,
stored per run and scored on four dimensions.

The rules are data: one Great Expectations suite per table checked, each expectation tagged in ``meta`` with
its quality dimension and one sentence a reader understands, with its severity in GX's own field. This
module loads the suites (checking that every entry became an expectation), runs them on the warehouse
through GX's SQL datasource (no table is pulled into pandas), and scores, stores and compares the results.

Scores (README, *Data quality*): a dimension's score is the share of the values its rules checked that
passed them. A rule over rows (:class:`ExpectNoUnexpectedRows`) checks every row of its table, or of the
table its ``meta.rows_of`` names, or, for the quarantine, the rows read from the file ``meta.rows_read_from``
names. The overall score is the mean of the four; the grade is A from 95, B from 90, C from 80, D from 70,
else F.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ecompipe import defects, iri, progress, warehouse
from ecompipe.rawformat import KEYS
from ecompipe.settings import PROJECT_ROOT, Settings

iri.defer_parser()  # before Great Expectations imports jsonschema: seconds saved
import great_expectations as gx  # noqa: E402  (3 s: the modules that only read results, report.py, skip it)
from great_expectations.constants import MAX_RESULT_RECORDS  # noqa: E402
from great_expectations.core.metric_domain_types import MetricDomainTypes  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import SqlAlchemyExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration  # noqa: E402
from great_expectations.expectations.metrics.metric_provider import metric_value  # noqa: E402
from great_expectations.expectations.metrics.query_metric_provider import QueryMetricProvider  # noqa: E402

log = logging.getLogger(__name__)

SUITES_DIR = PROJECT_ROOT / "expectations"
DIMENSIONS = defects.DIMENSIONS
SEVERITIES = ("critical", "warning")
FAIL_ON = ("none", "critical", "any")
GRADES = ((95, "A"), (90, "B"), (80, "C"), (70, "D"))
SAMPLE = 20  # unexpected values stored per rule
URL_VARIABLE = "ECOMPIPE_GX_URL"
"""GX reads the warehouse URL from this variable of the process, so the URL is in no GX config."""


class SuiteError(ValueError):
    """A suite file is wrong; the message names the file and the entry."""


class QualityFailed(RuntimeError):
    """Rules of the severity ``fail_on`` names failed; the message names them."""


# ---------------------------------------------------------------- the rule over rows

class UnexpectedRowsAndCount(QueryMetricProvider):
    """A rule's query, run once: its first rows (as many as GX keeps) and the number of all its rows."""

    metric_name = "unexpected_rows_query.rows_and_count"
    value_keys = ("unexpected_rows_query",)
    query_param_name = "unexpected_rows_query"
    COUNT = "ecompipe_unexpected_rows"  # the count's column, beside the query's own

    @metric_value(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration
                    ) -> dict:
        batch, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        query = cls._get_substituted_batch_subquery_from_query_and_batch_selectable(
            query=cls._get_query_from_metric_value_kwargs(metric_value_kwargs), batch_selectable=batch,
            execution_engine=execution_engine)
        rows = execution_engine.execute_query(sa.text(
            f"select *, count(*) over () as {cls.COUNT} from ({query}) as unexpected limit {MAX_RESULT_RECORDS}"
        )).mappings().all()
        return {"rows": [{k: v for k, v in row.items() if k != cls.COUNT} for row in rows],
                "count": rows[0][cls.COUNT] if rows else 0}


class ExpectNoUnexpectedRows(gx.expectations.UnexpectedRowsExpectation):
    """GX's ``unexpected_rows_expectation``, whose query runs once rather than twice.

    GX's own runs a rule's query for its rows, fetching every one and keeping the first 200, then again to
    count them: at scale 100, a fifth of validation's time. This one asks the server for both in one query
    (:class:`UnexpectedRowsAndCount`), and returns GX's result as GX's does: the count as the observed value,
    the first rows as the details."""

    metric_dependencies = (UnexpectedRowsAndCount.metric_name,)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        found = metrics[UnexpectedRowsAndCount.metric_name]
        return {"success": found["count"] == 0,
                "result": {"observed_value": found["count"], "details": {"unexpected_rows": found["rows"]}}}


# ---------------------------------------------------------------- suites

@dataclass
class Suite:
    name: str
    table: str
    keys: list[str]  # the key columns of the table's rows, shown beside unexpected values
    raw_file: str | None  # the raw file whose rows these are, where the ledger places defects
    notes: str
    entries: list[dict]  # the expectations as written in the file
    gx_suite: object = None

    def rules(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "suite": self.name, "dimension": e["meta"]["dimension"], "severity": e["severity"],
            "rule": e["meta"]["description"], "expectation": e["type"], "column": e["kwargs"].get("column"),
        } for e in self.entries])


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.json"))


def load_suites(names: list[str] | None = None, folder: Path = SUITES_DIR) -> list[Suite]:
    """The suites ``names`` (default: all), each checked entry by entry. GX drops some invalid entries
    with only a log line, and refuses a whole suite for others: either way the error names the entry."""
    suites = []
    for name in names or sorted(p.stem for p in folder.glob("*.json")):
        path = folder / f"{name}.json"
        if not path.is_file():
            raise SuiteError(f"{path}: no such suite; the suites are {', '.join(suite_names())}")
        raw = json.loads(path.read_text())
        described = {}  # a rule's results are found by its description
        for number, entry in enumerate(raw["expectations"], start=1):
            where = f"{path}, expectation {number} ({entry.get('type')})"
            meta = entry.get("meta", {})
            if meta.get("dimension") not in DIMENSIONS or not meta.get("description"):
                raise SuiteError(f"{where}: meta needs a dimension ({', '.join(DIMENSIONS)}) and a description")
            if meta["description"] in described:
                raise SuiteError(f"{where}: it has the description of expectation {described[meta['description']]}; "
                                 "each rule needs its own")
            described[meta["description"]] = number
            if entry.get("severity") not in SEVERITIES:
                raise SuiteError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
            try:
                ExpectationConfiguration(**entry).to_domain_obj()
            except Exception as exc:  # GX's own reason, whatever its kind
                raise SuiteError(f"{where}: {str(exc).strip().splitlines()[0]}") from None
        gx_suite = gx.ExpectationSuite(name=raw["name"], expectations=raw["expectations"], meta=raw["meta"])
        if len(gx_suite.expectations) != len(raw["expectations"]):  # what GX dropped despite the checks above
            raise SuiteError(f"{path}: {len(raw['expectations'])} expectations in the file, "
                             f"{len(gx_suite.expectations)} loaded")
        meta = raw["meta"]
        raw_file = meta.get("raw_file", meta["table"] if meta["table"] in KEYS or meta["table"] == "quarantine" else None)
        suites.append(Suite(raw["name"], meta["table"], meta["keys"], raw_file, meta.get("notes", ""),
                            raw["expectations"], gx_suite))
    return suites


# ---------------------------------------------------------------- running

@dataclass
class Result:
    suite: str
    expectation: str
    column: str | None
    dimension: str
    severity: str
    description: str
    success: bool
    element_count: int  # the values checked
    unexpected_count: int
    unexpected_percent: float
    sample: list[dict] = field(default_factory=list)  # up to SAMPLE unexpected values, with their keys
    keys: list[dict] = field(default_factory=list)  # unexpected rows' keys: all, or for a rule over rows 200
    error: str | None = None
    raw_file: str | None = None  # whose rows they are, for the ledger


WORKERS = 2  # suites validated at once: GX spends much of its time in Python between queries, the server in SQL


def run(engine: Engine, suites: list[Suite], progress=None) -> list[Result]:
    """Validate ``suites`` on the warehouse, the largest tables first, :data:`WORKERS` at a time; return the
    results in suite order. ``progress`` is called with each suite's name when it is done.
    Raises :class:`SuiteError` naming a rule that could not run (bad SQL, a missing column)."""
    os.environ[URL_VARIABLE] = gx_url(engine.url)
    with engine.connect() as conn:
        size = dict(conn.execute(sa.text("select relname, reltuples from pg_class where relname = any(:t)"),
                                 {"t": [s.table for s in suites]}).all())
    columns = warehouse.columns(engine, [s.table for s in suites])
    for suite in suites:  # GX reads the keys only for rules that found rows: a wrong one must not wait for bad data
        for key in suite.keys:
            if key not in columns.get(suite.table, []):
                raise SuiteError(f"{SUITES_DIR / suite.name}.json: meta.keys: {key} is not a column of {suite.table}")
    done = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {pool.submit(_run_suite, engine, suite): suite for suite in
                   sorted(suites, key=lambda s: -size.get(s.table, 0))}
        for future in as_completed(futures):
            done[futures[future].name] = future.result()
            if progress:
                progress(futures[future].name)
    return [r for suite in suites for r in done[suite.name]]


def gx_url(url: URL) -> str:
    """The warehouse's URL for Great Expectations' own engine, whose sessions run with
    ``Settings.validate_parallel_workers`` workers per query (libpq's ``options``, after any the URL has)."""
    session = f"-c max_parallel_workers_per_gather={Settings().validate_parallel_workers}"
    options = " ".join(filter(None, [url.query.get("options"), session]))
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


def _run_suite(engine: Engine, suite: Suite) -> list[Result]:
    """One suite, in a GX context of its own (contexts are not shared across threads)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no "Calculating Metrics" on stderr
    # Through the variable: add_postgres checks a literal URL's host, which the embedded socket URL lacks.
    source = context.data_sources.add_postgres(name="warehouse", connection_string="${" + URL_VARIABLE + "}")
    try:
        batch = source.add_table_asset(name=suite.table, table_name=suite.table) \
            .add_batch_definition_whole_table("whole table").get_batch()
        # Counts first; then the keys of every unexpected row, for the column rules that found any (_add_keys).
        results = batch.validate(suite.gx_suite, result_format={"result_format": "BASIC",
                                                                "partial_unexpected_count": 0}).results
        flagged = [r for r in results if r.expectation_config.type != ExpectNoUnexpectedRows.expectation_type
                   and (r.result or {}).get("unexpected_count")]
        if flagged:
            _add_keys(context.get_validator(batch_request=batch.batch_request), suite, flagged)
    finally:  # GX's engines keep their connections until collected: two a suite, which add up in a long process
        for gx_engine in (source.get_engine(), source.get_execution_engine().engine):
            gx_engine.dispose()
    with engine.connect() as conn:
        denominators = _Denominators(conn)
        found = [_result(suite, r, denominators) for r in results]
    broken = [r for r in found if r.error]
    if broken:
        raise SuiteError("; ".join(f"{SUITES_DIR / suite.name}.json: '{r.description}' could not run: {r.error}"
                                   for r in broken))
    order = {e["meta"]["description"]: n for n, e in enumerate(suite.entries)}  # GX groups results by column
    return sorted(found, key=lambda r: order[r.description])


def _add_keys(validator, suite: Suite, results: list) -> None:
    """Add to each column rule's result the keys (``suite.keys``) and value of every row it found, GX's
    ``unexpected_index_list`` metric, computed alone. Asked for it in a validation (result format COMPLETE), GX
    would count each rule's rows again and list its values apart: three full scans where this is one."""
    runtime = {"result_format": {"result_format": "COMPLETE", "unexpected_index_column_names": suite.keys,
                                 "partial_unexpected_count": 1_000_000}}  # every row, not a sample
    wanted = {}  # a result's position: the metric that lists its rows, and where the result keeps it
    for n, r in enumerate(results):
        expectation = r.expectation_config.to_domain_obj()
        needs = expectation.get_validation_dependencies(execution_engine=validator.execution_engine,
                                                        runtime_configuration=runtime)
        for suffix, field_name in (("unexpected_index_list", "unexpected_index_list"),
                                   ("unexpected_values", "unexpected_list")):  # GX lists no keys of compound columns
            metric = needs.get_metric_configuration(f"{expectation.map_metric}.{suffix}")
            if metric:
                wanted[n] = metric, field_name
                break
    resolved, aborted = validator.compute_metrics([m for m, _ in wanted.values()], runtime_configuration=runtime)
    for n, (metric, field_name) in wanted.items():
        if metric.id in aborted:
            rule = results[n].expectation_config.meta["description"]
            raise SuiteError(f"{SUITES_DIR / suite.name}.json: the rows '{rule}' found could not be listed: "
                             f"{aborted[metric.id]['exception_info']}")
        results[n].result[field_name] = resolved[metric.id]


class _Denominators:
    """Row counts a rule over rows is measured against, each counted once."""

    def __init__(self, conn):
        self.conn, self.counts = conn, {}

    def rows(self, table: str) -> int:
        if table not in self.counts:
            self.counts[table] = self.conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table)))
        return self.counts[table]

    def rows_read(self, table: str) -> int:
        """Rows read from ``table``'s file by the loads the warehouse holds (the last full load and later
        increments): what the quarantine's refusals of that file are counted against."""
        key = f"read:{table}"
        if key not in self.counts:
            self.counts[key] = self.conn.scalar(sa.text("""
                select coalesce(sum((f ->> 'read')::bigint), 0)
                from ingest_loads, jsonb_array_elements(files) as f
                where load_id >= (select max(load_id) from ingest_loads where mode = 'replace')
                  and f ->> 'table' = :t"""), {"t": table})
        return self.counts[key]


def _result(suite: Suite, r, denominators: _Denominators) -> Result:
    config, meta, detail = r.expectation_config, r.expectation_config.meta, r.result or {}
    error = _error(r)
    if config.type == ExpectNoUnexpectedRows.expectation_type:
        unexpected = int(detail.get("observed_value") or 0)
        if "rows_read_from" in meta:
            checked = denominators.rows_read(meta["rows_read_from"])
        else:
            checked = denominators.rows(meta.get("rows_of", suite.table))
        rows = detail.get("details", {}).get("unexpected_rows") or []
    else:
        unexpected = int(detail.get("unexpected_count") or 0)
        checked = int(detail.get("element_count") or 0) - int(detail.get("missing_count") or 0)
        rows = detail.get("unexpected_index_list") or detail.get("unexpected_list") or []
        column = config.kwargs.get("column")
        if rows and not isinstance(rows[0], dict):  # values alone
            rows = [{column: value} for value in rows]
    rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
    keys = [{k: row[k] for k in suite.keys} for row in rows if all(k in row for k in suite.keys)]
    return Result(
        suite=suite.name, expectation=config.type, column=config.kwargs.get("column"), dimension=meta["dimension"],
        severity=config.severity.value, description=meta["description"], success=bool(r.success) and not error,
        element_count=checked, unexpected_count=unexpected,
        unexpected_percent=round(100 * unexpected / checked, 4) if checked else 0.0,
        sample=rows[:SAMPLE], keys=keys, error=error, raw_file=suite.raw_file)


def _error(r) -> str | None:
    """GX reports a rule that could not run as a failure; only its exception info tells them apart."""
    info = r.exception_info or {}
    if "raised_exception" in info:
        return info["exception_message"] if info["raised_exception"] else None
    messages = [v["exception_message"] for v in info.values() if v.get("raised_exception")]
    return messages[0] if messages else None


def _plain(value):
    """A value as JSON holds it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


# ---------------------------------------------------------------- scores

def scores(results: list[Result]) -> pd.DataFrame:
    """Per dimension: values checked, those unexpected, the score, and the overall score and grade."""
    frame = pd.DataFrame([asdict(r) for r in results], columns=[f.name for f in Result.__dataclass_fields__.values()])
    totals = frame.groupby("dimension")[["element_count", "unexpected_count"]].sum() \
        .reindex(list(DIMENSIONS), fill_value=0)
    totals["score"] = [100.0 if checked == 0 else round(100 * (1 - bad / checked), 2)
                       for checked, bad in zip(totals["element_count"], totals["unexpected_count"])]
    totals["rules"] = frame.groupby("dimension").size().reindex(list(DIMENSIONS), fill_value=0)
    totals["failed"] = frame[~frame["success"].astype(bool)].groupby("dimension").size() \
        .reindex(list(DIMENSIONS), fill_value=0)
    overall = round(float(totals["score"].mean()), 2)
    return totals.assign(overall_score=overall, grade=grade(overall)).rename_axis("dimension").reset_index()


def grade(score: float) -> str:
    return next((letter for floor, letter in GRADES if score >= floor), "F")


def check(results: list[Result], fail_on: str) -> None:
    """Raise :class:`QualityFailed`, in one line naming them, when rules of the ``fail_on`` severity failed."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    failed = [r for r in results if not r.success and (fail_on == "any" or (fail_on == "critical"
                                                                               and r.severity == "critical"))]
    if failed:
        raise QualityFailed(f"{len(failed)} {'critical ' if fail_on == 'critical' else ''}expectation(s) failed: "
                            + "; ".join(f"{r.suite}: {r.description} ({r.unexpected_count:,} rows)" for r in failed))


# ---------------------------------------------------------------- stored per run

def store(engine: Engine, run_id: str, results: list[Result]) -> None:
    """Append ``results`` to ``quality_results``, replacing those of the same run and suites (a retry)."""
    with engine.begin() as conn:
        conn.execute(sa.text("delete from quality_results where run_id = :run and suite = any(:suites)"),
                     {"run": run_id, "suites": sorted({r.suite for r in results})})
        if results:
            conn.execute(sa.text("""
                insert into quality_results (run_id, suite, expectation, column_name, dimension, severity, description,
                    success, element_count, unexpected_count, unexpected_percent, sample, error)
                values (:run_id, :suite, :expectation, :column, :dimension, :severity, :description, :success,
                    :element_count, :unexpected_count, :unexpected_percent, cast(:sample as jsonb), :error)"""),
                [{**asdict(r), "run_id": run_id, "sample": json.dumps(r.sample)} for r in results])


def stored(engine: Engine, run_id: str) -> list[Result]:
    """The results stored for ``run_id``, in suite order (keys beyond the sample are not stored)."""
    frame = pd.read_sql(sa.text("""
        select suite, expectation, column_name as column, dimension, severity, description, success, element_count,
               unexpected_count, unexpected_percent::float, sample, error
        from quality_results where run_id = :run order by suite, validated_at"""), engine, params={"run": run_id})
    return [Result(**row) for row in frame.to_dict("records")]


def store_scores(engine: Engine, run_id: str, table: pd.DataFrame) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("""
            insert into quality_scores (run_id, dimension, score, overall_score, grade)
            values (:run_id, :dimension, :score, :overall_score, :grade)
            on conflict (run_id, dimension) do update set score = excluded.score,
                overall_score = excluded.overall_score, grade = excluded.grade, scored_at = clock_timestamp()"""),
            [{"run_id": run_id, **row} for row in table[["dimension", "score", "overall_score", "grade"]]
                .to_dict("records")])


STEPS = ("both", "validate", "score")


def validate_and_score(engine: Engine, run_id: str, suites: list[str], step: str = "both"
                       ) -> tuple[list[Result], pd.DataFrame]:
    """What 04_validate does. ``validate`` runs ``suites`` (all when empty) and stores their results;
    ``score`` scores the results already stored for the run (the fan-in after parallel validations) and
    stores the scores; ``both`` does the one then the other. Returns the results and their scores."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, not {step!r}")
    if step == "score":
        results = stored(engine, run_id)
        if not results:
            raise ValueError(f"no results stored for run {run_id} to score: validate first")
    else:
        loaded = load_suites(suites or None)
        with progress.bar(len(loaded), "suites", "suites") as bar:
            results = run(engine, loaded, progress=lambda suite: bar.update())
        store(engine, run_id, results)
    table = scores(results)
    if step != "validate":
        store_scores(engine, run_id, table)
    return results, table


def ledger_report(engine: Engine, results: list[Result]) -> pd.DataFrame | str:
    """Per planted defect type: how many were planted, caught by a rule of its dimension, and missed; and per
    dimension, the rows its rules flagged that are no planted defect. Or why there is nothing to compare."""
    planted = warehouse.planted_defects(engine)
    if planted is None:
        return "No ground truth: the warehouse holds data that was not generated, so there is no ledger of defects."
    if not any(r.keys for r in results) and any(not r.success for r in results):
        return "Scored from stored results, which keep a sample of each rule's rows: compared in the validation steps."
    caught, alarms = against_ledger(results, planted)
    false = {r.dimension: 0 for r in results}
    for row in alarms.itertuples():
        false[next(r.dimension for r in results if r.description == row.rule)] += row.rows
    return caught.assign(**{"false alarms in the dimension": caught["dimension"].map(false)}).set_index("defect")


def failures(results: list[Result], rows: int = 3) -> pd.DataFrame:
    """The failed rules in words, critical first, each with its count and a few unexpected values."""
    failed = sorted((r for r in results if not r.success), key=lambda r: (r.severity != "critical", r.suite))
    return pd.DataFrame([{
        "severity": r.severity, "table": r.suite, "rule": r.description, "dimension": r.dimension,
        "rows": r.unexpected_count, "of": r.element_count,
        "for example": "; ".join(", ".join(f"{k}={v}" for k, v in row.items()) for row in r.sample[:rows]),
    } for r in failed], columns=["severity", "table", "rule", "dimension", "rows", "of", "for example"])


def summary(results: list[Result]) -> pd.DataFrame:
    return pd.DataFrame([{
        "table": r.suite, "rule": r.description, "dimension": r.dimension, "severity": r.severity,
        "checked": r.element_count, "unexpected": r.unexpected_count, "%": r.unexpected_percent,
        "passed": "yes" if r.success else "NO",
    } for r in results])


# ---------------------------------------------------------------- against the planted truth

def against_ledger(results: list[Result], planted: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each planted defect type that breaks a rule: planted, caught by a rule of its dimension, missed; and
    the unexpected rows that are no planted defect (false alarms), by rule."""
    planted = planted.assign(
        at=[(f, str(k)) for f, k in zip(planted["file"], planted["key"])],
        line_at=[(str(Path(d) / f), int(n)) for d, f, n in zip(planted["folder"], planted["file"], planted["line"])])
    flagged: dict[str, set] = {}  # dimension -> (file, key) or (path, line) of unexpected rows
    alarms = []
    known = set(planted["at"]) | set(planted["line_at"])
    for r in results:
        places = {_place(r.raw_file or r.suite, key) for key in r.keys}
        flagged.setdefault(r.dimension, set()).update(places)
        false = [p for p in places if p not in known]
        if false:
            alarms.append({"table": r.suite, "rule": r.description, "rows": len(false), "for example": false[:3]})
    rows = []
    for d in defects.CATALOGUE:
        mine = planted[planted["defect"] == d.name]
        if d.dimension is None or mine.empty:
            continue
        caught = [(a in flagged.get(d.dimension, ())) or (b in flagged.get(d.dimension, ()))
                  for a, b in zip(mine["at"], mine["line_at"])]
        rows.append({"defect": d.name, "dimension": d.dimension, "planted": len(mine), "caught": sum(caught),
                     "missed": len(mine) - sum(caught)})
    return (pd.DataFrame(rows, columns=["defect", "dimension", "planted", "caught", "missed"]),
            pd.DataFrame(alarms, columns=["table", "rule", "rows", "for example"]))


def _place(file: str, key: dict) -> tuple:
    """Where an unexpected row sits, as the ledger says it: a raw file and key, or a file's path and line."""
    if file == "quarantine":
        return key["source_file"], int(key["line"])
    columns = KEYS.get(file, tuple(key))
    return f"{file}.csv", "|".join(str(key[c]) for c in columns)

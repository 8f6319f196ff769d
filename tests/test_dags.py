"""The Airflow DAGs: loaded as Airflow loads them, one run end to end with `airflow dags test`, the daily DAG's
tasks run side by side for two days, and the local and docker-compose ways of running Airflow.

The weekly DAG runs end to end; the others run their tasks' functions here (what each task runs, in the DAG's
order, side by side where the DAG allows, templates rendered as Airflow renders them), which proves the same
work in a third of the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pendulum
import pytest
import sqlalchemy as sa
import yaml

from ecompipe import generate, ingest, local_airflow, runs, transform, warehouse
from ecompipe.settings import PROJECT_ROOT, Settings

from conftest import ecompipe

DAGS = PROJECT_ROOT / "dags"
SCALE = 0.02


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory, isolated_settings):
    """A throwaway Airflow home for this module; tasks retry nothing, so a failure shows at once."""
    home = tmp_path_factory.mktemp("airflow")
    saved = dict(os.environ)
    os.environ.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                      ECOMPIPE_DAG_RETRIES="0")
    yield home
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def dagbag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def edges(dag) -> set[tuple[str, str]]:
    return {(up, task.task_id) for task in dag.tasks for up in task.upstream_task_ids}


# ---------------------------------------------------------------- as Airflow loads them

def test_every_dag_loads_with_its_schedule_in_india_and_its_defaults(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"daily_quality_check", "refresh_aggregations", "weekly_full_pipeline"}
    schedules = {"daily_quality_check": "0 2 * * *", "refresh_aggregations": "0 3 * * *",
                 "weekly_full_pipeline": "0 4 * * 0"}
    for dag_id, dag in dagbag.dags.items():
        assert dag.timetable.expression == schedules[dag_id] and str(dag.timetable.timezone.name) == "Asia/Kolkata"
        assert dag.catchup is False and dag.max_active_runs == 1
        assert dag.doc_md and "ecompipe" in dag.tags and dag.owner == "ecompipe"
        for task in dag.tasks:
            assert task.retries == 0  # ECOMPIPE_DAG_RETRIES here; 2 by default
            assert task.retry_exponential_backoff and task.max_retry_delay


def test_the_weekly_dag_runs_the_six_stages_in_order(dagbag):
    dag = dagbag.dags["weekly_full_pipeline"]
    chain = ["take_warehouse", "open_run", "generate", "ingest", "transform", "validate", "anomalies", "report",
             "close_run"]
    assert edges(dag) == set(zip(chain, chain[1:]))
    assert {t.task_type for t in dag.tasks if t.task_id in chain[2:-1]} == {"PapermillOperator"}


def test_the_daily_dag_lands_the_day_then_validates_in_parallel_and_scores(dagbag):
    dag = dagbag.dags["daily_quality_check"]
    parts = {"validate_customers", "validate_orders", "validate_quarantine"}
    assert edges(dag) == {("take_warehouse", "open_run"), ("open_run", "generate"), ("generate", "ingest"),
                          ("ingest", "schema"), *(("schema", p) for p in parts), *((p, "validate_scoring") for p in parts),
                          ("validate_scoring", "close_run")}
    assert dag.get_task("close_run").trigger_rule == "all_done"
    outputs = {t.task_id: t.output_nb for t in dag.tasks if t.task_type == "PapermillOperator"}
    assert outputs["validate_orders"].endswith("/04_validate.orders.ipynb")  # parts have names of their own


def test_the_refresh_builds_level_by_level_side_by_side_then_publishes_once(dagbag):
    dag = dagbag.dags["refresh_aggregations"]
    built = [[f"transform_{name}" for name in level] for level in transform.LEVELS]
    expected = {("take_warehouse", "open_run"), ("open_run", "begin"), *(("begin", t) for t in built[0])}
    for before, after in zip(built, built[1:]):
        expected |= {(a, b) for a in before for b in after}
    expected |= {(t, "transform_publish") for t in built[-1]} | {("transform_publish", "close_run")}
    assert edges(dag) == expected


def test_the_day_landed_is_the_day_that_ended_in_india(dagbag):
    dag = dagbag.dags["daily_quality_check"]
    render = dag.get_template_env().from_string("{{ logical_date.in_timezone(dag.timezone).subtract(days=1)"
                                                ".strftime('%Y-%m-%d') }}").render
    # 02:00 IST on 2 December is 20:30 UTC on 1 December: the day that ended is 1 December
    assert render(dag=dag, logical_date=pendulum.datetime(2026, 12, 1, 20, 30, tz="UTC")) == "2026-12-01"
    assert render(dag=dag, logical_date=pendulum.datetime(2026, 12, 1, 23, 0, tz="UTC")) == "2026-12-01"


# ---------------------------------------------------------------- their tasks, run in the DAG's order

def run_tasks(dag, logical_date, conf: dict | None = None) -> dict:
    """The tasks of ``dag``, templates rendered as Airflow renders them, the tasks whose upstream tasks are done
    side by side, as Airflow's scheduler starts them; a task after a failure is skipped unless its trigger rule
    runs it anyway. Returns each task's result or exception."""
    params = {key: getattr(value, "value", value) for key, value in dag.params.items()} | (conf or {})
    results: dict = {}

    class TaskInstance:
        def xcom_pull(self, task_ids):
            return results[task_ids]

    context = {"dag": dag, "run_id": f"manual__{logical_date.isoformat()}", "logical_date": logical_date,
               "params": params, "ti": TaskInstance()}

    def run(task):
        if any(isinstance(results[u], Exception) or results[u] in ("skipped", False)  # False: a sensor still waiting
               for u in task.upstream_task_ids) and task.trigger_rule != "all_done":
            return "skipped"
        try:
            task.render_template_fields({**context, "task": task}, jinja_env=dag.get_template_env())
            return (task.python_callable(*task.op_args, **task.op_kwargs)
                    if hasattr(task, "python_callable") else task.execute(context))
        except Exception as exc:  # kept, as Airflow keeps a failed task's error
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        while len(results) < len(dag.tasks):
            ready = [t for t in dag.tasks if t.task_id not in results and t.upstream_task_ids <= results.keys()]
            results |= {task.task_id: result for task, result in zip(ready, pool.map(run, ready))}
    return results


def daily(day: str, **conf) -> tuple[dict, dict]:
    """The daily DAG's run at 02:00 IST the day after ``day``; returns its results and its manifest. The DAG is
    loaded afresh: rendering its templates changes its tasks, as it would an Airflow task instance's."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["daily_quality_check"]
    logical = pendulum.parse(day, tz="Asia/Kolkata").add(days=1, hours=2).in_timezone("UTC")
    results = run_tasks(dag, logical, conf)
    return results, runs.read(Settings().run_dir(results["open_run"]["run_id"]))


def orders(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("select order_ts::date::text, count(*) from orders group by 1")).all())


@pytest.fixture
def generated_warehouse(engine, tmp_path):
    def load(**spec):
        spec = generate.GenerateSpec(scale=SCALE, **spec)
        generate.write_dataset(spec, tmp_path)
        ingest.load(tmp_path, engine, as_of=spec.as_of, scale=spec.scale, seed=spec.seed)
        return spec
    return load


def test_two_consecutive_days_each_land_their_orders_once(airflow_home, engine, generated_warehouse):
    spec = generated_warehouse(clean=True)
    before = orders(engine)
    days = [(spec.as_of + pendulum.duration(days=n)).isoformat() for n in (1, 2)]
    first, manifest = daily(days[0], clean=True)
    assert not (failed := {t: r for t, r in first.items() if isinstance(r, Exception)}), failed
    assert manifest["status"] == "succeeded" and manifest["dag"] == "daily_quality_check"
    assert manifest["parameters"]["as_of"] == days[0] and manifest["quality"]["grade"] == "A"
    after_first = orders(engine)
    second, manifest = daily(days[1], clean=True)
    assert manifest["status"] == "succeeded"
    after_second = orders(engine)
    assert after_first[days[0]] > before.get(days[0], 0)
    assert after_second[days[1]] > 0 and after_second[days[0]] == after_first[days[0]]
    assert {d: n for d, n in after_second.items() if d not in days} == {d: n for d, n in before.items() if d not in days}
    run_dir = Settings().run_dir(manifest["run_id"])
    assert {p.name for p in run_dir.glob("*.ipynb")} == {"01_generate.ipynb", "02_ingest.ipynb",
                                                       "04_validate.customers.ipynb", "04_validate.orders.ipynb",
                                                       "04_validate.quarantine.ipynb", "04_validate.scoring.ipynb"}


def test_a_planted_critical_defect_fails_the_scoring_task_and_the_run(airflow_home, engine, generated_warehouse):
    spec = generated_warehouse(defects=generate.DefectRates(nonpositive_value=0.05))
    results, manifest = daily((spec.as_of + pendulum.duration(days=1)).isoformat())
    assert "PapermillExecutionError" in type(results["validate_scoring"]).__name__
    assert isinstance(results["close_run"], RuntimeError) and "failed in validate.scoring" in str(results["close_run"])
    assert manifest["status"] == "failed" and "QualityFailed" in manifest["error"]["exception"]
    assert "Every quantity is above 0." in manifest["error"]["exception"]
    listed = next(line for line in ecompipe("runs").stdout.splitlines() if line.startswith(manifest["run_id"]))
    assert "failed" in listed and "validate.scoring" in listed
    with engine.connect() as conn:  # the warehouse was given back
        assert conn.scalar(sa.text("select count(*) from run_lease")) == 0


def test_a_run_waits_for_the_warehouse_and_ecompipe_run_refuses_while_a_dag_holds_it(engine):
    assert warehouse.take_lease(engine, "daily_quality_check__one")
    try:
        assert not warehouse.take_lease(engine, "refresh_aggregations__two")  # its sensor would wait
        refused = ecompipe("run", "--stages", "transform")
        assert refused.returncode == 1 and "another run holds the warehouse (daily_quality_check__one)" in refused.stderr
    finally:
        warehouse.give_back_lease(engine, "daily_quality_check__one")
    with warehouse.run_lock(engine, "ecompipe run three"):
        assert not warehouse.take_lease(engine, "refresh_aggregations__two")
    assert warehouse.take_lease(engine, "refresh_aggregations__two")
    warehouse.give_back_lease(engine, "refresh_aggregations__two")


# ---------------------------------------------------------------- one DAG end to end, as Airflow runs it

def test_the_weekly_dag_runs_end_to_end_with_airflow(airflow_home, isolated_settings, engine):
    airflow = [str(Path(sys.executable).with_name("airflow"))]
    subprocess.run([*airflow, "db", "migrate"], check=True, capture_output=True, timeout=300)
    done = subprocess.run([*airflow, "dags", "test", "weekly_full_pipeline", "2026-11-29",
                           "-c", json.dumps({"scale": SCALE})], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = max((m for m in runs.all_runs() if m.get("dag") == "weekly_full_pipeline"),
                   key=lambda m: m["started_at"])
    assert manifest["status"] == "succeeded" and manifest["parameters"]["as_of"] == "2026-11-28"
    assert [s["name"] for s in manifest["stages"]] == ["generate", "ingest", "transform", "validate", "anomalies",
                                                       "report"]
    run_dir = isolated_settings.run_dir(manifest["run_id"])
    for stage in manifest["stages"]:
        assert stage["status"] == "succeeded" and (isolated_settings.outputs_dir.parent / stage["notebook"]).exists()
        assert (isolated_settings.outputs_dir.parent / stage["notebook"]).with_suffix(".html").exists()
    assert (run_dir / "report.html").exists() and manifest["quality"]["grade"] in "ABCDF"
    assert manifest["row_counts"]["customers"] == generate.GenerateSpec(scale=SCALE).n_customers
    index = (isolated_settings.outputs_dir / "index.html").read_text()
    assert f"<td>{manifest['run_id']}</td><td>weekly_full_pipeline</td>" in index


# ---------------------------------------------------------------- Airflow on this machine, and in containers

def test_make_airflow_serves_on_localhost_and_stops_everything_it_started(tmp_path):
    env = local_airflow.environment(tmp_path / "home", port=8793 + os.getpid() % 1000)
    group = local_airflow.start(env)
    try:
        url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health"
        deadline, health = time.monotonic() + 240, None
        while health is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    health = json.load(answer)
            except OSError:
                time.sleep(1)
        assert health and health["metadatabase"]["status"] == "healthy", "the API never answered"
        listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        ours = [line for line in listening.splitlines() if f":{env['AIRFLOW__API__PORT']} " in line]
        assert ours and all("127.0.0.1:" in line for line in ours)
    finally:
        local_airflow.stop(group)
    left = subprocess.run(["pgrep", "-g", str(group.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left running: {left}"


def test_the_compose_file_is_valid_and_wires_what_the_stack_needs():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    schema = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    services = compose["services"]
    assert set(services) == {"warehouse", "airflow-db", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                             "airflow-dag-processor", "airflow-triggerer"}
    assert all("healthcheck" in s and s["healthcheck"]["test"] for s in services.values())
    airflow = {name: s for name, s in services.items() if name.startswith("airflow-") and name != "airflow-db"}
    assert {s["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for s in airflow.values()} == {
        "${AIRFLOW_JWT_SECRET:?set in .env}"}
    assert all(s["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" for s in airflow.values())
    assert all("./outputs:/opt/ecompipe/outputs" in s["volumes"] for s in airflow.values())
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert services["airflow-init"]["command"] == ["airflow", "db", "migrate"]
    assert "airflow-db" in services["airflow-scheduler"]["depends_on"]
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    example = dict(line.split("=", 1) for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for variable in ("WAREHOUSE_PASSWORD", "AIRFLOW_DB_PASSWORD", "AIRFLOW_JWT_SECRET"):
        assert "${" + variable in text and variable in example  # from .env, never written in the file
        assert example[variable] not in text
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()

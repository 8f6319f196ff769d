"""The scheduled runs: what the three DAGs of ``dags/`` share (a face, like the CLI: it starts the stages).

Their defaults, a stage notebook as a task, and the tasks around a run.

Every task that runs a stage runs its notebook with Airflow's PapermillOperator, into the run's folder
``outputs/runs/<run_id>/``, where ``ecompipe run`` puts its runs: the same notebooks, manifest and HTML, so
``ecompipe runs`` and ``outputs/index.html`` list these runs too, marked with their DAG. A run takes the
warehouse first (a lease, which ``ecompipe run`` respects too), so the daily, refresh and weekly runs queue
instead of overlapping, and gives it back at the end, failed or not.

The operator runs papermill in report mode (code cells hidden in JupyterLab; their source stays in the
.ipynb, and the run's HTML copies show it) with no progress bar and no working directory: the notebooks find
everything through ecompipe's settings, and the warehouse URL through the environment, never a parameter.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pendulum
from airflow.providers.papermill.operators.papermill import PapermillOperator
from airflow.sdk import TriggerRule, task

from ecompipe import runs, warehouse
from ecompipe.kernels import KERNEL
from ecompipe.runner import RunParameters, close_record, open_record
from ecompipe.settings import Settings

TIME_ZONE = "Asia/Kolkata"
START = pendulum.datetime(2026, 1, 1, tz=TIME_ZONE)
RUN_ID = "{{ dag.dag_id }}__{{ run_id | path_safe }}"
"""The run's folder name: Airflow's run id (``manual__2026-12-02T12:40:53+00:00``) made safe for a path."""
YESTERDAY = "{{ logical_date.in_timezone(dag.timezone).subtract(days=1).strftime('%Y-%m-%d') }}"
"""The day that ended before the run: its logical date in India, less a day. ``ds`` would be UTC."""


def path_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-.")


def dag_arguments(doc: str, schedule: str, tags: list[str], params: dict) -> dict:
    """What every ecompipe DAG is given: one run at a time, no catch-up, retries with backoff."""
    settings = Settings()
    return dict(
        schedule=schedule, start_date=START, catchup=False, max_active_runs=1, doc_md=doc,
        tags=["ecompipe", *tags], params=params, render_template_as_native_obj=True,
        user_defined_filters={"path_safe": path_safe},
        default_args={"owner": "ecompipe", "retries": settings.dag_retries, "retry_delay": timedelta(minutes=1),
                      "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=15)},
    )


def notebook_name(stage: str, part: str = "") -> str:
    """``04_validate.ipynb``, or for one of a stage's parallel parts ``04_validate.orders.ipynb``."""
    stem = Settings().notebook(stage).stem
    return f"{stem}.{part}.ipynb" if part else f"{stem}.ipynb"


def stage(stage: str, parameters: dict, part: str = "") -> PapermillOperator:
    """A task running ``stage``'s notebook (or one ``part`` of it) into the run's folder."""
    settings = Settings()
    return PapermillOperator(
        task_id=f"{stage}_{part}" if part else stage,
        input_nb=str(settings.notebook(stage)),
        output_nb=f"{settings.runs_dir}/{RUN_ID}/{notebook_name(stage, part)}",
        parameters={"run_id": RUN_ID, **parameters},
        kernel_name=KERNEL,
    )


@task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
def take_warehouse(run: str) -> bool:
    """Wait until no other run holds the warehouse, then hold it. (``run``: Airflow reserves ``run_id``.)"""
    return warehouse.take_lease(warehouse.get_engine(), run)


@task
def open_run(run: str, dag_id: str, parameters: dict) -> dict:
    """The run's folder and first manifest. An increment's scale and seed are the warehouse's; returns the
    parameters the stages are given."""
    settings = Settings()
    if parameters.get("increment"):
        scale, seed = warehouse.increment_parameters(warehouse.get_engine(settings), parameters.get("scale"),
                                                     parameters.get("seed"))
        parameters = {**parameters, "scale": scale, "seed": seed}
    params = RunParameters(run_id=run, **parameters)
    open_record(params, settings, dag=dag_id)
    return params.recorded()


@task(trigger_rule=TriggerRule.ALL_DONE)
def close_run(run: str, expected: list[tuple[str, str]]) -> None:
    """Whatever happened before: finish the manifest, the HTML and the index, give the warehouse back, and
    fail if the run failed, so that Airflow says so too."""
    settings = Settings()
    try:
        if runs.read(settings.run_dir(run)) is None:
            raise RuntimeError(f"run {run} never started: the warehouse was not free, or its folder not made")
        manifest = close_record(run, expected, settings)
    finally:
        warehouse.give_back_lease(warehouse.get_engine(settings), run)
    if manifest["status"] != "succeeded":
        error = manifest["error"]
        raise RuntimeError(f"run {run} failed in {error.get('stage')}: {error.get('exception')}")

"""
### weekly_full_pipeline

Every Sunday at 04:00 IST: the six stages in order, on a history regenerated up to the day that just ended.
The new history replaces the warehouse, increments included.

generate → ingest → transform → validate → anomalies → report, each a notebook run by papermill into
`outputs/runs/<run_id>/`, then the run's manifest, HTML pages and `outputs/index.html`.
Parameters: `scale` and `seed` of the generated shop (`clean` for no defects).
"""

from __future__ import annotations

from airflow.sdk import DAG

from ecompipe.scheduled import RUN_ID, YESTERDAY, close_run, dag_arguments, notebook_name, open_run, stage, take_warehouse

STAGES = ("generate", "ingest", "transform", "validate", "anomalies", "report")

with DAG(dag_id="weekly_full_pipeline",
         **dag_arguments(__doc__, "0 4 * * 0", ["weekly"], {"scale": 1.0, "seed": 42, "clean": False})) as dag:
    parameters = open_run(RUN_ID, dag.dag_id, {"scale": "{{ params.scale }}", "seed": "{{ params.seed }}",
                                               "clean": "{{ params.clean }}", "as_of": YESTERDAY})
    generate = stage("generate", {"scale": "{{ params.scale }}", "seed": "{{ params.seed }}",
                                  "clean": "{{ params.clean }}", "as_of": YESTERDAY})
    tasks = [generate, *(stage(name, {}) for name in STAGES[1:])]
    take_warehouse(RUN_ID) >> parameters >> tasks[0]
    for before, after in zip(tasks, tasks[1:]):
        before >> after
    tasks[-1] >> close_run(RUN_ID, [(name, notebook_name(name)) for name in STAGES])

"""
### daily_quality_check

Every day at 02:00 IST: the day that just ended lands in the warehouse and is checked.

1. **land**: the day's increment is generated (its new signups and orders, against the warehouse's customers and
   products, with the scale and seed of its last full load) and upserted;
2. **schema**: the core tables still have the columns of the raw format;
3. **validate**, in parallel: the quality rules of the customers and products, of the orders and their lines, and of
   the quarantine (`04_validate.<part>`);
4. **score** the results together, failing the run when a critical rule failed (`fail_on`).

The marts are rebuilt by `refresh_aggregations` at 03:00.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from ecompipe.scheduled import RUN_ID, YESTERDAY, close_run, dag_arguments, notebook_name, open_run, stage, take_warehouse
from ecompipe import warehouse

PARTS = {"customers": ["customers", "products"], "orders": ["orders", "order_items"], "quarantine": ["quarantine"]}
"""Validated side by side: each part is one notebook, its suites named after the tables they check."""


@task
def schema() -> None:
    """Fail when a core table has lost or gained a column against the raw format."""
    problems = warehouse.schema_problems(warehouse.get_engine())
    if problems:
        raise RuntimeError("the core tables do not match the raw format: " + "; ".join(problems))


with DAG(dag_id="daily_quality_check",
         **dag_arguments(__doc__, "0 2 * * *", ["daily", "quality"], {"fail_on": "critical", "clean": False})) as dag:
    parameters = open_run(RUN_ID, dag.dag_id, {"increment": True, "as_of": YESTERDAY, "clean": "{{ params.clean }}",
                                               "fail_on": "{{ params.fail_on }}"})
    generate = stage("generate", {"increment": True, "as_of": YESTERDAY, "clean": "{{ params.clean }}",
                                  "scale": "{{ ti.xcom_pull(task_ids='open_run')['scale'] }}",
                                  "seed": "{{ ti.xcom_pull(task_ids='open_run')['seed'] }}"})
    ingest = stage("ingest", {"increment": True, "as_of": YESTERDAY})
    validations = [stage("validate", {"suites": suites, "step": "validate"}, part=part) for part, suites in PARTS.items()]
    score = stage("validate", {"step": "score", "fail_on": "{{ params.fail_on }}"}, part="scoring")
    take_warehouse(RUN_ID) >> parameters >> generate >> ingest >> schema() >> validations >> score
    score >> close_run(RUN_ID, [("generate", notebook_name("generate")), ("ingest", notebook_name("ingest")),
                                *((f"validate.{p}", notebook_name("validate", p)) for p in PARTS),
                                ("validate.scoring", notebook_name("validate", "scoring"))])

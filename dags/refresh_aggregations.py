"""
### refresh_aggregations

Every day at 03:00 IST: the marts rebuilt from the warehouse, with the transform's guarantees.

The summary tables are built aside, level by level, side by side where their inputs allow (`order_totals` with
`product_summary`, then `customer_summary` with `daily_sales_summary`, then `cohort_retention`, then
`monthly_sales_summary`); one last task checks them (every table built, no load committed meanwhile, revenue
agreeing by product and customer, by day and month) and swaps them all in, views recreated, in one transaction.
Readers see the old marts or the new, never a mix; a failure leaves the old ones.
"""

from __future__ import annotations

from airflow.sdk import DAG, cross_downstream, task

from ecompipe.scheduled import RUN_ID, close_run, dag_arguments, notebook_name, open_run, stage, take_warehouse
from ecompipe import transform, warehouse


@task
def begin() -> None:
    """An empty build schema, marked with the newest load."""
    transform.begin(warehouse.get_engine())


with DAG(dag_id="refresh_aggregations", **dag_arguments(__doc__, "0 3 * * *", ["daily", "marts"], {})) as dag:
    levels = [[stage("transform", {"step": "build", "models": [name]}, part=name) for name in level]
              for level in transform.LEVELS]
    publish = stage("transform", {"step": "publish"}, part="publish")
    steps = [[take_warehouse(RUN_ID)], [open_run(RUN_ID, dag.dag_id, {})], [begin()], *levels, [publish]]
    for before, after in zip(steps, steps[1:]):
        cross_downstream(before, after)
    publish >> close_run(RUN_ID, [(f"transform.{name}", notebook_name("transform", name))
                                  for level in transform.LEVELS for name in level]
                         + [("transform.publish", notebook_name("transform", "publish"))])

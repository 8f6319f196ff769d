-- Who holds the warehouse across processes: a scheduled run (an Airflow DAG run, whose tasks are separate
-- processes) takes this lease for its whole length; `ecompipe run` holds a session lock instead, and each
-- refuses while the other holds the warehouse (ecompipe.warehouse). One row at most.

create table if not exists run_lease (
    only_one  boolean primary key default true check (only_one),
    holder    text not null,
    taken_at  timestamptz not null default clock_timestamp()
);

"""Build the marts from the core tables: summary tables and analytical views, in SQL.

Each model is one query in ``sql/transform/<name>.sql``, in jaffle-shop's shape (import CTEs, logic CTEs,
``final``) with a header stating its grain and inputs. Models refer to each other by name.

A build is atomic and idempotent. Every table is built in a private schema (``marts_build``), where models
find each other's new versions first; then, in one transaction, the old tables are swapped for the new and
the views are recreated. Readers keep seeing the old tables until the commit, and are held up only by the
swap. A failure anywhere leaves the previous marts as they were. An object of your own that depends on a
mart makes the swap fail, naming it, rather than being dropped silently.

The build uses both of a small machine's cores: two connections build the tables, each as soon as the
tables it reads are built (:data:`INPUTS`), and commit them into the private schema, unseen until the swap.
So that every table reads the same core data, the build holds off loads (ingest's advisory lock, shared)
from its start to its end: a load waits for it, and it waits for a load under way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import Engine

from ecompipe import progress
from ecompipe.settings import PROJECT_ROOT, Settings
from ecompipe.warehouse import blaming, set_local

log = logging.getLogger(__name__)

TABLES = ("order_totals", "customer_summary", "daily_sales_summary", "monthly_sales_summary", "cohort_retention",
          "product_summary")
"""Materialised models. cohort_retention, every customer's months of activity, is a table rather than a view:
the transform's notebook and the report both read it, and as a view each read took 13-15 s at scale 100 (10 s
to build)."""
VIEWS = ("rfm_segments", "product_abc", "sales_trends", "category_performance")
"""Models computed on read, over the tables."""
BUILD_SCHEMA = "marts_build"
WORKERS = 2
"""Connections building tables at once: one a core."""

PLANNER = {
    # Hash tables of millions of groups are slow here. orders and order_items are stored in order_id order:
    # merging them and summing each order's lines as they stream past takes 18 s at scale 100, hashing 30 s.
    "order_totals": {"enable_hashagg": "off"},
    # Likewise a million customers: sorting their orders beats hashing them (9 s against 15 s).
    "customer_summary": {"enable_hashagg": "off"},
    # On one core, leaving the other to order_totals, which it builds beside.
    "product_summary": {"max_parallel_workers_per_gather": "0"},
}


class TransformError(RuntimeError):
    """A model failed; the message names its file."""


@dataclass
class Built:
    name: str
    kind: str  # table or view
    rows: int | None  # None for a view, which is computed when read
    seconds: float


def model_path(name: str) -> Path:
    return Settings().sql_dir / "transform" / f"{name}.sql"


def model_sql(name: str) -> str:
    return model_path(name).read_text()


def _inputs(name: str) -> tuple[str, ...]:
    """The tables of the marts a model reads: the names after its ``from`` and ``join``."""
    read = {found.lower() for found in re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", model_sql(name), re.I)}
    return tuple(table for table in TABLES if table in read and table != name)


INPUTS = {name: _inputs(name) for name in TABLES}
"""Each table's inputs among the tables: a table builds once they are built."""


def _levels() -> tuple[tuple[str, ...], ...]:
    levels, placed = [], set()
    while len(placed) < len(TABLES):
        level = tuple(t for t in TABLES if t not in placed and set(INPUTS[t]) <= placed)
        if not level:
            raise TransformError(f"these tables read each other in a circle: {', '.join(sorted(set(TABLES) - placed))}")
        levels.append(level)
        placed.update(level)
    return tuple(levels)


LEVELS = _levels()
"""The tables in the order their inputs allow: each reads core tables and tables of the levels before it, so
the tables of a level can be built side by side (the scheduled refresh, in steps)."""


def build(engine: Engine, progress=None) -> list[Built]:
    """Rebuild every table and view of the marts; return what was built, in :data:`TABLES` then
    :data:`VIEWS` order. ``progress`` is an optional callable, called with each :class:`Built` as it is done.
    Raises :class:`TransformError` naming the model that failed.
    """
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            # One build at a time, the build schema is ours, and no load commits until the build does. Session
            # locks, as they span transactions: the session ends with this function (see finally), so nothing
            # can leave them held.
            cur.execute("select pg_advisory_lock(hashtext('ecompipe.transform'))")
            cur.execute("select pg_advisory_lock_shared(hashtext('ecompipe.ingest'))")
            cur.execute(sql.SQL("drop schema if exists {0} cascade; create schema {0}").format(
                sql.Identifier(BUILD_SCHEMA)))
            conn.commit()  # the other connection builds in it too
            try:
                tables = _build_tables_side_by_side(engine, conn, progress)
                views = _publish(cur, progress)
                conn.commit()
            except BaseException:
                conn.rollback()
                cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(BUILD_SCHEMA)))
                conn.commit()
                raise
        return [*tables, *views]
    finally:
        conn.invalidate()  # a pooled session would keep the locks, the settings and any half-done transaction


def _build_tables_side_by_side(engine: Engine, conn, progress) -> list[Built]:
    """Build :data:`TABLES` on :data:`WORKERS` connections (``conn`` and new ones), each table as soon as its
    inputs are built and a connection is free; return them in :data:`TABLES` order."""
    extra = [engine.raw_connection() for _ in range(WORKERS - 1)]
    free = queue.SimpleQueue()
    for connection in (conn, *extra):
        free.put(connection)

    def build_one(name: str) -> Built:
        for table in INPUTS[name]:
            futures[table].result()  # built already, or building on the other connection: submitted before
        connection = free.get()
        try:
            return _build_tables(connection, [name])[0]
        finally:
            free.put(connection)

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = {}
            for level in LEVELS:  # a table is queued after its inputs, so no worker waits on a table queued later
                for name in level:
                    futures[name] = pool.submit(build_one, name)
            try:
                for future in as_completed(futures.values()):
                    _report(future.result(), progress)  # the first failure stops the build
            except BaseException:
                for future in futures.values():
                    future.cancel()
                while not all(future.done() for future in futures.values()):  # a cancel sent between two
                    for connection in (conn, *extra):  # statements, or to an idle one, is lost: repeat it
                        with contextlib.suppress(psycopg2.Error):  # the failure above is the one to report
                            connection.cancel()
                    time.sleep(0.1)
                raise
        return [futures[name].result() for name in TABLES]
    finally:
        for connection in extra:
            connection.invalidate()


def _report(item: Built, progress) -> None:
    log.info("%s: %s rows in %.2f s", item.name, item.rows, item.seconds)
    if progress:
        progress(item)


# ---------------------------------------------------------------- the same build, in steps

STEPS = ("all", "build", "publish")


def run(engine: Engine, step: str = "all", models: list[str] | tuple = ()) -> list[Built]:
    """What 03_transform does, with a progress bar: ``all``, the whole :func:`build`; or, in the scheduled
    refresh, ``build`` the tables ``models`` after :func:`begin`, then ``publish`` them."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, not {step!r}")
    size = {"all": len(TABLES) + len(VIEWS), "build": len(models), "publish": len(VIEWS)}[step]
    with progress.bar(size, "models", "models") as bar:
        if step == "all":
            return build(engine, progress=lambda model: bar.update())
        built = build_step(engine, list(models)) if step == "build" else publish(engine)
        bar.update(len(built))
        return built


def begin(engine: Engine) -> None:
    """Start a build in steps (the scheduled refresh): an empty build schema, marked with the newest load.

    Steps in other processes cannot hold off loads from the first to the last as :func:`build` does. Instead
    the run holds the warehouse (``warehouse.take_lease``), so no run loads meanwhile, and :func:`publish`
    refuses to swap in tables built across a load that committed anyway.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql(f'drop schema if exists "{BUILD_SCHEMA}" cascade; create schema "{BUILD_SCHEMA}"')
        conn.exec_driver_sql(f"comment on schema \"{BUILD_SCHEMA}\" is '{_newest_load(conn)}'")


def build_step(engine: Engine, names: list[str]) -> list[Built]:
    """Build tables ``names`` into the build schema, each reading the tables built before it, and commit."""
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise TransformError(f"no such table model: {', '.join(unknown)}; the tables are {', '.join(TABLES)}")
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regnamespace(%s) is not null", (BUILD_SCHEMA,))
            if not cur.fetchone()[0]:
                raise TransformError(f"no build under way (schema {BUILD_SCHEMA}): begin one first")
        conn.rollback()
        return _build_tables(conn, [name for name in TABLES if name in names])
    finally:
        conn.invalidate()


def publish(engine: Engine) -> list[Built]:
    """Swap the tables built in steps in and recreate the views, in one transaction, once the build schema
    holds every table, no load committed since :func:`begin`, and the summaries agree with each other."""
    conn = engine.raw_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("select obj_description(to_regnamespace(%s), 'pg_namespace')", (BUILD_SCHEMA,))
            marked = cur.fetchone()[0]
            if marked is None:
                raise TransformError(f"no build under way (schema {BUILD_SCHEMA}) to publish")
            cur.execute("select table_name from information_schema.tables where table_schema = %s", (BUILD_SCHEMA,))
            missing = sorted(set(TABLES) - {row[0] for row in cur.fetchall()})
            if missing:
                raise TransformError(f"not published: {', '.join(missing)} not built")
            cur.execute("select coalesce(max(load_id), 0) from ingest_loads")
            if str(cur.fetchone()[0]) != marked:
                raise TransformError("not published: a load committed while the marts were built; build again")
            cur.execute(sql.SQL("""
                select (select sum(total_revenue) from {s}.product_summary)
                           is not distinct from (select sum(total_spent) from {s}.customer_summary),
                       (select sum(total_revenue) from {s}.daily_sales_summary)
                           is not distinct from (select sum(total_revenue) from {s}.monthly_sales_summary)"""
                                ).format(s=sql.Identifier(BUILD_SCHEMA)))
            if not all(cur.fetchone()):
                raise TransformError("not published: the tables built disagree on revenue (by product and by "
                                     "customer, or by day and by month)")
            views = _publish(cur)
        conn.commit()
        return views
    finally:
        conn.invalidate()


def _newest_load(conn) -> int:
    return conn.exec_driver_sql("select coalesce(max(load_id), 0) from ingest_loads").scalar()


def _build_tables(conn, names: list[str]) -> list[Built]:
    """Build tables ``names`` in turn into the build schema, each reading those built before it, and commit."""
    try:
        with conn.cursor() as cur:
            set_local(cur, Settings().transform_tuning)
            cur.execute("show search_path")
            set_local(cur, {"search_path": f"{BUILD_SCHEMA}, {cur.fetchone()[0]}"})
            built = [_create_table(cur, name) for name in names]
        conn.commit()
        return built
    except BaseException:
        conn.rollback()
        raise


def _publish(cur, progress=None) -> list[Built]:
    """Swap the tables built in, and recreate the views over them; the caller commits."""
    _swap(cur)
    views = []
    for name in VIEWS:
        started = time.perf_counter()
        with _blaming(name):
            cur.execute(sql.SQL("create view {} as\n").format(sql.Identifier(name)) + sql.SQL(model_sql(name)))
        views.append(Built(name, "view", None, round(time.perf_counter() - started, 3)))
        _report(views[-1], progress)
    return views


def _create_table(cur, name: str) -> Built:
    started = time.perf_counter()
    with _blaming(name), _planner(cur, PLANNER.get(name, {})):
        cur.execute(sql.SQL("create table {} as\n").format(sql.Identifier(BUILD_SCHEMA, name))
                    + sql.SQL(model_sql(name)))
        rows = cur.rowcount
    cur.execute(sql.SQL("analyze {}").format(sql.Identifier(BUILD_SCHEMA, name)))
    return Built(name, "table", rows, round(time.perf_counter() - started, 3))


@contextlib.contextmanager
def _planner(cur, settings: dict[str, str]):
    """Planner settings for one statement."""
    previous = {}
    for name, value in settings.items():
        cur.execute("select current_setting(%s), set_config(%s, %s, true)", (name, name, value))
        previous[name] = cur.fetchone()[0]
    yield
    set_local(cur, previous)


def _blaming(name: str):
    """Say which model failed, and where it is."""
    return blaming(model_path(name).relative_to(PROJECT_ROOT), TransformError)


def _swap(cur) -> None:
    """Replace the published tables with the ones just built; drop our views first, recreated after. A model is
    dropped as what it was published as: a warehouse of an earlier version may hold a table's model as a view."""
    cur.execute("select current_schema()")
    published = cur.fetchone()[0]
    cur.execute("select relname, relkind from pg_class where relnamespace = to_regnamespace(%s) and relname = any(%s)",
                (published, [*VIEWS, *TABLES]))
    kinds = dict(cur.fetchall())
    for name in (*reversed(VIEWS), *reversed(TABLES)):
        if name in kinds:
            drop = sql.SQL("drop view {}" if kinds[name] == "v" else "drop table {}")
            cur.execute(drop.format(sql.Identifier(published, name)))
    for name in TABLES:
        cur.execute(sql.SQL("alter table {} set schema {}").format(
            sql.Identifier(BUILD_SCHEMA, name), sql.Identifier(published)))
    cur.execute(sql.SQL("drop schema {}").format(sql.Identifier(BUILD_SCHEMA)))

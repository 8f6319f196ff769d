"""The one door to PostgreSQL: engines, the schema and its seeds, the run lock, and the few questions the
stages ask of the warehouse's own bookkeeping (loads, increment ids).

With ``ECOMPIPE_DATABASE_URL`` unset, the warehouse is the embedded PostgreSQL (:mod:`ecompipe.embedded`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from ecompipe import seeds
from ecompipe.embedded import EmbeddedPostgres, WarehouseError, pg_bin
from ecompipe.rawformat import COLUMNS, DEFECTS_FILE
from ecompipe.settings import Settings

log = logging.getLogger(__name__)



TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)
"""A dropped connection, a server restarting: the connection's fault, not the statement's."""


@contextlib.contextmanager
def blaming(source, error: type[Exception]):
    """Turn a database error into ``error`` naming ``source`` (a file, a model), with the server's detail and
    context (line and column, where it knows them). Connection failures pass through as they are."""
    try:
        yield
    except TRANSIENT:
        raise
    except psycopg2.Error as exc:
        diag = exc.diag
        parts = [diag.message_primary or str(exc).strip(), diag.message_detail, diag.context]
        raise error(f"{source}: " + "; ".join(p.strip() for p in parts if p)) from None


def normalise_url(raw: str) -> URL:
    """Parse a database URL and pin it to the psycopg2 driver.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` URL to psycopg 3, which is not installed.
    """
    try:
        url = make_url(raw.replace("postgres://", "postgresql://", 1) if raw.startswith("postgres://") else raw)
    except sa.exc.ArgumentError:  # the text itself is not shown: it may hold a password
        raise WarehouseError("ECOMPIPE_DATABASE_URL is not a database URL; expected one like "
                             "postgresql://user:password@host:5432/dbname") from None
    if url.get_backend_name() != "postgresql":
        raise WarehouseError(f"ECOMPIPE_DATABASE_URL must point at PostgreSQL, not {url.get_backend_name()!r}")
    return url.set(drivername="postgresql+psycopg2")


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def embedded(settings: Settings | None = None) -> EmbeddedPostgres:
    return EmbeddedPostgres((settings or Settings()).warehouse_dir)


def database_url(settings: Settings | None = None) -> URL:
    """The warehouse's URL; starts the embedded server when no external URL is configured."""
    settings = settings or Settings()
    if settings.database_url is not None:
        return normalise_url(settings.database_url.get_secret_value())
    server = embedded(settings)
    server.ensure_running()
    return server.url


CONNECT_TIMEOUT_S = 10


@functools.cache
def _engine_for(url: URL) -> Engine:
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        apply_schema(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise WarehouseError(f"cannot reach the warehouse at {masked(url)}: {reason}") from None
    return engine


def get_engine(settings: Settings | None = None) -> Engine:
    """A pooled engine on the warehouse, with the schema in place. One per URL per process."""
    return _engine_for(database_url(settings))


def apply_schema(engine: Engine, settings: Settings | None = None) -> None:
    """Run ``sql/schema/*.sql`` in name order, then write the seeds into their tables. All idempotent."""
    files = sorted(((settings or Settings()).sql_dir / "schema").glob("*.sql"))
    with engine.begin() as conn:
        # Two kernels creating the same table at once would collide on the catalog.
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('ecompipe.schema'))"))
        with conn.connection.cursor() as cur:  # the driver's cursor, with no parameters: a % in the SQL is text
            for path in files:
                cur.execute(path.read_text())
        for name in seeds.names():
            seeds.write(conn, name)


def psql_invocation(settings: Settings | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment for an interactive psql; the password travels in PGPASSWORD, not argv."""
    url = database_url(settings)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    params = {
        "host": url.query.get("host") or url.host,
        "port": url.port,
        "user": url.username,
        "dbname": url.database,
    }
    conninfo = " ".join(f"{k}={_conninfo_quote(str(v))}" for k, v in params.items() if v)
    return [pg_bin("psql"), conninfo], env


def _conninfo_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_counts(engine: Engine, tables: list[str], lock_timeout: str = "0") -> dict[str, int]:
    """``count(*)`` of each table that exists. With a ``lock_timeout`` (e.g. ``'2s'``), give up on a table
    another session holds exclusively (a load truncating it) instead of waiting for it."""
    counts = {}
    with engine.connect() as conn:
        conn.execute(sa.text("select set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
        for table in tables:
            if sa.inspect(conn).has_table(table):
                counts[table] = conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table)))
    return counts


def columns(engine: Engine, tables: list[str]) -> dict[str, list[str]]:
    """The columns of each of ``tables`` that exists, in order."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("""select table_name, array_agg(column_name::text order by ordinal_position)
            from information_schema.columns where table_schema = current_schema() and table_name = any(:t)
            group by table_name"""), {"t": list(tables)}).all())


def schema_problems(engine: Engine) -> list[str]:
    """How the core tables differ from the raw format: a missing table, a column missing or added."""
    columns_of = columns(engine, list(COLUMNS))
    problems = []
    for table, expected in COLUMNS.items():
        have = columns_of.get(table)
        if have is None:
            problems.append(f"{table}: no such table")
        elif list(have) != list(expected):
            problems.append(f"{table}: columns {', '.join(have)}, expected {', '.join(expected)}")
    return problems


def set_local(cur, settings: dict[str, str]) -> None:
    """Set PostgreSQL ``settings`` until the transaction ends."""
    for name, value in settings.items():
        cur.execute("select set_config(%s, %s, true)", (name, value))


def last_full_load(engine: Engine):
    """The newest full (replace) load: its id, folder, as-of date, and the generator's scale and seed (null
    for files that were not generated). None before any load."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "select load_id, source_dir, as_of, scale, seed from ingest_loads where mode = 'replace' "
            "order by load_id desc limit 1")).one_or_none()


def increment_parameters(engine: Engine, scale: float | None, seed: int | None) -> tuple[float, int]:
    """The scale and seed a generated increment must use: those of the warehouse's last full load.

    Values left out are taken from it; values given must match it, or the increment is refused.
    """
    last = last_full_load(engine)
    if last is None:
        raise ValueError("the warehouse holds no full load to add an increment to: run the pipeline first "
                         "(`ecompipe run`)")
    if last.scale is None:  # loaded from --raw-dir: only the user knows what to generate against it
        if scale is None or seed is None:
            raise ValueError(f"the warehouse's last full load ({last.source_dir}) was not generated, so an "
                             "increment needs --scale and --seed")
        return scale, seed
    right = (float(last.scale), int(last.seed))
    if (scale is not None and float(scale) != right[0]) or (seed is not None and int(seed) != right[1]):
        raise ValueError(
            f"the warehouse was loaded with data generated at scale {right[0]:g} and seed {right[1]}; an increment "
            f"must use the same: --scale {right[0]:g} --seed {right[1]}, or leave both out")
    return right


def increment_state(engine: Engine, day: date, ids_below: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a day's increment is drawn against: customers who signed up before ``day`` (with ids below
    ``ids_below``: not the generator's orphans) and products with a price."""
    with engine.connect() as conn:
        customers = pd.read_sql(sa.text(
            "select customer_id, signup_date from customers where signup_date < :day and customer_id < :orphan"
        ), conn, params={"day": day, "orphan": ids_below})
        products = pd.read_sql(sa.text(
            "select product_id, unit_price from products where unit_price > 0 order by product_id"), conn)
    if customers.empty or products.empty:
        raise ValueError(f"An increment for {day} needs customers who signed up before it and products in the "
                         "warehouse: run the full pipeline first (`ecompipe run`).")
    return customers, products


def reserve_increment_ids(engine: Engine, day: date, customers: int, orders: int, ids_below: int) -> tuple[int, int]:
    """The first customer and order id of ``day``'s increment: reserved once in ``increment_ids``, then reused."""
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('ecompipe.increment_ids'))"))
        block = conn.execute(sa.text(
            "select first_customer_id, customers, first_order_id, orders from increment_ids where day = :day"
        ), {"day": day}).one_or_none()
        if block is not None:
            if (block.customers, block.orders) != (customers, orders):
                raise ValueError(f"{day} was generated before with other parameters ({block.customers} signups and "
                                 f"{block.orders} orders, now {customers} and {orders}): use the same scale and seed.")
            return block.first_customer_id, block.first_order_id
        first_customer, first_order = conn.execute(sa.text("""
            select greatest((select max(customer_id) from customers where customer_id < :orphan),
                            (select max(first_customer_id + customers - 1) from increment_ids), 0) + 1,
                   greatest((select max(order_id) from orders where order_id < :orphan),
                            (select max(first_order_id + orders - 1) from increment_ids), 0) + 1
        """), {"orphan": ids_below}).one()
        conn.execute(sa.text("insert into increment_ids values (:day, :fc, :c, :fo, :o)"),
                     {"day": day, "fc": first_customer, "c": customers, "fo": first_order, "o": orders})
    return first_customer, first_order


def planted_defects(engine: Engine) -> pd.DataFrame | None:
    """The defects planted in the data the warehouse holds: the ledgers (``_defects.csv``) of its last full load
    and of the increments since, each row with the folder it came from. None when any of them has no ledger:
    data that was not generated, for which there is no ground truth."""
    with engine.connect() as conn:
        folders = conn.scalars(sa.text("""select source_dir from ingest_loads
            where load_id >= (select max(load_id) from ingest_loads where mode = 'replace') order by load_id""")).all()
    parts = []
    for folder in folders:
        path = Path(folder) / DEFECTS_FILE
        if not path.is_file():
            return None
        parts.append(pd.read_csv(path, dtype={"key": str}).assign(folder=folder))
    return pd.concat(parts, ignore_index=True) if parts else None


RUN_LOCK = "ecompipe.run"


LEASE_LOCK = "ecompipe.lease"
LEASE_HOURS = 12  # a scheduled run that died without giving the warehouse back loses it after this long


@contextlib.contextmanager
def run_lock(engine: Engine, holder: str):
    """Hold the warehouse for one run: a session advisory lock, released when the run ends or dies. Refused at
    once while another run holds it: another ``ecompipe run``, or a scheduled run's lease."""
    conn = engine.connect()
    try:
        conn.execute(sa.text("select set_config('application_name', :name, false)"), {"name": holder[:63]})
        if not conn.scalar(sa.text("select pg_try_advisory_lock(hashtext(:key))"), {"key": RUN_LOCK}):
            others = conn.scalars(sa.text(
                "select application_name from pg_stat_activity a join pg_locks l on l.pid = a.pid "
                "where l.locktype = 'advisory' and l.granted and a.pid <> pg_backend_pid()")).all()
            _refuse(', '.join(sorted(set(others))) or "unknown")
        conn.commit()
        with conn.begin():  # serialised with take_lease: one sees the other
            conn.execute(sa.text("select pg_advisory_xact_lock(hashtext(:key))"), {"key": LEASE_LOCK})
            leased = _lease_holder(conn, holder)
        if leased:
            _refuse(leased)
        yield
    finally:
        conn.invalidate()  # ends the session, and the lock with it; close() alone would pool it, lock held
        conn.close()


def take_lease(engine: Engine, holder: str) -> bool:
    """Take the warehouse for a run spanning processes (a scheduled run); False while another run holds it.
    The lease is kept until :func:`give_back_lease`, or lapses after :data:`LEASE_HOURS`."""
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext(:key))"), {"key": LEASE_LOCK})
        if conn.scalar(sa.text("select count(*) from pg_locks where locktype = 'advisory' and granted "
                               "and objid::int = hashtext(:key)"), {"key": RUN_LOCK}) or _lease_holder(conn, holder):
            return False
        conn.execute(sa.text("""insert into run_lease (holder) values (:h)
                                on conflict (only_one) do update set holder = :h, taken_at = clock_timestamp()"""),
                     {"h": holder})
    return True


def give_back_lease(engine: Engine, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("delete from run_lease where holder = :h"), {"h": holder})


def _lease_holder(conn, me: str) -> str | None:
    """Who else holds the lease, if anyone does and it has not lapsed."""
    return conn.scalar(sa.text("""select holder from run_lease where holder <> :me
                                  and taken_at > clock_timestamp() - make_interval(hours => :hours)"""),
                       {"me": me, "hours": LEASE_HOURS})


def _refuse(holder: str):
    raise WarehouseError(f"another run holds the warehouse ({holder}); two runs never interleave: wait for it to "
                         "finish and try again")

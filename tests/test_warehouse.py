"""The warehouse: URL handling, and the embedded PostgreSQL's start, reuse, sharing and recovery."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecompipe import warehouse
from ecompipe.embedded import EmbeddedPostgres, WarehouseError


@pytest.mark.parametrize("raw", ["postgresql://u:p@h:5433/db", "postgres://u:p@h:5433/db",
                                 "postgresql+psycopg://u:p@h:5433/db"])
def test_urls_are_pinned_to_psycopg2(raw):
    url = warehouse.normalise_url(raw)
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == ("u", "p", "h", 5433, "db")


def test_a_non_postgres_url_is_refused():
    with pytest.raises(WarehouseError, match="PostgreSQL"):
        warehouse.normalise_url("mysql://u:p@h/db")


def test_masked_url_hides_the_password():
    shown = warehouse.masked(warehouse.normalise_url("postgresql://alice:s3cret@db.example:5432/shop"))
    assert "s3cret" not in shown and "alice" in shown and "***" in shown


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


@pytest.fixture
def server(tmp_path):
    server = EmbeddedPostgres(tmp_path / "wh")
    yield server
    server.stop()


def test_embedded_server_starts_on_first_use_and_is_reused(server, monkeypatch):
    server.ensure_running()
    first = postmaster_pid(server)

    def start_again():
        raise AssertionError("a running server was started again")

    monkeypatch.setattr(server, "_start", start_again)
    server.ensure_running()
    assert postmaster_pid(server) == first
    engine = sa.create_engine(server.url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select current_database()")) == "ecompipe"
        assert conn.scalar(sa.text("show listen_addresses")) == ""  # Unix socket only
    engine.dispose()


def test_embedded_server_survives_its_starter_and_restarts_after_stop(server, tmp_path):
    starter = "from pathlib import Path; from ecompipe.embedded import EmbeddedPostgres; " \
              f"EmbeddedPostgres(Path({str(server.directory)!r})).ensure_running()"
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=60)
    assert server.is_ready(), "the server stopped when the process that started it exited"
    server.stop()
    assert not server.is_ready()
    server.ensure_running()
    assert server.is_ready()


def test_many_processes_starting_at_once_share_one_server(server):
    code = ("import sys; from pathlib import Path; from ecompipe.embedded import EmbeddedPostgres; "
            "s = EmbeddedPostgres(Path(sys.argv[1])); s.ensure_running(); "
            "print((s.pgdata / 'postmaster.pid').read_text().split()[0])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(server.directory)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    pids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(pids) == 1


def test_embedded_server_recovers_after_its_postmaster_is_killed(server):
    server.ensure_running()
    engine = sa.create_engine(server.url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table survivor (x int); insert into survivor values (42)"))
    engine.dispose()
    os.kill(postmaster_pid(server), signal.SIGKILL)
    server.ensure_running()
    engine = sa.create_engine(server.url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select x from survivor")) == 42
    engine.dispose()


def test_starting_changes_nothing_outside_the_warehouse_folder(tmp_path):
    """As root, the wheel's own launcher adds a system user and opens up every parent folder. We must not."""
    deep = tmp_path / "private" / "project"
    deep.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    parents = [p for p in [deep, *deep.parents] if p != Path("/")]
    modes_before = {p: stat.S_IMODE(p.stat().st_mode) for p in parents}
    passwd_before = Path("/etc/passwd").read_text()
    server = EmbeddedPostgres(deep / ".warehouse")
    try:
        server.ensure_running()
        assert server.is_ready()
    finally:
        server.stop()
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in parents} == modes_before
    assert Path("/etc/passwd").read_text() == passwd_before


def test_schema_is_created_idempotently(engine):
    warehouse.apply_schema(engine)
    warehouse.apply_schema(engine)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"customers", "products", "orders", "order_items"} <= tables


def test_a_deep_checkout_gets_a_short_socket_folder_and_works(tmp_path):
    server = EmbeddedPostgres(tmp_path / ("d" * 120))
    assert len(str(server.socket_dir / ".s.PGSQL.5432")) < 108
    assert EmbeddedPostgres(tmp_path).socket_dir == tmp_path.resolve()
    try:
        server.ensure_running()
        assert server.is_ready()
        assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
    finally:
        server.stop()

"""ECOMPIPE_DATABASE_URL: the whole pipeline against a separately started PostgreSQL 15 over TCP,
with a password. The server is the system's own PostgreSQL binaries, started for this test only."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecompipe import generate, warehouse
from ecompipe.generate import GenerateSpec
from ecompipe.rawformat import COLUMNS
from ecompipe.settings import Settings

from conftest import ecompipe
from test_ingest import check_hard_rules

SCALE = 0.01


def _system_bin_dir() -> Path | None:
    """The system's PostgreSQL 15 (.ci/run installs it where it is missing), else any other version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: p != "/usr/lib/postgresql/15/bin/initdb")
    return Path(found[0]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def external_url():
    bin_dir = _system_bin_dir()
    if bin_dir is None:
        pytest.skip("no system PostgreSQL binaries under /usr/lib/postgresql/*/bin: external-server test not run")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; the system's postgres user runs the server
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the system PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="ecompipe-extpg-", dir="/tmp"))
    password = secrets.token_urlsafe(12)
    (home / "pw").write_text(password + "\n")
    if as_user:
        shutil.chown(home, "postgres")
        shutil.chown(home / "pw", "postgres")
    port = _free_port()
    run = lambda *argv: subprocess.run([*as_user, *map(str, argv)], check=True, capture_output=True, timeout=60)
    run(bin_dir / "initdb", "-D", home / "data", "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={home / 'pw'}")
    run(bin_dir / "pg_ctl", "-D", home / "data", "-l", home / "log", "-w", "start",
        "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -k {home}")
    try:
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", password
    finally:
        run(bin_dir / "pg_ctl", "-D", home / "data", "-w", "-m", "fast", "stop")
        shutil.rmtree(home, ignore_errors=True)


def test_the_pipeline_runs_against_an_external_postgres(external_url, isolated_settings):
    url, password = external_url
    done = ecompipe("run", "--scale", str(SCALE), "--run-id", "external", env={"ECOMPIPE_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        assert conn.scalar(sa.text("show server_version")).split(".")[0] == _system_bin_dir().parent.name
        counts = {t: conn.scalar(sa.text(f"select count(*) from {t}")) for t in COLUMNS}
    engine.dispose()
    spec = GenerateSpec(scale=SCALE)
    assert (counts["customers"], counts["products"], counts["orders"]) == (spec.n_customers, 495, spec.n_orders)

    run_dir = isolated_settings.run_dir("external")
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in {".ipynb", ".json"}:
            assert password not in path.read_text(), f"the database password leaked into {path}"


def test_hard_rules_hold_on_postgres_15_without_pg_input_is_valid(external_url, tmp_path):
    url, _ = external_url
    generate.write_dataset(GenerateSpec(scale=0.02, clean=True), tmp_path)
    engine = warehouse.get_engine(Settings(database_url=url))
    with engine.connect() as conn:  # this is the path PostgreSQL 15 takes, or the test proves nothing
        assert conn.scalar(sa.text("select current_setting('server_version_num')::int / 10000")) == 15
        assert not conn.scalar(sa.text("select count(*) from pg_proc where proname = 'pg_input_is_valid'"))
    check_hard_rules(engine, tmp_path)

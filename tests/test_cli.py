"""The CLI: exit codes and the messages a user sees."""

from __future__ import annotations

import json
import shutil

import nbformat

from conftest import ecompipe


def test_help_lists_the_commands():
    done = ecompipe("--help")
    assert done.returncode == 0
    for command in ("run", "runs", "db"):
        assert command in done.stdout


def test_an_unknown_stage_is_a_usage_error():
    done = ecompipe("run", "--stages", "generate,bogus")
    assert done.returncode == 2
    assert "bogus" in done.stderr


def test_a_missing_raw_dir_is_named(tmp_path):
    done = ecompipe("run", "--raw-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert "nowhere" in done.stderr and "Traceback" not in done.stderr


def test_db_url_masks_the_password():
    done = ecompipe("db", "url", env={"ECOMPIPE_DATABASE_URL": "postgresql://alice:s3cret@db.example:5432/shop"})
    assert done.returncode == 0
    assert done.stdout.strip() == "postgresql+psycopg2://alice:***@db.example:5432/shop"


def test_db_shell_runs_psql_on_the_warehouse(engine):
    done = ecompipe("db", "shell", "--", "-c", "select 40 + 2")
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout


def test_a_failing_stage_exits_nonzero_with_one_line_and_keeps_the_notebook(isolated_settings, tiny_raw, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_raw, bad)
    (bad / "products.csv").write_text("product_id,product_name\n1,Widget\n")
    done = ecompipe("run", "--raw-dir", str(bad), "--run-id", "failing-run")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ecompipe: run failing-run failed: stage ingest failed in ")
    assert "02_ingest.ipynb, cell " in last and "IngestError" in last and "products.csv" in last

    run_dir = isolated_settings.run_dir("failing-run")
    executed = nbformat.read(run_dir / "02_ingest.ipynb", as_version=4)
    assert any(o.get("ename") == "IngestError" for c in executed.cells for o in c.get("outputs", []))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert [(s["name"], s["status"]) for s in manifest["stages"]] == [("ingest", "failed")]


def test_a_second_run_on_the_same_warehouse_refuses_clearly(isolated_settings, engine):
    import subprocess
    import sys
    import time

    import sqlalchemy as sa

    from ecompipe.settings import PROJECT_ROOT

    first = subprocess.Popen([sys.executable, "-m", "ecompipe.cli", "run", "--scale", "0.01", "--run-id", "holder"],
                             cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        holding = sa.text("select count(*) from pg_stat_activity where application_name = 'ecompipe run holder'")
        while True:
            with engine.connect() as conn:  # a new transaction each time: activity is snapshotted per transaction
                if conn.scalar(holding):
                    break
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the warehouse"
            time.sleep(0.1)
        second = ecompipe("run", "--scale", "0.01", "--run-id", "intruder")
        assert second.returncode == 1
        assert "another run holds the warehouse (ecompipe run holder)" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err

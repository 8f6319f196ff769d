"""The CLI: exit codes and the messages a user sees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import nbformat
import pytest

from ecompipe.settings import PROJECT_ROOT, Settings

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
    error = manifest["error"]
    assert (error["stage"], error["notebook"]) == ("ingest", "outputs/runs/failing-run/02_ingest.ipynb")
    assert isinstance(error["cell"], int) and error["exception"].startswith("IngestError: ")
    assert "products.csv" in error["exception"]
    listed = next(line for line in ecompipe("runs").stdout.splitlines() if line.startswith("failing-run "))
    assert "failed" in listed and f"ingest, cell {error['cell']}: IngestError: " in listed
    assert "parameters" in manifest and "scale" not in manifest["parameters"] and "seed" not in manifest["parameters"]


def test_a_second_run_on_the_same_warehouse_refuses_clearly(isolated_settings, engine):
    import subprocess
    import sys
    import time

    import sqlalchemy as sa

    from ecompipe.settings import PROJECT_ROOT, Settings

    # Three stages hold the warehouse long enough for a second CLI to start and be refused.
    first = subprocess.Popen([sys.executable, "-m", "ecompipe.cli", "run", "--scale", "0.01", "--run-id", "holder",
                              "--stages", "generate,ingest,transform"],
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
        assert first.poll() is None, "the holder finished first: the refusal was not shown to be at once"
        assert second.returncode == 1
        assert "another run holds the warehouse (ecompipe run holder)" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    refused = json.loads((isolated_settings.run_dir("intruder") / "manifest.json").read_text())
    assert refused["status"] == "failed" and refused["stages"] == []
    assert refused["error"]["stage"] is None
    assert "another run holds the warehouse (ecompipe run holder)" in refused["error"]["exception"]
    assert refused["row_counts"] == {}, "a refused run counted rows: it waited for the other run's tables"


# ---------------------------------------------------------------- what a user sees

def test_help_reads_as_text_and_every_run_option_explains_itself():
    top = ecompipe("--help")
    assert top.returncode == 0 and "``" not in top.stdout
    run = ecompipe("run", "--help")
    options = re.findall(r"^  (--[a-z-]+)(.*(?:\n {20,}.*)*)", run.stdout, re.M)
    assert {name for name, _ in options} >= {"--scale", "--seed", "--as-of", "--force", "--raw-dir"}
    assert all(text.strip() for _, text in options), [name for name, text in options if not text.strip()]


def test_a_misspelled_run_option_is_reported_with_the_run_usage():
    done = ecompipe("run", "--sede", "3")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ecompipe run ")
    assert "unrecognized arguments: --sede 3" in done.stderr


@pytest.mark.parametrize("url, shown", [
    ("not a url at all", "ECOMPIPE_DATABASE_URL is not a database URL"),
    ("postgresql://alice:s3cret@127.0.0.1:1/shop", "cannot reach the warehouse at postgresql+psycopg2://alice:***@127.0.0.1:1/shop"),
])
def test_a_bad_database_url_is_one_line_with_the_password_masked(url, shown):
    done = ecompipe("run", "--stages", "transform", env={"ECOMPIPE_DATABASE_URL": url})
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and shown in done.stderr, done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_db_stop_says_whether_it_stopped_anything(tmp_path):
    env = {"ECOMPIPE_WAREHOUSE_DIR": str(tmp_path / "wh")}
    assert ecompipe("db", "url", env=env).returncode == 0  # starts it
    assert ecompipe("db", "stop", env=env).stdout.strip() == "Embedded warehouse stopped."
    assert ecompipe("db", "stop", env=env).stdout.strip() == "The embedded warehouse is not running."


def test_make_lab_runs_as_root_and_install_shows_progress():
    lab = subprocess.run(["make", "-n", "lab"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert ("--allow-root" in lab.stdout) == (os.geteuid() == 0), lab.stdout
    install = subprocess.run(["make", "-n", "-W", "pyproject.toml", ".venv/.installed"], capture_output=True,
                             text=True, cwd=PROJECT_ROOT)
    steps = re.findall(r'echo "  \[(\d)/3\]', install.stdout)
    assert steps == ["1", "2", "3"], install.stdout
    assert "--quiet --python" not in install.stdout  # the long step shows what uv is doing


def test_runs_prune_deletes_older_raw_files_and_says_which(tmp_path):
    settings = Settings(outputs_dir=tmp_path / "outputs")  # runs of this test only
    for n in (1, 2, 3):
        run_dir = settings.run_dir(f"run-{n}")
        (run_dir / "raw").mkdir(parents=True)
        (run_dir / "raw" / "customers.csv").write_text("customer_id\n1\n")
        manifest = {"run_id": f"run-{n}", "status": "succeeded", "started_at": f"2026-11-0{n}T00:00:00+00:00",
                    "parameters": {"increment": True}, "stages": [{"name": "generate", "status": "succeeded"}]}
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
    env = {"ECOMPIPE_OUTPUTS_DIR": str(settings.outputs_dir)}
    assert ecompipe("runs", "--keep", "1", env=env).returncode == 2, "--keep alone is a usage error"
    done = ecompipe("runs", "--prune", "--keep", "1", env=env)
    assert done.returncode == 0 and done.stdout.strip() == "Deleted the raw files of 2 run(s): run-2, run-1."
    assert sorted(p.parent.name for p in settings.runs_dir.glob("*/raw")) == ["run-3"]

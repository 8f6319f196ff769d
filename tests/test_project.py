"""Project hygiene that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib

import nbformat
import yaml

from ecompipe import STAGES
from ecompipe.settings import PROJECT_ROOT, Settings


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]).union(*project["optional-dependencies"].values())
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if not p.startswith("-")} == wanted
    assert "python=3.11" in env["dependencies"]


def test_every_stage_has_its_notebook_committed_clean():
    for stage in STAGES:
        notebook = nbformat.read(Settings().notebook(stage), as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert notebook.cells[0].cell_type == "markdown", f"{stage}: should open with what it does"
        assert [c for c in code if "parameters" in c.metadata.get("tags", [])], f"{stage}: no parameters cell"
        assert not any(c.outputs or c.execution_count for c in code), f"{stage}: committed with outputs"
        assert not any(re.search(r"^\s*(def|class)\s", c.source, re.M) for c in code), f"{stage}: logic in notebook"
        assert notebook.metadata.kernelspec.name == "ecompipe"


def test_parameters_cells_hold_literals_only():
    for stage in STAGES:
        notebook = nbformat.read(Settings().notebook(stage), as_version=4)
        params = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        for statement in ast.parse(params.source).body:
            assert isinstance(statement, ast.Assign), f"{stage}: {ast.unparse(statement)}"
            ast.literal_eval(statement.value)  # raises on anything but a literal


def test_benches_use_a_warehouse_of_their_own():
    code = ("import sys; sys.path.insert(0, 'bench'); import own_warehouse; from ecompipe.settings import Settings; "
            "s = Settings(); print(s.warehouse_dir); print(s.database_url)")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "ECOMPIPE_DATABASE_URL": "postgresql://user:pw@users-own-server/shop"})
    warehouse_dir, url = done.stdout.split()
    assert warehouse_dir == str(PROJECT_ROOT / ".warehouse-bench") and url == "None"
    touching = 0
    for bench in (PROJECT_ROOT / "bench").glob("bench_*.py"):
        text = bench.read_text()
        # a bench reaches a warehouse through these modules, or by running the ecompipe command
        if re.search(r"^from ecompipe import .*\b(warehouse|ingest|transform|runner)\b", text, re.M) \
                or re.search(r"with_name\(\"ecompipe\"\)", text):
            touching += 1
            assert "import own_warehouse" in text, f"{bench.name} would run on the user's warehouse"
    assert touching >= 3


def test_the_lock_pins_every_dependency_and_make_installs_from_it():
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    pinned = {p["name"] for p in lock["package"]}
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]).union(*project["optional-dependencies"].values())
    names = {re.split(r"[<>=\[ ]", w)[0].lower() for w in wanted}
    assert names <= pinned, names - pinned
    assert "uv sync --locked" in (PROJECT_ROOT / "Makefile").read_text()

"""Project hygiene that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
import re
import tomllib

import nbformat
import yaml

from ecompipe import STAGES
from ecompipe.settings import PROJECT_ROOT, Settings


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
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

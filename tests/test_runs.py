"""The record of runs: which raw files a notebook opened by hand loads."""

from __future__ import annotations

from datetime import date

import pytest

from ecompipe import runs
from ecompipe.settings import Settings


def record(settings: Settings, run_id: str, started: str, status="succeeded", increment=False,
           stages=("generate", "ingest", "transform"), raw_dir="", header_only=False) -> None:
    run_dir = settings.run_dir(run_id)
    (run_dir / "raw").mkdir(parents=True)
    (run_dir / "raw" / "customers.csv").write_text("customer_id\n" if header_only else "customer_id\n1\n")
    params = {"run_id": run_id, "increment": increment, "raw_dir": raw_dir, "as_of": "2026-11-24"}
    if not raw_dir:
        params |= {"scale": 0.5, "seed": 7}
    runs.write(run_dir, {"run_id": run_id, "status": status, "started_at": started, "parameters": params,
                         "stages": [{"name": s, "status": status} for s in stages]})


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(outputs_dir=tmp_path / "outputs")


def test_by_default_the_newest_successful_full_run_is_loaded_never_a_failed_run_or_an_increment(settings):
    record(settings, "full", "2026-11-01T00:00:00+00:00")
    record(settings, "failed", "2026-11-02T00:00:00+00:00", status="failed", header_only=True)
    record(settings, "increment", "2026-11-03T00:00:00+00:00", increment=True)
    record(settings, "transform-only", "2026-11-04T00:00:00+00:00", stages=("transform",))
    source = runs.raw_source(settings)
    assert source.path == settings.run_dir("full") / "raw"
    assert not source.explicit, "picked by default: the ingest guard must apply"
    assert (source.as_of, source.scale, source.seed, source.run_id) == (date(2026, 11, 24), 0.5, 7, "full")


def test_a_runs_own_files_and_a_named_folder_are_asked_for(settings, tmp_path):
    record(settings, "older", "2026-11-01T00:00:00+00:00")
    record(settings, "mine", "2026-11-02T00:00:00+00:00", status="running")
    own = runs.raw_source(settings, run_id="mine")
    assert own.path == settings.run_dir("mine") / "raw" and own.explicit
    named = runs.raw_source(settings, run_id="another", raw_dir=str(tmp_path))
    assert named.path == tmp_path and named.explicit and named.as_of is None and named.scale is None
    assert runs.raw_source(settings, raw_dir=str(tmp_path), as_of="2025-01-31").as_of == date(2025, 1, 31)


def test_a_run_without_files_of_its_own_loads_the_newest_full_run(settings):
    record(settings, "full", "2026-11-01T00:00:00+00:00")
    source = runs.raw_source(settings, run_id="ingest-only")  # `ecompipe run --stages ingest`
    assert source.path == settings.run_dir("full") / "raw" and not source.explicit


def test_a_successful_raw_dir_run_counts_as_a_full_history(settings, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    record(settings, "loaded", "2026-11-05T00:00:00+00:00", stages=("ingest", "transform"), raw_dir=str(mine))
    source = runs.raw_source(settings)
    assert source.path == mine and not source.explicit and source.scale is None


def test_with_no_successful_run_the_error_says_what_to_do(settings):
    record(settings, "failed", "2026-11-02T00:00:00+00:00", status="failed")
    with pytest.raises(FileNotFoundError, match=r"No successful full run .*ecompipe run"):
        runs.raw_source(settings)

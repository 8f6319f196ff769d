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


def test_pruning_keeps_the_newest_runs_raw_files_and_always_the_newest_full_runs(settings, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    record(settings, "full-old", "2026-11-01T00:00:00+00:00")
    record(settings, "full", "2026-11-02T00:00:00+00:00")
    record(settings, "named", "2026-11-03T00:00:00+00:00", status="failed", raw_dir=str(mine))
    for day in (4, 5, 6):
        record(settings, f"increment-{day}", f"2026-11-0{day}T00:00:00+00:00", increment=True)
    record(settings, "running", "2026-11-07T00:00:00+00:00", status="running")
    record(settings, "failed", "2026-11-08T00:00:00+00:00", status="failed")

    pruned = runs.prune(settings, keep=2)

    kept = sorted(p.parent.name for p in settings.runs_dir.glob("*/raw"))
    assert kept == ["failed", "full", "running"], "the newest 2, the newest full run, one still running"
    assert sorted(p.parent.name for p in pruned) == ["full-old", "increment-4", "increment-5", "increment-6", "named"]
    assert mine.is_dir(), "a --raw-dir folder is the user's"
    assert "raw_pruned_at" in runs.read(settings.run_dir("full-old")), "the manifest says where the files went"
    assert runs.raw_source(settings).run_id == "full", "what a notebook opened by hand loads is still there"
    assert runs.prune(settings, keep=2) == [], "pruning again deletes nothing"


def test_a_finished_run_applies_the_retention_setting(settings, monkeypatch):
    from ecompipe import runner

    for day in (1, 2, 3):
        record(settings, f"full-{day}", f"2026-11-0{day}T00:00:00+00:00")
    params = runner.RunParameters(run_id="new")
    manifest = runner.open_record(params, settings)
    monkeypatch.setattr(runner, "_row_counts", lambda settings: {})
    runner._finish(manifest | {"status": "failed"}, params, settings.model_copy(update={"keep_raw_runs": 1}))
    assert sorted(p.parent.name for p in settings.runs_dir.glob("*/raw")) == ["full-3"], (
        "the failed new run has no raw files; of the rest only the newest full run's are kept")

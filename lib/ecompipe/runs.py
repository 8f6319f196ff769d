"""The record of runs: each run's ``manifest.json`` under ``outputs/runs/<run_id>/``.

The runner writes manifests; the stages read them, for instance to find the raw files a notebook opened
by hand should load. Both sit above this module, so it imports nothing of theirs.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path

from ecompipe.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def new_run_id() -> str:
    """Sortable by start time, unique across processes: ``20261126T001900Z-3fa1``."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def write(run_dir: Path, manifest: dict) -> None:
    """Replace the run's manifest atomically: a reader sees the old one or the new, never half."""
    tmp = run_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(run_dir / MANIFEST)


def read(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return None


def all_runs(settings: Settings | None = None) -> list[dict]:
    """Every run with a readable manifest, newest first."""
    settings = settings or Settings()
    runs = []
    for path in settings.runs_dir.glob(f"*/{MANIFEST}"):
        try:
            runs.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            log.warning("Skipping unreadable manifest %s", path)
    return sorted(runs, key=lambda m: m["started_at"], reverse=True)


@dataclass(frozen=True)
class RawSource:
    """A folder of raw files to load, what it holds, and whether someone asked for it by name."""

    path: Path
    explicit: bool  # named by a run (its own generation, or --raw-dir), not picked by default
    as_of: date | None  # the data's as-of date, when its record says
    scale: float | None = None  # the generator's, when generated
    seed: int | None = None
    run_id: str = ""  # the run whose record this is


def raw_source(settings: Settings | None = None, run_id: str = "", raw_dir: str = "", as_of: str = "") -> RawSource:
    """What the ingest stage loads.

    ``raw_dir`` when given; else the raw files that run ``run_id`` generated; else (a notebook opened by
    hand, or a run without a generate stage) those of the newest run that succeeded in generating a
    full history, never a failed run's or an increment's. ``as_of``, when given, overrides the record's.
    """
    settings = settings or Settings()
    source = _find(settings, run_id, raw_dir)
    return replace(source, as_of=date.fromisoformat(as_of)) if as_of else source


def _find(settings: Settings, run_id: str, raw_dir: str) -> RawSource:
    if raw_dir:
        return RawSource(Path(raw_dir), explicit=True, as_of=None, run_id=run_id)
    if run_id:
        own = settings.run_dir(run_id) / "raw"
        if (own / "customers.csv").is_file():
            return _from_manifest(read(settings.run_dir(run_id)) or {}, own, explicit=True)
    for manifest in all_runs(settings):
        source = _full_history(settings, manifest)
        if source is not None:
            return source
    raise FileNotFoundError(
        f"No successful full run under {settings.runs_dir} to load: generate data first "
        "(`ecompipe run`, or 01_generate.ipynb), or name a folder (`ecompipe run --raw-dir DIR`).")


def _full_history(settings: Settings, manifest: dict) -> RawSource | None:
    """The raw files of a run that succeeded in generating (or loading) a full history, or None."""
    params = manifest.get("parameters", {})
    if manifest.get("status") != "succeeded" or params.get("increment"):
        return None
    if params.get("raw_dir"):
        path = Path(params["raw_dir"])
        loaded = any(s["name"] == "ingest" for s in manifest.get("stages", []))
        return _from_manifest(manifest, path, explicit=False) if loaded and path.is_dir() else None
    generated = any(s["name"] == "generate" for s in manifest.get("stages", []))
    path = settings.run_dir(manifest["run_id"]) / "raw"
    return _from_manifest(manifest, path, explicit=False) if generated and path.is_dir() else None


def _from_manifest(manifest: dict, path: Path, explicit: bool) -> RawSource:
    params = manifest.get("parameters", {})
    as_of = (manifest.get("ingest") or {}).get("as_of") or params.get("as_of")  # as loaded, else as asked
    return RawSource(path, explicit=explicit, as_of=date.fromisoformat(as_of) if as_of else None,
                     scale=params.get("scale"), seed=params.get("seed"), run_id=manifest.get("run_id", ""))


def prune(settings: Settings | None = None, keep: int | None = None) -> list[Path]:
    """Delete the raw files of all but the newest ``keep`` runs (default: the retention setting); return the
    folders deleted, each noted in its run's manifest.

    Never deleted: the raw files of the newest successful full run (what a notebook opened by hand loads),
    of a run still running, and any folder outside ``outputs/runs`` (a ``--raw-dir`` is the user's).
    """
    settings = settings or Settings()
    keep = settings.keep_raw_runs if keep is None else keep
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, not {keep}")
    with_raw = [m for m in all_runs(settings) if (settings.run_dir(m["run_id"]) / "raw").is_dir()]
    try:
        protected = _find(settings, "", "").run_id
    except FileNotFoundError:
        protected = None
    pruned = []
    for manifest in with_raw[keep:]:
        if manifest["run_id"] == protected or manifest.get("status") == "running":
            continue
        run_dir = settings.run_dir(manifest["run_id"])
        shutil.rmtree(run_dir / "raw")
        write(run_dir, manifest | {"raw_pruned_at": datetime.now(timezone.utc).isoformat()})
        pruned.append(run_dir / "raw")
    if pruned:
        log.info("Retention: deleted the raw files of %s run(s), keeping the newest %s", len(pruned), keep)
    return pruned

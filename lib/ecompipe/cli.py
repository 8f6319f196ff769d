"""ecompipe: run the pipeline, list past runs, reach the warehouse.

Stages are imported only by the command that needs them, so `ecompipe --help`, `ecompipe db url` and
`ecompipe runs` answer at once.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import subprocess
import sys
from datetime import date, datetime

from ecompipe import DEFAULT_AS_OF, STAGES
from ecompipe.defects import BY_NAME as DEFECT_TYPES

CORE_TABLES = ("customers", "products", "orders", "order_items")


def main(argv: list[str] | None = None) -> int:
    """The command line's entry: the process ends when it returns."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("papermill", "traitlets", "blib2to3", "gcsfs"):  # gcsfs: with the [airflow] extra, at import
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except Exception as exc:
        message = _explained(exc)
        if message is None:
            raise
        print(f"ecompipe: {message}", file=sys.stderr)
    finally:
        # The exit's last garbage collection walks every object the command imported: 0.6 s after a run,
        # which papermill's cloud modules make heavy. Frozen, they are left to the process's end.
        gc.freeze()
    return 1


def _explained(exc: Exception) -> str | None:
    """One line for the errors a user can act on; None for a bug, which keeps its traceback.

    The stage and warehouse modules are imported lazily: an error of theirs means they were imported.
    """
    runner, warehouse = (sys.modules.get(f"ecompipe.{name}") for name in ("runner", "warehouse"))
    if runner is not None and isinstance(exc, runner.StageFailed):
        return f"run {exc.notebook.parent.name} failed: {exc}"
    if warehouse is not None and isinstance(exc, warehouse.WarehouseError):
        return f"warehouse: {exc}"
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return str(exc)
    return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported by the command it was given to, with that command's usage."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecompipe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(parent, name: str, help: str, handler) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    run = command(commands, "run", "execute the stage notebooks into outputs/runs/<run_id>/", _run)
    run.add_argument("--scale", type=_positive_float, default=None,
                     help="1 = 10,000 customers and 50,000 orders (default 1; an increment: the warehouse's)")
    run.add_argument("--seed", type=int, default=None,
                     help="random seed: the same seed and parameters give the same files "
                          "(default 42; an increment: the warehouse's)")
    run.add_argument("--as-of", type=_iso_date, default=None,
                     help=f"the data's as-of date: the last day of generated history (default {DEFAULT_AS_OF}); "
                          "with --raw-dir, the load's date unless given")
    run.add_argument("--increment", action="store_true",
                     help="generate and load only the --as-of day's new signups and orders")
    run.add_argument("--clean", action="store_true", help="plant no defects")
    run.add_argument("--defect-rate", type=_defect_rate, action="append", default=[], metavar="TYPE=RATE",
                     help=f"override one defect type's rate; types: {', '.join(DEFECT_TYPES)}")
    run.add_argument("--stages", type=_stage_list, default=list(STAGES),
                     help=f"comma-separated subset of {','.join(STAGES)}")
    run.add_argument("--run-id", default=None, help="default: a new id from the start time")
    run.add_argument("--raw-dir", default=None,
                     help="ingest these CSV files (README, 'Raw file format') instead of generating data")
    run.add_argument("--fail-on", choices=("none", "critical", "any"), default="none",
                     help="make the validate stage fail when a quality rule of this severity fails (default none)")
    run.add_argument("--force", action="store_true",
                     help="let a load of earlier files (--stages without generate) replace the warehouse even "
                          "when it would empty a table or halve it")

    runs = command(commands, "runs", "list past runs, newest first", _runs)
    runs.add_argument("--prune", action="store_true",
                      help="delete the raw files of older runs, keeping the newest --keep runs' and always "
                           "those of the newest successful full run; notebooks and manifests stay")
    runs.add_argument("--keep", type=_non_negative_int, default=None,
                      help="with --prune: how many runs keep their raw files (default ECOMPIPE_KEEP_RAW_RUNS, 10)")

    db = commands.add_parser("db", help="the warehouse").add_subparsers(required=True, metavar="ACTION")
    command(db, "url", "print the SQLAlchemy URL, password masked", _db_url)
    shell = command(db, "shell", "open psql on the warehouse (arguments after -- go to psql)", _db_shell)
    shell.add_argument("psql_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    command(db, "stop", "stop the embedded PostgreSQL", _db_stop)
    return parser


def _run(args) -> int:
    from ecompipe import kernels
    from ecompipe.settings import Settings

    # The kernels' forkserver imports what the stages share on the other core, while this one imports the runner.
    kernels.start_forkserver([Settings().notebook(stage) for stage in STAGES])
    from ecompipe import runner, runs

    stages = args.stages
    generated = "generate" in stages and not args.raw_dir
    raw_dir = ""
    if args.raw_dir:
        raw_path = os.path.abspath(args.raw_dir)
        if not os.path.isdir(raw_path):
            raise FileNotFoundError(f"--raw-dir {args.raw_dir}: no such folder")
        raw_dir, stages = raw_path, [s for s in stages if s != "generate"]
    as_of = args.as_of or (DEFAULT_AS_OF if generated else None)
    params = runner.RunParameters(
        run_id=args.run_id or runs.new_run_id(), raw_dir=raw_dir, increment=args.increment, force=args.force,
        fail_on=args.fail_on,
        as_of=as_of.isoformat() if as_of else None,
        # generator parameters, only where data is generated; an increment's come from the warehouse
        scale=args.scale if args.increment else (args.scale or 1.0) if generated else None,
        seed=args.seed if args.increment else (42 if args.seed is None else args.seed) if generated else None,
        clean=args.clean if generated else None,
        defect_rates=dict(args.defect_rate) if generated else None,
    )
    manifest = runner.run(stages, params)
    run_dir = Settings().run_dir(params.run_id)
    print(f"Run {params.run_id} succeeded.")
    print(f"  executed notebooks: {run_dir}/")
    print(f"  manifest:           {run_dir / 'manifest.json'}")
    counts = manifest["row_counts"]
    if "ingest" in stages and counts:
        print("  core rows:  " + ", ".join(f"{t} {counts[t]:,}" for t in CORE_TABLES if t in counts))
    marts = {t: n for t, n in counts.items() if t not in CORE_TABLES}
    if "transform" in stages and marts:
        print("  mart rows:  " + ", ".join(f"{t} {n:,}" for t, n in marts.items()))
    elif "ingest" in stages:
        print("  the marts were not rebuilt by this run: `ecompipe run --stages transform` rebuilds them")
    return 0


def _runs(args) -> int:
    from ecompipe import runs

    if args.keep is not None and not args.prune:
        args.parser.error("--keep goes with --prune")
    if args.prune:
        pruned = runs.prune(keep=args.keep)
        print(f"Deleted the raw files of {len(pruned)} run(s){': ' if pruned else ''}"
              f"{', '.join(p.parent.name for p in pruned)}.")
        return 0
    found = runs.all_runs()
    if not found:
        print("No runs yet: `ecompipe run` starts one.")
        return 0
    print(f"{'run_id':<26} {'started (UTC)':<20} {'status':<10} {'duration':>9} {'core rows':>10} {'quality':>9}  error")
    for m in found:
        started = datetime.fromisoformat(m["started_at"])
        duration = ""
        if m.get("finished_at"):
            duration = f"{(datetime.fromisoformat(m['finished_at']) - started).total_seconds():.1f} s"
        counts = m.get("row_counts") or {}
        rows = f"{sum(counts.get(t, 0) for t in CORE_TABLES):,}" if counts else ""
        quality = m.get("quality") or {}
        score = f"{quality['overall_score']:.2f} {quality['grade']}" if quality else ""
        print(f"{m['run_id']:<26} {started:%Y-%m-%d %H:%M:%S}  {m['status']:<10} {duration:>9} {rows:>10} {score:>9}  "
              f"{_error_line(m.get('error'))}")
    return 0


def _error_line(error: dict | None) -> str:
    if not error:
        return ""
    if error.get("stage"):
        return f"{error['stage']}, cell {error.get('cell')}: {error['exception']}"
    return error["exception"]


def _db_url(args) -> int:
    from ecompipe import warehouse

    print(warehouse.masked(warehouse.database_url()))
    return 0


def _db_shell(args) -> int:
    from ecompipe import warehouse

    argv, env = warehouse.psql_invocation()
    extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    return subprocess.call([*argv, *extra], env=env)


def _db_stop(args) -> int:
    from ecompipe import warehouse
    from ecompipe.settings import Settings

    settings = Settings()
    if settings.database_url is not None:
        raise ValueError("ECOMPIPE_DATABASE_URL is set: ecompipe does not stop a server it did not start.")
    if warehouse.embedded(settings).stop():
        print("Embedded warehouse stopped.")
    else:
        print("The embedded warehouse is not running.")
    return 0


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-24") from None


def _defect_rate(text: str) -> tuple[str, float]:
    name, _, rate = text.partition("=")
    if name not in DEFECT_TYPES:
        raise argparse.ArgumentTypeError(f"unknown defect type {name!r}; choose from {', '.join(DEFECT_TYPES)}")
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be a number, like {name}=0.01") from None
    if not 0 <= value <= 0.2:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be between 0 and 0.2")
    return name, value


def _stage_list(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; choose from {','.join(STAGES)}")
    return stages


if __name__ == "__main__":
    sys.exit(main())

"""The ``ecompipe`` command: run the pipeline, list runs, reach the warehouse."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from datetime import date, datetime

from ecompipe import runner, warehouse
from ecompipe.generate import DEFAULT_AS_OF, DefectRates
from ecompipe.settings import STAGES, Settings, new_run_id


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("papermill", "traitlets", "blib2to3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except runner.StageFailed as exc:
        print(f"ecompipe: run {exc.notebook.parent.name} failed: {exc}", file=sys.stderr)
    except warehouse.WarehouseError as exc:
        print(f"ecompipe: warehouse: {exc}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ecompipe: {exc}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecompipe", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="execute the stage notebooks into outputs/runs/<run_id>/")
    run.add_argument("--scale", type=_positive_float, default=1.0, help="1 = 10,000 customers, 50,000 orders")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--as-of", type=_iso_date, default=DEFAULT_AS_OF, help="last day of order history")
    run.add_argument("--increment", action="store_true",
                     help="generate and load only the --as-of day's new signups and orders")
    run.add_argument("--clean", action="store_true", help="plant no defects")
    run.add_argument("--defect-rate", type=_defect_rate, action="append", default=[], metavar="TYPE=RATE",
                     help=f"override one defect rate; types: {', '.join(DefectRates.model_fields)}")
    run.add_argument("--stages", type=_stage_list, default=list(STAGES),
                     help=f"comma-separated subset of {','.join(STAGES)}")
    run.add_argument("--run-id", default=None, help="default: a new id from the start time")
    run.add_argument("--raw-dir", default=None,
                     help="ingest these CSV files (README, 'Raw file format') instead of generating data")
    run.set_defaults(handler=_run)

    runs = commands.add_parser("runs", help="list past runs")
    runs.set_defaults(handler=_runs)

    db = commands.add_parser("db", help="the warehouse").add_subparsers(required=True, metavar="ACTION")
    db.add_parser("url", help="print the SQLAlchemy URL, password masked").set_defaults(handler=_db_url)
    shell = db.add_parser("shell", help="open psql on the warehouse (arguments after -- go to psql)")
    shell.add_argument("psql_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    shell.set_defaults(handler=_db_shell)
    db.add_parser("stop", help="stop the embedded PostgreSQL").set_defaults(handler=_db_stop)
    return parser


def _run(args) -> int:
    stages = args.stages
    raw_dir = ""
    if args.raw_dir:
        raw_path = os.path.abspath(args.raw_dir)
        if not os.path.isdir(raw_path):
            raise FileNotFoundError(f"--raw-dir {args.raw_dir}: no such folder")
        raw_dir, stages = raw_path, [s for s in stages if s != "generate"]
    params = runner.RunParameters(run_id=args.run_id or new_run_id(), scale=args.scale, seed=args.seed,
                                  as_of=args.as_of.isoformat(), increment=args.increment, clean=args.clean,
                                  defect_rates=dict(args.defect_rate), raw_dir=raw_dir)
    manifest = runner.run(stages, params)
    run_dir = Settings().run_dir(params.run_id)
    print(f"Run {params.run_id} succeeded.")
    print(f"  executed notebooks: {run_dir}/")
    print(f"  manifest:           {run_dir / 'manifest.json'}")
    if manifest["row_counts"]:
        print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in manifest["row_counts"].items()))
    return 0


def _runs(args) -> int:
    runs = runner.list_runs()
    if not runs:
        print("No runs yet: `ecompipe run` starts one.")
        return 0
    print(f"{'run_id':<26} {'started (UTC)':<20} {'status':<10} {'duration':>9} {'rows':>12}")
    for m in runs:
        started = datetime.fromisoformat(m["started_at"])
        duration = ""
        if m.get("finished_at"):
            duration = f"{(datetime.fromisoformat(m['finished_at']) - started).total_seconds():.1f} s"
        rows = sum(m.get("row_counts", {}).values())
        print(f"{m['run_id']:<26} {started:%Y-%m-%d %H:%M:%S}  {m['status']:<10} {duration:>9} {rows:>12,}")
    return 0


def _db_url(args) -> int:
    print(warehouse.masked(warehouse.database_url()))
    return 0


def _db_shell(args) -> int:
    argv, env = warehouse.psql_invocation()
    extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    return subprocess.call([*argv, *extra], env=env)


def _db_stop(args) -> int:
    settings = Settings()
    if settings.database_url is not None:
        raise ValueError("ECOMPIPE_DATABASE_URL is set: ecompipe does not stop a server it did not start.")
    warehouse.embedded(settings).stop()
    print("Embedded warehouse stopped.")
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
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
    if name not in DefectRates.model_fields:
        raise argparse.ArgumentTypeError(f"unknown defect type {name!r}; choose from {', '.join(DefectRates.model_fields)}")
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

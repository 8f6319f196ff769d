"""Benchmarks run on a warehouse of their own, never the user's: an embedded PostgreSQL in
``.warehouse-bench/`` (git-ignored), whatever ``ECOMPIPE_DATABASE_URL`` says.

Import this module before anything reads the settings; it sets the environment, so notebooks and worker
processes the benchmark starts use the same warehouse. The server is stopped when the benchmark ends
(the benchmark's own process, not a worker's).
"""

from __future__ import annotations

import atexit
import os

from ecompipe.settings import PROJECT_ROOT

BENCH_WAREHOUSE = PROJECT_ROOT / ".warehouse-bench"

os.environ.pop("ECOMPIPE_DATABASE_URL", None)
os.environ["ECOMPIPE_WAREHOUSE_DIR"] = str(BENCH_WAREHOUSE)


def _stop() -> None:
    from ecompipe import embedded

    embedded.EmbeddedPostgres(BENCH_WAREHOUSE).stop()


# Spawned processes (bench_ingest's generator) import the benchmark's main module too, and must not stop the server as
# they exit: only the process that imported this first does, the one whose id its children inherit here.
if os.environ.setdefault("ECOMPIPE_BENCH_PROCESS", str(os.getpid())) == str(os.getpid()):
    atexit.register(_stop)

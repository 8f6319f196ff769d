"""The one settings object. Read from the environment (prefix ``ECOMPIPE_``) and ``.env``.

Every path in the project is built from :data:`PROJECT_ROOT`. Secrets (the database URL's password)
come from the environment only and are never written to a notebook parameter or a manifest.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecompipe import STAGES

PROJECT_ROOT = Path(__file__).resolve().parents[2]



class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ECOMPIPE_", env_file=PROJECT_ROOT / ".env", extra="ignore"
    )

    database_url: SecretStr | None = None
    """Any PostgreSQL; unset means the embedded warehouse in ``warehouse_dir``."""
    warehouse_dir: Path = PROJECT_ROOT / ".warehouse"
    outputs_dir: Path = PROJECT_ROOT / "outputs"

    # PostgreSQL memory for ecompipe's own transactions only, so that sorts and hashes of millions of rows
    # stay in memory. On a small shared server, lower them.
    ingest_work_mem: str = "256MB"  # a load's sorts of keys
    ingest_maintenance_work_mem: str = "512MB"  # a load's key indexes
    # A load checks a few thousand staged rows against parents of millions: with the default of 4 the planner
    # scans the parents whole rather than look the rows up in their keys.
    ingest_random_page_cost: float = 1.1
    transform_work_mem: str = "512MB"  # the marts' aggregates and sorts
    transform_hash_mem_multiplier: float = 2.0
    transform_parallel_workers: int = 2  # workers per query (max_parallel_workers_per_gather)
    # Great Expectations' queries: two suites run at once, so workers per query only contend for the cores,
    # and GX's uniqueness query builds its whole hash in every worker (3x the work with 2 workers).
    validate_parallel_workers: int = 0

    dag_retries: int = 2  # how often a scheduled task is retried, with exponential backoff
    keep_raw_runs: int = 10
    """Retention: the raw files of the newest N runs are kept, and always those of the newest successful full
    run; older runs keep their notebooks and manifest (with each file's sha256) but lose ``raw/``."""

    @property
    def ingest_tuning(self) -> dict[str, str]:
        return {"work_mem": self.ingest_work_mem, "maintenance_work_mem": self.ingest_maintenance_work_mem,
                "random_page_cost": str(self.ingest_random_page_cost)}

    @property
    def transform_tuning(self) -> dict[str, str]:
        return {"work_mem": self.transform_work_mem, "hash_mem_multiplier": str(self.transform_hash_mem_multiplier),
                "max_parallel_workers_per_gather": str(self.transform_parallel_workers)}

    @property
    def notebooks_dir(self) -> Path:
        return PROJECT_ROOT / "notebooks"

    @property
    def sql_dir(self) -> Path:
        return PROJECT_ROOT / "sql"

    @property
    def runs_dir(self) -> Path:
        return self.outputs_dir / "runs"

    def notebook(self, stage: str) -> Path:
        return self.notebooks_dir / f"{STAGES.index(stage) + 1:02d}_{stage}.ipynb"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

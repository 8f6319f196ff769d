"""The one settings object. Read from the environment (prefix ``ECOMPIPE_``) and ``.env``.

Every path in the project is built from :data:`PROJECT_ROOT`. Secrets (the database URL's password)
come from the environment only and are never written to a notebook parameter or a manifest.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

STAGES = ("generate", "ingest", "transform")
"""Stage names in run order; stage N is ``notebooks/NN_<name>.ipynb``."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ECOMPIPE_", env_file=PROJECT_ROOT / ".env", extra="ignore"
    )

    database_url: SecretStr | None = None
    """Any PostgreSQL; unset means the embedded warehouse in ``warehouse_dir``."""
    warehouse_dir: Path = PROJECT_ROOT / ".warehouse"
    outputs_dir: Path = PROJECT_ROOT / "outputs"

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

    def raw_dir(self, run_id: str = "", override: str = "") -> Path:
        """Where a stage reads raw files: ``override``, else the run's ``raw/``, else the latest run's."""
        if override:
            return Path(override)
        if run_id:
            return self.run_dir(run_id) / "raw"
        return self.latest_raw_dir()

    def latest_raw_dir(self) -> Path:
        """The raw folder of the newest run that has one: what a notebook opened by hand reads."""
        candidates = sorted(self.runs_dir.glob("*/raw/customers.csv"))
        if not candidates:
            raise FileNotFoundError(
                f"No generated data under {self.runs_dir}: run the generate stage first "
                "(`ecompipe run --stages generate`, or 01_generate.ipynb)."
            )
        return max(candidates, key=lambda p: p.stat().st_mtime).parent


def new_run_id() -> str:
    """Sortable by start time, unique across processes: ``20261126T001900Z-3fa1``."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"

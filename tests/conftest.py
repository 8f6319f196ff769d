"""Shared fixtures: every test session gets its own embedded warehouse and outputs folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecompipe import generate, warehouse
from ecompipe.settings import PROJECT_ROOT, Settings

TINY = 0.02  # 200 customers, 495 products, 1,000 orders


@pytest.fixture(scope="session", autouse=True)
def isolated_settings(tmp_path_factory):
    """Point ECOMPIPE_* at throwaway folders so tests never touch the developer's warehouse or runs."""
    base = tmp_path_factory.mktemp("ecompipe")
    saved = {k: os.environ.get(k) for k in ("ECOMPIPE_WAREHOUSE_DIR", "ECOMPIPE_OUTPUTS_DIR", "ECOMPIPE_DATABASE_URL")}
    os.environ["ECOMPIPE_WAREHOUSE_DIR"] = str(base / "warehouse")
    os.environ["ECOMPIPE_OUTPUTS_DIR"] = str(base / "outputs")
    os.environ.pop("ECOMPIPE_DATABASE_URL", None)
    yield Settings()
    warehouse.embedded(Settings()).stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def engine(isolated_settings):
    return warehouse.get_engine(isolated_settings)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """Raw files at a tiny scale, written once per session. Tests must not modify them."""
    raw = tmp_path_factory.mktemp("raw")
    generate.write_dataset(generate.GenerateSpec(scale=TINY), raw)
    return raw


def fingerprint(engine, tables) -> dict:
    """An order-independent digest of each table's or view's full contents: (rows, md5)."""
    with engine.connect() as conn:
        return {t: tuple(conn.execute(sa.text(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {t} t")).one())
            for t in tables}


def ecompipe(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "ecompipe.cli", *args], capture_output=True, text=True, timeout=timeout,
        cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
    )

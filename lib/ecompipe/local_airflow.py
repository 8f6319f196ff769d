"""Airflow on this machine (``make airflow``): the project's DAGs on the embedded warehouse, no Docker.

Starts the api-server (bound to 127.0.0.1), the scheduler and the dag-processor in one process group of
their own, with Airflow's files in ``.airflow/`` (git-ignored), and stops the whole group on Ctrl-C or
SIGTERM. Not ``airflow standalone``: its log server binds every interface, and SIGTERM leaves its children
running. The UI needs no login here (the simple auth manager, everyone an admin): it listens on localhost
only. Configuration is environment variables, ``AIRFLOW__SECTION__KEY``, so yours override these.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from ecompipe.settings import PROJECT_ROOT

HOME = PROJECT_ROOT / ".airflow"
HOST, PORT = "127.0.0.1", 8080
COMPONENTS = {  # the api-server takes its host and port from the environment below
    "api-server": ["api-server", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],  # its log server would bind every interface
    "dag-processor": ["dag-processor"],
}
STOP_TIMEOUT_S = 60


def environment(home: Path = HOME, port: int = PORT) -> dict[str, str]:
    """Airflow's configuration for a local run, over the caller's environment (which wins)."""
    home.mkdir(parents=True, exist_ok=True)
    secret = home / "jwt_secret"  # one secret for every component, or tasks fail "Invalid auth token"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(32))
        secret.chmod(0o600)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # workers forked up front: one per core here
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret.read_text(),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # its health server would bind every interface
    }
    return {**defaults, **os.environ}


def airflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


def start(env: dict[str, str]) -> subprocess.Popen:
    """Migrate Airflow's database, then start the three components in a new process group; return its leader."""
    subprocess.run(airflow("db", "migrate"), env=env, check=True, stdout=subprocess.DEVNULL)
    logs = Path(env["AIRFLOW_HOME"]) / "logs"
    logs.mkdir(exist_ok=True)
    listen = ["--host", env["AIRFLOW__API__HOST"], "--port", env["AIRFLOW__API__PORT"]]
    commands = " ".join(f"{subprocess.list2cmdline(airflow(*args, *(listen if name == 'api-server' else [])))} "
                        f"> {logs / name}.log 2>&1 &" for name, args in COMPONENTS.items())
    return subprocess.Popen(["bash", "-c", f"{commands} wait"], env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(group: subprocess.Popen) -> None:
    """SIGTERM to the whole group, then SIGKILL to whatever is left after :data:`STOP_TIMEOUT_S`."""
    try:
        os.killpg(group.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(group):
        time.sleep(0.5)
    if _alive(group):
        os.killpg(group.pid, signal.SIGKILL)
    group.wait()


def _alive(group: subprocess.Popen) -> bool:
    """Any process of the group still running (the leader reaped first, or its zombie would count)."""
    group.poll()
    try:
        os.killpg(group.pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    env = environment()
    group = start(env)
    print(f"Airflow is starting: the UI will be at http://{HOST}:{PORT} (no login: it listens on localhost only)")
    print(f"  DAGs: {env['AIRFLOW__CORE__DAGS_FOLDER']}   logs: {Path(env['AIRFLOW_HOME']) / 'logs'}   "
          "Ctrl-C stops everything")
    signal.signal(signal.SIGTERM, lambda *_: (stop(group), sys.exit(0)))
    try:
        group.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(group)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stages' Jupyter kernels, started ahead of their stage, forked from a process that has imported the
libraries the stages share.

Every stage's notebook runs in a kernel of its own, a fresh process with a fresh namespace. What costs is
the imports: a kernel and pandas, seaborn and SciPy take 2-3 CPU-seconds, and the pipeline starts six
kernels on a two-core machine. So the kernels are forked (:mod:`multiprocessing`'s forkserver) from a
process that imported, once, what two or more of the stages' notebooks import; what one notebook alone
imports (Great Expectations for validate, Faker for generate) its kernel imports while the stage before
it runs. A forked kernel is what a launched one is: a new IPython kernel whose notebook starts at cell 1.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import contextlib
import importlib.util
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import uuid
from collections import Counter
from multiprocessing import forkserver
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets.config import Config

KERNEL = "ecompipe"
FORKS = multiprocessing.get_context("forkserver")


def start_forkserver(notebooks: list[Path]) -> None:
    """Start the forkserver, which imports the kernel and the :func:`shared_imports` of ``notebooks``, and
    return at once: it imports on the other core while the caller goes on. The first call in a process starts
    it; it serves every kernel the process starts after, and exits with it."""
    FORKS.set_forkserver_preload(["ipykernel.kernelapp", *shared_imports(notebooks)])
    forkserver.ensure_running()


def shared_imports(notebooks: list[Path]) -> list[str]:
    """The modules that two or more of ``notebooks`` import (with names that are not modules: the forkserver
    passes over what it cannot import)."""
    counts = Counter(module for notebook in notebooks for module in set(_modules(_imports(notebook))))
    return sorted(module for module, n in counts.items() if n > 1)


def start_kernel(notebook: Path, cwd: Path) -> QuietShutdownKernelManager:
    """Start an ecompipe kernel in ``cwd`` for ``notebook`` and run the notebook's import statements in it.

    The runner starts the next stage's kernel while the current stage runs, so a stage finds its libraries
    already imported. The imports run silently: they add no output and no execution count, and the notebook's
    own cells import the same names again, at no cost. A failed import is left for the notebook's own cell
    to report.
    """
    # Unix sockets rather than unencrypted TCP, at an absolute path: the kernel runs in another folder.
    sockets = {"transport": "ipc", "ip": str(Path(tempfile.gettempdir()) / f"ecompipe-kernel-{secrets.token_hex(4)}")}
    km = QuietShutdownKernelManager(kernel_name=KERNEL, kernel_id=str(uuid.uuid4()),
                                    config=Config({"KernelManager": sockets}))
    km.provisioner = ForkedKernel(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
    asyncio.run(_start(km, cwd, _imports(notebook)))
    return km


async def _start(km: AsyncKernelManager, cwd: Path, imports: str) -> None:
    await km.start_kernel(cwd=str(cwd))
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        await client.execute_interactive(imports, silent=True, store_history=False, allow_stdin=False)
    finally:
        client.stop_channels()


def stop_kernel(km: QuietShutdownKernelManager) -> None:
    for client in km.clients:
        client.stop_channels()
    asyncio.run(km.shutdown_kernel())


def _imports(notebook: Path) -> str:
    """The notebook's top-level ``import`` and ``from … import`` statements. Read as JSON, without nbformat,
    whose import (jsonschema's) would hold up the forkserver's start by a second or two."""
    statements = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            with contextlib.suppress(SyntaxError):  # IPython magics: not ours to parse
                statements += [ast.unparse(node) for node in ast.parse(source).body
                               if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(statements)


def _modules(imports: str) -> list[str]:
    """The modules ``imports`` loads: ``from ecompipe import charts`` loads ``ecompipe.charts``."""
    modules = []
    for node in ast.parse(imports).body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif node.level == 0:
            modules += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return modules


class ForkedKernel(LocalProvisioner):
    """Launches the kernel as a fork of the forkserver rather than a new interpreter, and manages it as
    :class:`LocalProvisioner` manages the process it launches (signals to its process group, polls, kills)."""

    async def launch_kernel(self, cmd: list[str], **kwargs) -> dict:
        process = FORKS.Process(target=_kernel, args=(cmd[cmd.index("ipykernel_launcher") + 1:], kwargs["env"],
                                                      kwargs["cwd"]), name="ecompipe kernel")
        process.start()
        self.process = _Forked(process)
        self.pid = self.pgid = process.pid  # _kernel makes it a process group's leader, as the launcher does
        self.cwd = kwargs["cwd"]
        return self.connection_info


def _kernel(arguments: list[str], env: dict[str, str], cwd: str) -> None:
    """The forked kernel. First it undoes what a launched kernel would not have: the forkserver's session,
    stdin, environment, folder and start method, the runner's script folder on ``sys.path``; and what the
    forkserver's imports decided outside a kernel (matplotlib's backend, pandas' columns). Then IPython."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # multiprocessing hands its children the end of a pipe that keeps the forkserver alive while they live:
    # a kernel must not, for it lives only while the forkserver does (it exits with the runner).
    os.close(forkserver._forkserver._forkserver_alive_fd)
    forkserver._forkserver._forkserver_alive_fd = None
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env, JPY_PARENT_PID=str(os.getppid()))  # it exits when the forkserver does
    if not sys.flags.safe_path:
        del sys.path[0]
    multiprocessing.set_start_method(None, force=True)
    # ipykernel has matplotlib draw inline by setting MPLBACKEND, which matplotlib reads when it is imported;
    # pandas shows at most 20 columns in a kernel, and fits them to the terminal anywhere else.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].rcParams["backend"] = os.environ["MPLBACKEND"]
    if "pandas" in sys.modules:
        sys.modules["pandas"].set_option("display.max_columns", 20, "display.encoding", "UTF-8")
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *arguments,
                f"--IPKernelApp.parent_handle={os.getppid()}"]  # ipykernel read its default at the forkserver's import
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance()
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends its processes with os._exit, which skips them


class _Forked:
    """A forked kernel's :class:`multiprocessing.Process` with the part of ``Popen``'s interface that
    :class:`LocalProvisioner` uses."""

    stdin = stdout = stderr = None

    def __init__(self, process):
        self.process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return None if self.process.is_alive() else self.process.exitcode

    def wait(self) -> int | None:
        self.process.join()
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.process.kill()

    def terminate(self) -> None:
        self.process.terminate()


class QuietShutdownKernelManager(AsyncKernelManager):
    """A kernel manager that shuts its kernel down quietly: no needless interrupt, no client left connected.

    jupyter_client sends SIGINT first in every shutdown, which comes just after papermill's last request's
    reply; if the signal lands before the kernel has gone back to ignoring SIGINT (a few ms,
    longer on a loaded machine), the kernel logs "KeyboardInterrupt caught in kernel" for nothing. The
    shutdown request that follows is all an idle kernel needs; an interrupt asked for at any other time
    (a cell's timeout) is sent as usual.

    papermill leaves the clients of a kernel it did not start connected; :func:`stop_kernel` closes them.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.clients = []  # every client made for this kernel, for stop_kernel to close

    def client(self, **kwargs):
        client = super().client(**kwargs)
        self.clients.append(client)
        return client

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:  # set by the shutdown that called us; cleared when a kernel starts
            return
        await super()._async_interrupt_kernel()

    interrupt_kernel = _async_interrupt_kernel

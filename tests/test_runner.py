"""The runner's notebook execution: kernels started ahead with their imports done, quiet and complete shutdowns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys

import nbformat
import psutil
import pytest

from ecompipe import kernels, runner
from ecompipe.settings import PROJECT_ROOT

# A kernel held up for a moment just after it answers papermill's last request: what a loaded machine
# does by chance, here every time. jupyter_client's shutdown then interrupts it in the middle of its handler.
STALLS = """import time
kernel = get_ipython().kernel
send = kernel.session.send
kernel.session.send = lambda stream, msg, *a, **kw: (send(stream, msg, *a, **kw), msg == 'kernel_info_reply' and time.sleep(0.3))[0]
print('ready')"""

EXECUTE = """import sys
from pathlib import Path
import papermill as pm
from ecompipe import kernels, runner
notebook, output, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if how == "runner":
    km = kernels.start_kernel(notebook, notebook.parent)
    try:
        runner.execute(notebook, output, {}, km=km)
    finally:
        kernels.stop_kernel(km)
else:  # papermill's own kernel manager, for comparison
    pm.execute_notebook(str(notebook), str(output), kernel_name=kernels.KERNEL, progress_bar=False)
"""


@pytest.mark.parametrize("how, logged", [("runner", False), ("papermill", True)])
def test_shutting_a_kernel_down_logs_no_keyboard_interrupt(tmp_path, how, logged):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(STALLS)])
    notebook.metadata.kernelspec = {"name": "ecompipe", "display_name": "ecompipe", "language": "python"}
    nbformat.write(notebook, tmp_path / "stall.ipynb")
    done = subprocess.run([sys.executable, "-c", EXECUTE, str(tmp_path / "stall.ipynb"), str(tmp_path / "out.ipynb"),
                           how], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert ("KeyboardInterrupt caught in kernel" in done.stderr) == logged, done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "ready\n"


def test_a_kernel_started_ahead_has_run_its_notebooks_imports_silently(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("The imports below were run before this notebook started."),
        nbformat.v4.new_code_cell("import sys\nprint('ecompipe.rawformat' in sys.modules, 'x' in dir())"),
        nbformat.v4.new_code_cell("from ecompipe import rawformat  # a library nothing else here imports\n"
                                  "x = 1  # not an import: never run ahead"),
        nbformat.v4.new_code_cell("print(x)"),
    ])
    notebook.metadata.kernelspec = {"name": "ecompipe", "display_name": "ecompipe", "language": "python"}
    nbformat.write(notebook, tmp_path / "imports.ipynb")
    assert kernels._imports(tmp_path / "imports.ipynb") == "import sys\nfrom ecompipe import rawformat"

    km = kernels.start_kernel(tmp_path / "imports.ipynb", tmp_path)
    try:
        runner.execute(tmp_path / "imports.ipynb", tmp_path / "out.ipynb", {}, km=km)
    finally:
        kernels.stop_kernel(km)
    code = [c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if c.cell_type == "code"]
    assert [c.outputs[0]["text"] for c in (code[0], code[2])] == ["True False\n", "1\n"]
    assert [c.execution_count for c in code] == [1, 2, 3], "the silent imports took no execution count"
    assert not km.has_kernel, "stopped"


def test_the_forkserver_preloads_what_two_or_more_notebooks_import(tmp_path):
    for name, source in [("a", "import pandas as pd\nfrom ecompipe import charts, runs\n"
                                "from ecompipe.settings import Settings"),
                         ("b", "import pandas\nfrom ecompipe import charts, validate"),
                         ("c", "import json\n%matplotlib inline")]:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), tmp_path / f"{name}.ipynb")
    assert kernels._modules(kernels._imports(tmp_path / "a.ipynb")) == [
        "pandas", "ecompipe", "ecompipe.charts", "ecompipe.runs", "ecompipe.settings", "ecompipe.settings.Settings"]
    assert kernels.shared_imports([tmp_path / f"{n}.ipynb" for n in "abc"]) == [
        "ecompipe", "ecompipe.charts", "pandas"], "validate, runs and json are one notebook's own"


# What a notebook's code can see of the process it runs in, printed as JSON: first whether matplotlib was
# imported before the notebook's first cell (in a forked kernel, the forkserver did).
PROBE = """import json, multiprocessing, os, sys
preloaded = "matplotlib" in sys.modules
import matplotlib, pandas as pd
print(json.dumps({
    "preloaded": preloaded, "backend": matplotlib.get_backend(), "cwd": os.getcwd(), "path": sys.path,
    "argv0": sys.argv[0], "start_method": multiprocessing.get_start_method(allow_none=True),
    "pandas": {k: pd.get_option(k) for k in ("display.max_columns", "display.width", "display.encoding")},
    "env": {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"},
    "exits_with_its_parent": os.environ["JPY_PARENT_PID"] == str(os.getppid()),
    "leads_its_process_group": os.getpgid(0) == os.getpid(), "stdin": os.path.realpath("/proc/self/fd/0"),
}))"""

# A script of its own, as the ecompipe command is: its folder is first on its sys.path, not the kernels'.
COMPARE = """import json, sys
from pathlib import Path
import nbformat, papermill as pm
from ecompipe import kernels, runner

if __name__ == "__main__":
    notebook, folder = Path(sys.argv[1]), Path(sys.argv[2])
    kernels.start_forkserver([notebook, notebook])  # every module the probe imports
    km = kernels.start_kernel(notebook, folder)
    try:
        runner.execute(notebook, folder / "forked.ipynb", {}, km=km)
    finally:
        kernels.stop_kernel(km)
    pm.execute_notebook(str(notebook), str(folder / "launched.ipynb"), kernel_name=kernels.KERNEL,
                        progress_bar=False, cwd=str(folder))
    print(json.dumps({how: json.loads(nbformat.read(folder / f"{how}.ipynb", as_version=4).cells[0].outputs[0]["text"])
                      for how in ("forked", "launched")}))
"""


def test_a_forked_kernel_is_what_a_launched_kernel_is(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    notebook.metadata.kernelspec = {"name": "ecompipe", "display_name": "ecompipe", "language": "python"}
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "compare.py").write_text(COMPARE)
    done = subprocess.run([sys.executable, tmp_path / "runner" / "compare.py", tmp_path / "probe.ipynb", tmp_path],
                          capture_output=True, text=True, timeout=180, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    forked, launched = seen["forked"], seen["launched"]
    assert (forked.pop("preloaded"), launched.pop("preloaded")) == (True, False), "the forked kernel is a fork"
    assert forked["backend"] == "module://matplotlib_inline.backend_inline", "charts are drawn in the notebook"
    assert forked["pandas"]["display.max_columns"] == 20
    assert forked["exits_with_its_parent"] and forked["leads_its_process_group"] and forked["stdin"] == "/dev/null"
    assert str(tmp_path / "runner") not in forked["path"]
    assert forked == {**launched, "stdin": "/dev/null"}


def test_an_interrupt_reaches_a_forked_kernel(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "empty.ipynb")
    km = kernels.start_kernel(tmp_path / "empty.ipynb", tmp_path)

    async def interrupted() -> dict:
        client = km.client()
        client.start_channels()
        message = client.execute("import time\ntime.sleep(60)")
        await asyncio.sleep(1)
        await km.interrupt_kernel()
        reply = await client.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == message
        return reply["content"]

    try:
        reply = asyncio.run(interrupted())
    finally:
        kernels.stop_kernel(km)
    assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt")
    assert not km.has_kernel


ORPHAN = """import os, signal, sys
from pathlib import Path
from ecompipe import kernels
km = kernels.start_kernel(Path(sys.argv[1]), Path(sys.argv[2]))
print(km.provisioner.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the runner dies without stopping its kernel
"""


def test_a_forked_kernel_exits_when_the_runner_is_killed(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "empty.ipynb")
    done = subprocess.run([sys.executable, "-c", ORPHAN, str(tmp_path / "empty.ipynb"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr
    kernel = psutil.Process(int(done.stdout.split()[0]))
    with contextlib.suppress(psutil.NoSuchProcess):
        kernel.wait(timeout=15)
    assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE

"""The runner's notebook execution: kernels started ahead with their imports done, quiet and complete shutdowns."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from ecompipe import runner
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
from ecompipe import runner
notebook, output, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if how == "runner":
    km = runner.start_kernel(notebook, notebook.parent)
    try:
        runner.execute(notebook, output, {}, km=km)
    finally:
        runner.stop_kernel(km)
else:  # papermill's own kernel manager, for comparison
    pm.execute_notebook(str(notebook), str(output), kernel_name=runner.KERNEL, progress_bar=False)
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
    assert runner._imports(tmp_path / "imports.ipynb") == "import sys\nfrom ecompipe import rawformat"

    km = runner.start_kernel(tmp_path / "imports.ipynb", tmp_path)
    try:
        runner.execute(tmp_path / "imports.ipynb", tmp_path / "out.ipynb", {}, km=km)
    finally:
        runner.stop_kernel(km)
    code = [c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if c.cell_type == "code"]
    assert [c.outputs[0]["text"] for c in (code[0], code[2])] == ["True False\n", "1\n"]
    assert [c.execution_count for c in code] == [1, 2, 3], "the silent imports took no execution count"
    assert not km.has_kernel, "stopped"

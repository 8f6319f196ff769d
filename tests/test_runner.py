"""The runner's notebook execution: quiet, complete shutdowns."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

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
    runner.execute(notebook, output, {})
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

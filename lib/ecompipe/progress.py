"""Progress bars that read well wherever the work runs.

In a terminal, a tqdm bar as usual. In a notebook kernel, tqdm writes each step as a new stderr output,
which an executed notebook keeps as a pink block of every step. There the bar is one display updated in
place instead: JupyterLab shows it move, and the executed notebook (and its HTML) keeps its final line.
"""

from __future__ import annotations

import io

from tqdm import tqdm


def bar(total: int, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar for ``total`` steps; use as a context manager and call ``update(n)``."""
    kernel = _kernel_display()
    return tqdm(total=total, desc=desc, unit=f" {unit}", mininterval=0.5, file=kernel,
                ncols=100 if kernel else None, ascii=False if kernel else None)


def _kernel_display():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return _InPlace() if shell is not None and getattr(shell, "kernel", None) is not None else None


class _InPlace(io.TextIOBase):
    """A file for tqdm that shows each status line in one notebook display, replacing the last."""

    def __init__(self):
        from IPython.display import DisplayHandle

        self.handle = DisplayHandle()
        self.shown = False

    def write(self, text: str) -> int:
        line = text.strip("\r\n")
        if line:
            bundle = {"text/plain": line}
            if self.shown:
                self.handle.update(bundle, raw=True)
            else:
                self.handle.display(bundle, raw=True)
                self.shown = True
        return len(text)

    def flush(self) -> None:
        pass

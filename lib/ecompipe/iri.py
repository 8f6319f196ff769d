"""Cheaper imports of Great Expectations and nbconvert.

Both import jsonschema (GX through altair), which imports ``rfc3987_syntax`` when it is installed (it comes
with jupyter-events), and that builds a Lark parser at import: two to five seconds, for IRI format checks
that nothing here makes. :func:`defer_parser`, called before the first import of jsonschema, defers the
build to the first such check: nothing changes but when.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def defer_parser() -> None:
    """Put a stand-in for ``rfc3987_syntax`` in place, which loads the real module on its first IRI check.
    Does nothing once jsonschema is imported, or where the package is not installed."""
    name = "rfc3987_syntax"
    if name in sys.modules or "jsonschema" in sys.modules or importlib.util.find_spec(name) is None:
        return
    stand_in = types.ModuleType(name)

    def real():
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    def is_valid_syntax(term: str, value: str) -> bool:
        return real().is_valid_syntax(term, value)

    def __getattr__(attr: str):
        if attr.startswith("__"):  # the import system probes __path__ and such: not a reason to load it
            raise AttributeError(attr)
        return getattr(real(), attr)

    stand_in.is_valid_syntax, stand_in.__getattr__ = is_valid_syntax, __getattr__
    sys.modules[name] = stand_in

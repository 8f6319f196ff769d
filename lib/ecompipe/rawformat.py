"""The raw file format: the files ingest reads and generate writes (README, "Raw file format").

UTF-8 CSV, comma-separated, a header line with the column names of :data:`COLUMNS` in that order, an empty
unquoted field for NULL. Beside the four data files, generated data has ``_defects.csv``, the ledger of
every defect planted on purpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "first_name", "last_name", "email", "phone", "city", "state", "country", "signup_date"),
    "products": ("product_id", "product_name", "category", "unit_price", "unit_cost"),
    "orders": ("order_id", "customer_id", "order_ts", "status", "payment_method"),
    "order_items": ("order_id", "line_no", "product_id", "quantity", "unit_price", "discount"),
}
"""Every raw file, in load order (parents before children), with its columns in file order."""

KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_no"),
}
DEFECTS_FILE = "_defects.csv"
DEFECT_COLUMNS = ("file", "line", "key", "column", "defect", "detail")
"""The ledger: one row per planted defect, with the file and line it is on and the row's key."""


def csv_body(table: pa.Table, name: str) -> bytes:
    """Rows of raw file ``name`` as CSV, without the header line."""
    assert tuple(table.column_names) == COLUMNS[name], (name, table.column_names)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue().to_pybytes()


def key_text(*columns: np.ndarray) -> np.ndarray:
    """A row's key as the ledger writes it: its key columns joined by ``|``."""
    text = columns[0].astype(str).astype(object)
    for col in columns[1:]:
        text = text + "|" + col.astype(str).astype(object)
    return text


class RawFiles:
    """The raw files being written into a folder: each opened with its header line, then appended to in
    order. Counts the rows of each file and the ledger's defects by type."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.sinks = {}
        self.rows = {name: 0 for name in COLUMNS}
        self.defect_counts: dict[str, int] = {}
        self.ledger_writer = None

    def append(self, bodies: dict[str, bytes], rows: dict[str, int], ledger) -> None:
        """Append rows to the files, and their planted defects (a ledger, placed by line) to ``_defects.csv``."""
        first_line = {}
        for name, body in bodies.items():
            self.sinks[name].write(body)
            first_line[name] = self.rows[name] + 2  # 1-based, after the header line
            self.rows[name] += rows[name]
        table = ledger.table(first_line)
        if table is not None:
            if self.ledger_writer is None:
                options = pacsv.WriteOptions(include_header=False)
                self.ledger_writer = pacsv.CSVWriter(self.sinks["_defects"], table.schema, write_options=options)
            self.ledger_writer.write_table(table)
            for defect, n in zip(*np.unique(table.column("defect").to_numpy(zero_copy_only=False), return_counts=True)):
                self.defect_counts[defect] = self.defect_counts.get(defect, 0) + int(n)

    def __enter__(self):
        for name, columns in {**COLUMNS, "_defects": DEFECT_COLUMNS}.items():
            self.sinks[name] = open(self.out_dir / f"{name}.csv", "wb")
            self.sinks[name].write((",".join(columns) + "\n").encode())
        return self

    def __exit__(self, *exc):
        if self.ledger_writer is not None:
            self.ledger_writer.close()
        for sink in self.sinks.values():
            sink.close()

"""Load raw CSV files into the warehouse without losing a row: core, or quarantine with every reason.

A row reaches its typed core table, or ``quarantine`` with every hard rule it broke:

- a value that does not parse as its column's type (number, date, ISO 8601 timestamp);
- a value outside what the column can hold (an integer or a decimal out of range);
- a null key, a duplicate key (the first row with a key wins), an orphan reference.

Everything else (a missing phone, an outlier amount, a negative quantity) loads, for the validation and
anomaly stages to flag. For each file, rows read = rows loaded into core + rows quarantined, or the load
fails. The raw files themselves are the record of what arrived (the run keeps them, with their sha256).

**Who judges a row.** In a full load the client reads the files in turn with pyarrow, in blocks, while the
server writes each block as soon as it is read. A row whose every value the client can prove PostgreSQL reads
exactly as written (:func:`_certify`), whose key no earlier row has and whose references are to rows already
going to core, goes straight to core as the bytes it arrived as, so PostgreSQL still makes every stored value.
Every other row goes to ``staging.<table>`` (text, with its file and line) and through the rules in SQL
(:data:`RULES`, :func:`_promote`), which check each value with the type's own input function. So does a whole
file the client cannot read exactly as PostgreSQL would (an odd quote, mixed line endings, bad UTF-8:
:func:`_records`), and every row of an increment, which may update rows already in core.

A load is one transaction, so a failure or a killed process leaves the warehouse exactly as it was. In
``replace`` mode (a full load) it replaces the core tables; in ``upsert`` mode (a daily increment) it
inserts or updates rows by primary key and touches nothing else, so reloading changes nothing. Loads
never interleave (an advisory lock), and a dropped connection is retried with backoff.

Keys stay enforced, but in a full load not row by row: checking every row's foreign keys as it arrived
made the load 15x slower. The keys are dropped inside the transaction and each table's are added back as
soon as it is written, which checks all its rows at once; any row that would break them went to quarantine.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import json
import logging
import queue
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv
from psycopg2 import sql
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ecompipe.rawformat import COLUMNS
from ecompipe.settings import Settings
from ecompipe.warehouse import TRANSIENT, blaming, set_local

log = logging.getLogger(__name__)

MODES = ("replace", "upsert")
COPY_BUFFER = 1 << 20  # psycopg2 sends 8 KB per round trip by default
BLOCK = 8 << 20  # the client reads a file in blocks of about this size, cut between records
ATTEMPTS = 5


class IngestError(RuntimeError):
    """A file cannot be loaded; the message names the file and, where known, the line and column."""


@dataclass
class FileReport:
    file: str
    table: str
    read: int  # records read, the header and blank lines not counted
    loaded: int
    quarantined: int
    blank_lines: int = 0  # skipped: they hold no row

    @property
    def reconciles(self) -> bool:
        return self.read == self.loaded + self.quarantined


def raw_files(raw_dir: Path) -> dict[str, Path]:
    if not raw_dir.is_dir():
        raise IngestError(f"{raw_dir}: no such folder of raw files")
    files = {name: raw_dir / f"{name}.csv" for name in COLUMNS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise IngestError(f"Missing raw file(s): {', '.join(missing)}")
    return files


def read_header(path: Path, table: str) -> list[str]:
    """The file's column names in file order, checked against the raw format; any order is fine."""
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    expected = COLUMNS[table]
    if not first.strip():
        raise IngestError(f"{path}: the file is empty; the first line must be the header {','.join(expected)}")
    try:
        text = first.decode("utf-8-sig")  # a byte-order mark is harmless
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}, line 1: not UTF-8 ({exc.reason} at byte {exc.start}); "
                          "save the file as UTF-8") from None
    names = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]))]
    if len(names) == 1 and (sep := next((d for d in ";\t|" if d in names[0]), None)):
        raise IngestError(f"{path}, line 1: the columns are separated by {sep!r}; raw files must be comma-separated")
    missing = [c for c in expected if c not in names]
    unexpected = [c for c in names if c not in expected]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if missing or unexpected or repeated:
        problems = [f"{label}: {', '.join(cols)}" for label, cols in
                    (("missing", missing), ("unexpected", unexpected), ("repeated", repeated)) if cols]
        raise IngestError(f"{path}, line 1: header does not match the raw format ({'; '.join(problems)}); "
                          f"expected the columns {','.join(expected)}")
    return names


def load(raw_dir: Path, engine: Engine, mode: str = "replace", as_of: date | None = None,
         scale: float | None = None, seed: int | None = None, guard: bool = False) -> list[FileReport]:
    """Load the four raw files of ``raw_dir``; return each file's reconciliation.

    ``as_of`` is the data's as-of date (default: the load's date in the database session's time zone);
    ``scale`` and ``seed`` say which generator made the files, if one did. All three are recorded with the
    load. With ``guard``, a replace load that would empty a core table or shrink it by more than half is
    refused: a load nobody asked for by name must not destroy data.

    Raises :class:`IngestError` naming the file (and line and column, where known), with nothing committed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    files = raw_files(raw_dir)
    headers = {table: read_header(path, table) for table, path in files.items()}
    retrying = Retrying(retry=retry_if_exception_type(TRANSIENT), stop=stop_after_attempt(ATTEMPTS),
                        wait=wait_exponential(multiplier=0.5, max=8), reraise=True,
                        before_sleep=lambda state: log.warning("Warehouse connection failed (%s); retrying",
                                                               state.outcome.exception()))
    try:
        for attempt in retrying:
            with attempt:
                return _load_once(raw_dir, files, headers, engine, mode, _Record(as_of, scale, seed), guard)
    except TRANSIENT as exc:
        raise IngestError(f"{raw_dir}: the warehouse could not be reached after {ATTEMPTS} attempts: "
                          f"{str(exc).strip()}") from exc


@dataclass
class _Record:
    """What a load records about its data in ``ingest_loads``."""

    as_of: date | None
    scale: float | None
    seed: int | None


def _load_once(raw_dir, files, headers, engine, mode, record: _Record, guard: bool) -> list[FileReport]:
    started = datetime.now(timezone.utc)
    conn = engine.raw_connection()
    checker = engine.raw_connection()  # read-only: types the keys the client cannot, while conn writes
    try:
        with checker.cursor() as cur:
            cur.execute("set transaction read only")
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(hashtext('ecompipe.ingest'))")
            set_local(cur, Settings().ingest_tuning)
            cur.execute(sql.SQL("truncate {} restart identity").format(
                sql.SQL(", ").join(sql.Identifier("staging", t) for t in COLUMNS)))
            schema = _Schema.read(cur, list(COLUMNS))
            if mode == "replace":
                before = _core_counts(cur) if guard else {}
                # A full load starts the warehouse's history again: increments reserve ids after it alone.
                cur.execute(sql.SQL("truncate quarantine, increment_ids, {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, reversed(COLUMNS)))))
                keys = _drop_keys(cur, list(COLUMNS))[::-1]  # primary keys first, then the foreign keys leaning on them
            else:
                keys = []
                cur.execute("delete from quarantine where source_file = any(%s)", ([str(p) for p in files.values()],))
            # The client reads the files in turn, parents first so children's references can be checked, while
            # the server writes, one after another, what the client has read and adds back each table's keys.
            parents, writes, judged = {}, [], None
            with ThreadPoolExecutor(1) as server:
                try:
                    for table, path in files.items():
                        for failed in (w for w in writes if w.done() and w.exception()):
                            failed.result()  # a write failed: no point reading on
                        judged = _Judged() if mode == "replace" else None
                        writes.append(server.submit(_write, cur, table, path, headers[table], schema, mode, judged,
                                                    [k for k in keys if k[0] == table]))
                        if judged is not None:
                            judged.put(_judge(path, table, headers[table], schema, checker, parents, judged.put))
                    reports = [w.result() for w in writes]
                except BaseException as exc:  # the load fails: the writes still queued would only be rolled back
                    if judged is not None:
                        judged.put(exc)  # a writer waiting for the rest of a file stops too
                    server.shutdown(wait=True, cancel_futures=True)
                    raise
            if guard and mode == "replace":
                _refuse_shrinking(before, {r.table: r.loaded for r in reports})
            for key in keys:
                if key[0] not in files:  # a key of another table, into these
                    _add_key(cur, *key)
            cur.execute("""
                insert into ingest_loads (source_dir, mode, started_at, files, as_of, scale, seed)
                values (%s, %s, %s, %s, coalesce(%s, current_date), %s, %s)""",
                        (str(raw_dir), mode, started, json.dumps([asdict(r) for r in reports]),
                         record.as_of, record.scale, record.seed))
        conn.commit()
        return reports
    except BaseException:
        with contextlib.suppress(*TRANSIENT):
            conn.rollback()
        raise
    finally:
        for connection in (checker, conn):
            with contextlib.suppress(*TRANSIENT):
                connection.close()


def _write(cur, table: str, path: Path, header: list[str], schema: _Schema, mode: str, judged: _Judged | None,
           keys: list[tuple[str, str, str]]) -> FileReport:
    """Write one file. In a full load (``judged``), the rows the client certifies go straight into core as it reads
    them, and then the rest through staging and the rules (:func:`_promote`); in an increment, or where the client
    cannot read the file as PostgreSQL would, the whole file goes through staging. Then add back the table's
    ``keys``, which checks every row at once."""
    direct, plan = 0, None
    if judged is not None:
        # Frozen (the table was truncated in this transaction, a full load's): the first query after the load
        # need not mark every row committed and write every page again, nor autovacuum freeze them later.
        statement = sql.SQL("copy {} ({}) from stdin with (format csv, encoding 'UTF8', freeze)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, header)))
        with blaming(path, IngestError):
            cur.copy_expert(statement, _Stream(_file_bytes(path, judged.ranges())), size=COPY_BUFFER)
        direct, plan = cur.rowcount, judged.plan
        if plan is None and direct:  # the client met, part-way through, what it cannot read as PostgreSQL would
            cur.execute(sql.SQL("truncate {}").format(sql.Identifier(table)))
            direct = 0
        if plan is not None and direct != plan.direct_rows:
            raise IngestError(f"{path}: counts do not reconcile: {plan.direct_rows} rows certified, "
                              f"but {direct} reached {table}")
    staged, blank = _stage(cur, sql.Identifier("staging", table), path, header, plan)
    loaded, quarantined = _promote(cur, table, schema, mode, staged)
    report = FileReport(str(path), table, staged + direct, loaded + direct, quarantined, blank)
    for key in keys:
        _add_key(cur, *key)
    log.info("%s: %s rows read, %s loaded (%s straight to core), %s quarantined, %s blank lines skipped",
             path, report.read, report.loaded, direct, quarantined, blank)
    return report


def _stage(cur, target: sql.Identifier, path: Path, header: list[str], plan: _Plan | None) -> tuple[int, int]:
    """COPY the rows the plan leaves to the server (without a plan, the whole file), as text, into ``target``
    (``staging.<table>``); return the rows staged and the blank lines skipped. Rows keep the line numbers they
    have in the file, blank lines counted. Rows already in core (``_in_core``: the first of a key that repeats)
    are staged only to be repeated, and not counted."""
    cur.execute(sql.SQL("alter table {} alter column _file set default {}").format(target, sql.Literal(str(path))))
    if plan is not None:
        if len(plan.staged):
            statement = sql.SQL("copy {} (_line, _in_core, {}) from stdin with (format csv, encoding 'UTF8')").format(
                target, sql.SQL(", ").join(map(sql.Identifier, header)))
            pieces = ((b"%d,%s," % (n, b"t" if in_core else b"f"), s, e)
                      for at in range(0, len(plan.staged), 1 << 16)  # as lists, a slice at a time
                      for n, s, e, in_core in plan.staged[at:at + (1 << 16)].tolist())
            with blaming(path, IngestError):
                cur.copy_expert(statement, _Stream(_file_bytes(path, pieces)), size=COPY_BUFFER)
            # a few rows against a core table of millions: without statistics the planner would scan the parents
            cur.execute(sql.SQL("analyze {}").format(target))
        return len(plan.staged) - int(plan.staged[:, 3].sum()), plan.blank_lines
    statement = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')").format(
        target, sql.SQL(", ").join(map(sql.Identifier, header)))
    with open(path, "rb") as f, blaming(path, IngestError):
        records = WithoutBlankLines(f)
        cur.copy_expert(statement, records, size=COPY_BUFFER)
    rows = cur.rowcount
    if records.rows_after_blank:  # they sit further down the file than COPY counted: one line per blank line
        before = _rows_before_blank_lines(path)
        cur.execute(sql.SQL("""
            update {} s set _line = s._line + (select count(*) from unnest(%s::bigint[]) as b(rows_before)
                                               where b.rows_before < s._line)
            where s._line > %s""").format(target), (before, min(before)))
    return rows, records.blank


class WithoutBlankLines:
    """A raw file as COPY should read it: blank lines (empty, or only spaces, tabs and a carriage return)
    outside quoted fields are left out and counted. A blank line inside a quoted field is data, and kept.

    Blocks without a blank line, nearly all of them, pass through untouched at the cost of one search.
    """

    _CANDIDATE = re.compile(rb"(?:^|\n)[ \t\r]*(?:\n|$)")

    def __init__(self, f):
        self.f = f
        self.carry = b""  # the last line read, unfinished
        self.quotes = 0  # quote characters passed: odd means inside a quoted field
        self.blank = 0
        self.rows_after_blank = False  # a blank line has rows after it: their line numbers need moving

    def read(self, size: int = -1) -> bytes:
        while True:
            block = self.f.read(size if size and size > 0 else COPY_BUFFER)
            data = self.carry + block
            if not block:  # the end: what is left is the last line, without a newline
                self.carry = b""
                return self._lines(data) if data else b""
            cut = data.rfind(b"\n") + 1
            if cut:
                data, self.carry = data[:cut], data[cut:]
                return self._lines(data)
            self.carry = data  # no line ends in it yet

    def _lines(self, data: bytes) -> bytes:
        if not self._CANDIDATE.search(data):
            self.rows_after_blank |= self.blank > 0
            self.quotes += data.count(b'"')
            return data
        kept = []
        for line in _split_lines(data):
            if self.quotes % 2 == 0 and not line.strip(b" \t\r\n"):
                self.blank += 1
                continue
            self.rows_after_blank |= self.blank > 0
            self.quotes += line.count(b'"')
            kept.append(line)
        return b"".join(kept)


def _split_lines(data: bytes) -> list[bytes]:
    """Physical lines, each with its newline (the last may have none); only ``\\n`` ends a line."""
    lines = data.split(b"\n")
    last = lines.pop()
    return [line + b"\n" for line in lines] + ([last] if last else [])


def _rows_before_blank_lines(path: Path) -> list[int]:
    """For each blank line outside a quoted field, the number of rows (records after the header) before it.

    A second, slower reading of the file, needed only when a blank line has rows after it.
    """
    before, rows, quotes, header = [], 0, 0, True
    with open(path, "rb") as f:
        for line in f:
            if quotes % 2 == 0 and not line.strip(b" \t\r\n"):
                before.append(rows)
                continue
            quotes += line.count(b'"')
            if quotes % 2 == 0:  # the record ends with this line
                if header:
                    header = False
                else:
                    rows += 1
    return before


# ---------------------------------------------------------------- the client's judgement (a full load)

class _Unsure(Exception):
    """The client cannot read a file exactly as PostgreSQL would; the whole file goes to staging instead."""


@dataclass
class _Plan:
    """What the client made of one file of a full load, once read to the end: the rows it sent straight to core (as
    it read them, through :class:`_Judged`) and the rows the server's rules judge."""

    blank_lines: int
    direct_rows: int
    staged: np.ndarray  # (line - 1, start, end, in core) of each record staged; see _stage


class _Judged:
    """One file of a full load as the client judges it, passed from the judge to the writer: the byte ranges of each
    block's rows that go straight to core, as each block is judged, then the :class:`_Plan`, or None where the file
    must go to staging whole, or the error that stopped the judge."""

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self.plan: _Plan | None = None

    def put(self, item: np.ndarray | _Plan | BaseException | None) -> None:
        self._queue.put(item)

    def ranges(self) -> Iterator[tuple[bytes, int, int]]:
        """The ranges, as :func:`_file_bytes` takes them, until the judge is done; then :attr:`plan` is set."""
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise IngestError("the client's reading of the file failed") from item
            if not isinstance(item, np.ndarray):
                self.plan = item
                return
            for start, end in item.tolist():
                yield b"", start, end


_INTEGER_DIGITS = {"bigint": 18, "integer": 9, "smallint": 4}  # fewer than the type holds: no range check needed
_DAY = r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_CLOCK = r"[ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"


def _certain(data_type: str, precision: int | None, scale: int | None) -> str | None:
    """A pattern of the values of a column type (not a whole number: :func:`_certify`) that PostgreSQL reads
    exactly as written: no blanks, no rounding, no offset beyond what it accepts, nothing read in the session's
    time zone or relative to today. None where the client certifies nothing; such values go to the server."""
    if data_type == "numeric":
        if precision is None:
            return r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
        whole = precision - (scale or 0)
        integer = "0" if whole <= 0 else rf"(0|[1-9][0-9]{{0,{whole - 1}}})"
        return rf"^-?{integer}" + (rf"(\.[0-9]{{1,{scale}}})?$" if scale else "$")
    if data_type == "date":
        return rf"^{_DAY}$"
    if data_type == "timestamp with time zone":
        return rf"^{_DAY}{_CLOCK}(Z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$"
    if data_type == "timestamp without time zone":
        return rf"^{_DAY}{_CLOCK}$"
    return None


_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _certify(values: pa.Array, data_type: str, precision: int | None, scale: int | None) -> np.ndarray:
    """True for each value PostgreSQL reads exactly as written; False for the rest, nulls too.

    A whole number is certified when it is ASCII digits alone, without a leading zero, fewer than the type can
    hold: no sign, blank, underscore or hex, nothing out of range. Other types match :func:`_certain`.
    """
    if data_type in _INTEGER_DIGITS:
        length = pc.binary_length(values)
        ok = pc.and_(pc.and_(pc.ascii_is_decimal(values), pc.less_equal(length, _INTEGER_DIGITS[data_type])),
                     pc.or_(pc.equal(length, 1), pc.invert(pc.starts_with(values, "0"))))
        return pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
    pattern = _certain(data_type, precision, scale)
    if pattern is None:
        return np.zeros(len(values), bool)
    ok = pc.fill_null(pc.match_substring_regex(values, pattern), False).to_numpy(zero_copy_only=False)
    if (data_type == "date" or data_type.startswith("timestamp")) and ok.any():
        day = pc.if_else(ok, values, "2000-01-01")
        y, m, d = (pc.cast(pc.utf8_slice_codeunits(day, a, b), pa.int32()).to_numpy() for a, b in ((0, 4), (5, 7), (8, 10)))
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        ok &= d <= _DAYS_IN_MONTH[m - 1] + ((m == 2) & leap)
    return ok


def _records(f) -> Iterator[tuple[bytes, int, np.ndarray, np.ndarray]]:
    """A raw file's records, block by block: (block, its offset in the file, each record's start and end in it).

    A record ends at a newline outside quotes, as PostgreSQL's CSV reader has it, so a quoted newline stays in
    its record. Raises :class:`_Unsure` where pyarrow could read the file otherwise than PostgreSQL: a quote
    that neither opens nor closes a field, a carriage return without its newline, line endings that change,
    bytes that are not UTF-8, a quoted field never closed.
    """
    carry, offset, crlf = b"", 0, None
    while True:
        chunk = f.read(BLOCK)
        data = carry + chunk
        if not data:
            return
        arr = np.frombuffer(data, np.uint8)
        quotes = np.flatnonzero(arr == ord('"'))
        newlines = np.flatnonzero(arr == ord("\n"))
        ends = newlines[_outside_quotes(quotes, newlines)] + 1
        if not chunk:  # the end of the file: its last record may have no newline
            last = int(ends[-1]) if len(ends) else 0
            if len(quotes) & 1:
                raise _Unsure("a quoted field is never closed")
            if last < len(data):
                ends = np.append(ends, len(data))
        elif not len(ends):
            carry = data  # no record ends in this block yet
            continue
        used = int(ends[-1])
        q = quotes[quotes < used]
        padded = np.frombuffer(b"\n" + data + b"\n", np.uint8)  # a block starts and ends between records
        before, after = padded[q[0::2]], padded[q[1::2] + 2]  # before each opening quote, after each closing one
        if not (((before == 44) | (before == 10) | (before == 34)).all()
                and ((after == 44) | (after == 10) | (after == 13) | (after == 34)).all()):
            raise _Unsure("a quote inside an unquoted field, or after a closing quote")
        returns = np.flatnonzero(arr[:used] == ord("\r"))
        returns = returns[_outside_quotes(quotes, returns)]
        if not (returns + 1 < len(arr)).all() or not (arr[np.minimum(returns + 1, len(arr) - 1)] == ord("\n")).all():
            raise _Unsure("a carriage return without a newline")
        crlf = bool(used >= 2 and data[int(ends[0]) - 2:int(ends[0])] == b"\r\n") if crlf is None else crlf
        newline_ended = ends[arr[ends - 1] == ord("\n")]
        if len(returns) != (len(newline_ended) if crlf else 0):
            raise _Unsure("line endings change within the file")
        try:
            data[:used].decode("utf-8")
        except UnicodeDecodeError:
            raise _Unsure("bytes that are not UTF-8") from None
        yield data, offset, np.concatenate(([0], ends[:-1])), ends
        if not chunk:
            return
        carry, offset = data[used:], offset + used


def _judge(path: Path, table: str, header: list[str], schema: _Schema, checker, parents: dict,
           send: Callable[[np.ndarray], None]) -> _Plan | None:
    """Read ``path`` on the client in blocks, ``send`` each block's rows that go straight to core (their byte
    ranges) as soon as it is judged, and plan the rest (:class:`_Plan`). None when the file must go to staging
    whole, the rows already sent too: the client met what it cannot read as PostgreSQL would.

    A row goes straight to core when every typed value is null or certified (:func:`_certify`), its key and
    references are present, no earlier row of the file has its key, and each reference is to a row of the parent
    file that went straight to core (``parents``: each parent's keys; this file's are added). A later row with that
    key goes to staging, and so does a copy of the first, marked as in core, for the server to refuse the later one
    as a repeat just as it would have. Keys the client cannot certify are typed by the server, block by block, on
    ``checker`` (read-only), so that rows with the same key are found whatever their spelling. A row keeps only its
    place in the file and a hash of its key.
    """
    types, keys, refs = schema.types[table], schema.keys[table], schema.references[table]
    if any(types[c][0] not in _INTEGER_DIGITS for c in [*keys, *refs]):
        return None  # only whole-number keys are typed on the client
    key_types = [types[c] for c in keys]
    starts, ends, direct, hashes, own_keys = [], [], [], [], []
    blank_after = []  # for each blank line, the rows before it
    seen, repeats = _Seen(), []  # the hashes of rows whose key an earlier row had
    rows = 0
    block = functools.partial(_block, header=header, types=types, keys=keys, refs=refs, parents=parents)
    try:
        # a block parsed while the last is handled: one core's worth, as the server writes on the other
        with open(path, "rb") as f, ThreadPoolExecutor(1) as pool:
            for read in _ahead(pool, block, _records(f)):
                block_starts, block_ends, ok, (hashed, own_key), blank_before, doubtful = read
                blank_after.extend(rows + np.asarray(blank_before, np.int64))
                if not len(block_starts):
                    continue
                if doubtful:
                    _type_keys(checker, doubtful, hashed, key_types, schema.soft_input_check)
                if keys:
                    first = seen.first(hashed)
                    ok &= first
                    repeats.append(hashed[~first])
                send(_runs(ok, block_starts, block_ends))
                starts.append(block_starts)
                ends.append(block_ends)
                direct.append(ok)
                hashes.append(hashed)
                if len(keys) == 1:
                    own_keys.append(own_key)
                rows += len(block_starts)
    except (_Unsure, pa.ArrowInvalid) as why:
        log.info("%s goes to staging whole: %s", path, why)
        return None
    finally:
        pa.default_memory_pool().release_unused()  # the parsed blocks' memory, back to the system
    del seen
    if not rows:
        return _Plan(len(blank_after), 0, np.zeros((0, 4), np.int64))
    # the rows straight to core whose key a later row repeats, found block by block: no array of every hash
    repeated = np.unique(_joined(repeats)) if repeats else []
    in_core = (_joined([ok & _among(hashed, repeated) for ok, hashed in zip(direct, hashes)]) if len(repeated)
               else np.zeros(rows, bool))
    del hashes
    starts, ends, direct = _joined(starts), _joined(ends), _joined(direct)
    if len(keys) == 1:
        parents[(table, keys[0])] = _joined(own_keys)[direct]
    judged = np.flatnonzero(~direct | in_core)
    lines = judged + 2 + np.searchsorted(np.asarray(blank_after, np.int64), judged, side="right")  # header: line 1
    return _Plan(len(blank_after), int(direct.sum()),
                 np.column_stack((lines - 1, starts[judged], ends[judged], in_core[judged])))


def _type_keys(checker, doubtful: list, hashed: np.ndarray, key_types: list[tuple], soft_input_check: bool) -> None:
    """Hash the keys of a block's ``doubtful`` rows (row, its key's parts: a whole number, or text) as PostgreSQL
    reads them, typed by the server; a key it refuses keeps the hash it had, and repeats nothing."""
    typed = []
    for n, column_type in enumerate(key_types):
        texts = [parts[n] for _, parts in doubtful if isinstance(parts[n], str)]
        typed.append(_typed_by_server(checker, texts, column_type, soft_input_check) if texts else {})
    for row, parts in doubtful:
        parts = [known.get(p) if isinstance(p, str) else p for known, p in zip(typed, parts)]
        if None not in parts:
            hashed[row] = _hash([np.array([p], np.int64) for p in parts])[0]


def _runs(ok: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(start, end) of each run of ``ok`` rows next to each other in the file, to be sent as one range of bytes."""
    joined = ok[:-1] & ok[1:] & (ends[:-1] == starts[1:])
    first = np.flatnonzero(ok & ~np.concatenate(([False], joined)))
    last = np.flatnonzero(ok & ~np.concatenate((joined, [False])))
    return np.column_stack((starts[first], ends[last]))


class _Seen:
    """The keys of a file's rows read so far, as 32 bits of their hashes in sorted runs. A block is looked up in each
    run, then added as a run of its own, and runs merge as a binary counter carries: each hash is copied, and each
    block looked up, about log2(blocks) times. A key seen is never missed; two keys may look alike, and then the
    later row goes to staging needlessly (about one in a thousand at scale 100), where the server judges it all
    the same."""

    def __init__(self):
        self.runs: list[np.ndarray] = []

    def first(self, hashes: np.ndarray) -> np.ndarray:
        """True for each of a block's ``hashes`` (in file order) that no row before it had; then all are seen."""
        # the high half of the hash times an odd constant: a single-column key's hash is the key itself
        short = ((hashes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)).astype(np.uint32)
        order = np.argsort(short, kind="stable")  # equal hashes stay in file order: the first is marked
        ordered = short[order]
        new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        for run in self.runs:  # sorted lookups walk each run once
            new &= ~_among(ordered, run)
        first = np.empty(len(hashes), bool)
        first[order] = new
        while self.runs and len(self.runs[-1]) <= len(ordered):
            ordered = np.concatenate((self.runs.pop(), ordered))
            ordered.sort(kind="stable")  # two sorted runs: timsort merges them, in the same array
        self.runs.append(ordered)
        return first


def _ahead(pool: ThreadPoolExecutor, work: Callable, items: Iterator) -> Iterator:
    """``work`` on each of ``items`` in ``pool``, the next item submitted before a result is taken; the results
    in order."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(work, *item))
        if len(pending) == 2:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _outside_quotes(quotes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each position ``at`` in a block, whether it lies outside quoted fields: an even number of the block's
    ``quotes`` (their positions, in order) before it. A doubled quote inside a field counts twice."""
    return (np.searchsorted(quotes, at) & 1) == 0


def _block(data: bytes, offset: int, starts: np.ndarray, ends: np.ndarray, *, header, types, keys, refs, parents):
    """One block of records (:func:`_records`), judged: its records' starts and ends in the file (blank lines
    left out), whether each is certain to load, its key's hash (and the key itself, if a single column), where
    the blank lines were (as rows before them) and the keys the server must type."""
    if offset == 0:  # the header
        starts, ends = starts[1:], ends[1:]
    blank = np.zeros(len(starts), bool)
    first = np.frombuffer(data, np.uint8)[starts]
    for i in np.flatnonzero((first == 32) | (first == 9) | (first == 13) | (first == 10)):
        blank[i] = not data[starts[i]:ends[i]].strip(b" \t\r\n")
    blank_before = list(np.cumsum(~blank)[blank]) if blank.any() else []
    starts, ends = starts[~blank], ends[~blank]
    if not len(starts):
        return starts, ends, None, (None, None), blank_before, []
    view = memoryview(data)
    feed = view[starts[0]:ends[-1]] if not blank.any() else b"".join(view[s:e] for s, e in zip(starts, ends))
    checked = [c for c in header if types[c][0] != "text"]
    parsed = pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(feed)),
        read_options=pacsv.ReadOptions(column_names=header, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header}, include_columns=checked,
                                             strings_can_be_null=True, quoted_strings_can_be_null=False,
                                             null_values=[""]))
    if parsed.num_rows != len(starts):
        raise _Unsure("pyarrow read another number of records")
    ok = np.ones(parsed.num_rows, bool)
    key_values, key_fits = [], []
    for column in checked:
        col = parsed[column].combine_chunks()
        fits = _certify(col, *_type_of(types[column]))
        if column not in keys and column not in refs:
            ok &= fits | col.is_null().to_numpy(zero_copy_only=False)
            continue
        ok &= fits
        number = pc.cast(pc.if_else(fits, col, "0"), pa.int64()).to_numpy()
        if column in refs:
            ok &= np.isin(number, parents.get(refs[column], np.zeros(0, np.int64)))
        if column in keys:
            key_values.append(number)
            key_fits.append((fits, col))
    # keys the client cannot certify, and what they are made of, for the server to type
    doubtful = [(i, [int(n[i]) if fits[i] else col[i].as_py() for n, (fits, col) in zip(key_values, key_fits)])
                for i in np.flatnonzero(np.logical_or.reduce(
                    [~fits & col.is_valid().to_numpy(zero_copy_only=False) for fits, col in key_fits]))]
    return (starts + offset, ends + offset, ok, (_hash(key_values), key_values[0] if len(keys) == 1 else None),
            blank_before, doubtful)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The blocks' arrays as one, each block's freed as soon as it is copied."""
    joined = np.concatenate(parts)
    parts.clear()
    return joined


def _hash(columns: list[np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row's key (``columns`` together); equal keys hash alike."""
    hashed = np.zeros(len(columns[0]) if columns else 0, np.uint64)
    for column in columns:
        hashed *= np.uint64(0x9E3779B97F4A7C15)  # wraps around, as meant
        hashed += column.view(np.uint64)
    return hashed


def _among(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """True for each of ``values`` that ``ordered`` (sorted, not empty) holds."""
    return ordered[np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)] == values


def _type_of(column_type: tuple) -> tuple[str, int | None, int | None]:
    data_type, _, precision, scale = column_type
    return data_type, precision, scale


def _typed_by_server(checker, texts: list[str], column_type: tuple, soft_input_check: bool) -> dict[str, int]:
    """The whole numbers PostgreSQL reads ``texts`` as, by its own checks; texts it refuses are left out."""
    check, _ = _valid(sql.SQL("v"), *column_type, soft_input_check)
    with checker.cursor() as cur:
        cur.execute(sql.SQL("select v, case when {} then v::{} end from unnest(%s::text[]) as u(v)").format(
            check, sql.SQL(column_type[1])), (sorted(set(texts)),))
        return {text: value for text, value in cur.fetchall() if value is not None}


def _file_bytes(path: Path, pieces: Iterator[tuple[bytes, int, int]]) -> Iterator[bytes]:
    """Byte ranges of ``path``, each after its prefix, in buffers of about :data:`COPY_BUFFER`, for COPY."""
    buffer, size = [], 0
    with open(path, "rb") as f:
        for prefix, start, end in pieces:
            f.seek(start)
            piece = prefix + f.read(end - start)
            buffer.append(piece)
            size += len(piece)
            if size >= COPY_BUFFER:
                yield b"".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


class _Stream:
    """A file-like object over an iterator of bytes, for ``copy_expert``."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks

    def read(self, size: int = -1) -> bytes:
        return next(self.chunks, b"")


# ---------------------------------------------------------------- promotion

@dataclass
class _Schema:
    """Types, primary keys and foreign keys of the core tables, as the database has them."""

    types: dict[str, dict[str, tuple[str, str, int | None, int | None]]]  # (data type, full type, precision, scale)
    keys: dict[str, list[str]]
    references: dict[str, dict[str, tuple[str, str]]]  # table -> column -> (parent table, parent column)
    soft_input_check: bool  # pg_input_is_valid exists (PostgreSQL 16+)

    @classmethod
    def read(cls, cur, tables: list[str]) -> _Schema:
        cur.execute("""
            select c.table_name, c.column_name, c.data_type,
                   format_type(a.atttypid, a.atttypmod), c.numeric_precision, c.numeric_scale
            from information_schema.columns c
            join pg_attribute a on a.attrelid = (quote_ident(c.table_name))::regclass and a.attname = c.column_name
            where c.table_schema = current_schema() and c.table_name = any(%s)
            order by c.ordinal_position""", (tables,))
        types: dict = {t: {} for t in tables}
        for table, column, data_type, full_type, precision, scale in cur.fetchall():
            types[table][column] = (data_type, full_type, precision, scale)
        cur.execute("""
            select c.conrelid::regclass::text, c.contype, a.attname, c.confrelid::regclass::text, pa.attname
            from pg_constraint c
            cross join lateral unnest(c.conkey, coalesce(c.confkey, c.conkey)) with ordinality as k(attnum, pattnum, n)
            join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
            left join pg_attribute pa on pa.attrelid = c.confrelid and pa.attnum = k.pattnum
            where c.contype in ('p', 'f') and c.conrelid = any(%s::regclass[])
            order by c.conname, k.n""", (tables,))
        keys: dict = {t: [] for t in tables}
        references: dict = {t: {} for t in tables}
        for table, kind, column, parent, parent_column in cur.fetchall():
            if kind == "p":
                keys[table].append(column)
            else:
                references[table][column] = (parent, parent_column)
        cur.execute("select current_setting('server_version_num')::int >= 160000")
        return cls(types, keys, references, cur.fetchone()[0])


_INTEGER_RANGES = {"bigint": (19, -(2**63), 2**63 - 1), "integer": (10, -(2**31), 2**31 - 1),
                   "smallint": (5, -(2**15), 2**15 - 1)}
_TIMESTAMP = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
              r" ?(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?)?$")


_SPECIAL_WORDS = ("now", "today", "tomorrow", "yesterday", "epoch", "infinity", "-infinity", "allballs")


def _valid(value: sql.Composable, data_type: str, full_type: str, precision, scale, soft_input_check: bool
           ) -> tuple[sql.Composable, str] | None:
    """A boolean SQL expression saying whether a trimmed, non-empty text value fits the column, and what
    the column expects; None for text, which takes anything.

    PostgreSQL 16+ checks with the type's own input function (``pg_input_is_valid``), which is fast and
    exact. PostgreSQL 15 has no such function, so patterns and range checks stand in; only CASE fixes
    evaluation order in SQL, so every cast there is guarded by a CASE that has checked the text first.
    Words such as 'now' or 'epoch', which dates and timestamps accept, are refused: they are not data.
    """
    v = value
    if data_type == "text":
        return None
    expected = {"date": "a date like 2025-03-02", "numeric": "a decimal number that fits " + full_type,
                }.get(data_type, "an ISO 8601 timestamp like 2025-03-02 14:23:11Z" if data_type.startswith("timestamp")
                      else f"a whole number that fits {data_type}")
    if soft_input_check:
        check = sql.SQL("pg_input_is_valid({v}, {t})").format(v=v, t=sql.Literal(full_type))
        if data_type == "date" or data_type.startswith("timestamp"):
            check = sql.SQL("(lower({v}) not in ({words}) and {check})").format(
                v=v, words=sql.SQL(", ").join(map(sql.Literal, _SPECIAL_WORDS)), check=check)
        return check, expected
    v = sql.SQL("btrim({})").format(v)  # the patterns below expect no surrounding blanks; casts allow them
    if data_type in _INTEGER_RANGES:
        digits, low, high = _INTEGER_RANGES[data_type]
        return sql.SQL("case when {v} ~ {re} then {v}::numeric between {lo} and {hi} else false end").format(
            v=v, re=sql.Literal(f"^[+-]?[0-9]{{1,{digits}}}$"), lo=sql.Literal(low), hi=sql.Literal(high)
        ), expected
    if data_type == "numeric":
        limit = 10 ** ((precision or 30) - (scale or 0))
        return sql.SQL("case when {v} ~ {re} then abs(round({v}::numeric, {s})) < {limit} else false end").format(
            v=v, re=sql.Literal(r"^[+-]?([0-9]{1,30}(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?$"),
            s=sql.Literal(scale or 0), limit=sql.Literal(limit),
        ), expected
    if data_type == "date":
        return sql.SQL("case when {v} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' then {ok} else false end").format(
            v=v, ok=_date_ok(v)), expected
    if data_type.startswith("timestamp"):
        time_ok = sql.SQL("""case when substr({v}, 11, 1) in (' ', 'T')
                 then substr({v}, 12, 2)::int <= 23 and substr({v}, 15, 2)::int <= 59
                      and (substr({v}, 17, 1) <> ':' or substr({v}, 18, 2)::int <= 59) else true end
             and coalesce((regexp_match({v}, '[0-9]:[0-9]{{2}}(:[0-9]{{2}}(\\.[0-9]+)?)? ?[+-]([0-9]{{2}})'))[3]::int, 0) <= 15""").format(v=v)
        return sql.SQL("case when {v} ~ {re} then {date_ok} and ({time_ok}) else false end").format(
            v=v, re=sql.Literal(_TIMESTAMP), date_ok=_date_ok(v), time_ok=time_ok
        ), expected
    raise IngestError(f"ecompipe cannot check values of type {full_type} on PostgreSQL 15")


def _date_ok(v: sql.Composable) -> sql.Composable:
    y, m, d = (sql.SQL("substr({v}, {a}, {n})::int").format(v=v, a=sql.Literal(a), n=sql.Literal(n))
               for a, n in ((1, 4), (6, 2), (9, 2)))
    return sql.SQL("""case when {m} between 1 and 12 and {y} >= 1
        then {d} between 1 and extract(day from make_date({y}, {m}, 1) + interval '1 month - 1 day')::int
        else false end""").format(y=y, m=m, d=d)


@dataclass(frozen=True)
class _Table:
    """What the rules know of the table being promoted."""

    name: str
    columns: tuple[str, ...]
    keys: list[str]
    refs: dict[str, tuple[str, str]]  # column -> (parent table, parent column)
    expected: dict[str, str]  # a typed column -> what its values must look like


@dataclass(frozen=True)
class Rule:
    """A hard rule. A row that breaks it goes to quarantine, with a reason naming the rule's column and value.

    ``where`` gives the columns of a table it checks (None: the row as a whole); ``broken`` and ``reason`` are
    SQL over a judged staging row (``c``): its text values ``c.<column>``, and what the load computes for
    them: ``ok_<column>`` (the value fits its type), ``t_<column>`` (a key or reference, typed),
    ``repeated`` and ``previous_line`` (the key was on an earlier line), ``orphan_<column>`` and
    ``refused_<column>`` (no parent row; the parent's own refusal, if it was refused).
    """

    name: str
    dimension: str  # the quality dimension the refusals count against (04_validate)
    what: str
    where: Callable[[_Table], list[str | None]]
    broken: Callable[[_Table, str | None], sql.Composable]
    reason: Callable[[_Table, str | None], sql.Composable]


_c = sql.Identifier
_lit = sql.Literal


def _key_text(t: _Table) -> sql.Composable:
    return sql.SQL(" || ', ' || ").join(sql.SQL("{} || '=' || {}").format(_lit(k), _c(f"t_{k}")) for k in t.keys)


RULES: tuple[Rule, ...] = (
    Rule("unparseable", "validity", "a value that does not parse as its column's type, or does not fit it",
         where=lambda t: list(t.expected),
         broken=lambda t, col: sql.SQL("(c.{v} is not null and not {ok})").format(v=_c(col), ok=_c(f"ok_{col}")),
         reason=lambda t, col: sql.SQL("format({msg}, left(c.{v}, 60))").format(
             msg=_lit(f"{col}: %L is not {t.expected[col]}"), v=_c(col))),
    Rule("null key", "completeness", "an empty key, or an empty reference: the row cannot be linked",
         where=lambda t: [col for col in t.columns if col in t.keys or col in t.refs],
         broken=lambda t, col: sql.SQL("(c.{} is null)").format(_c(col)),
         reason=lambda t, col: _lit(f"null key: {col} is empty")),
    Rule("duplicate key", "uniqueness", "a key already on an earlier line of the file: the first row wins",
         where=lambda t: [None],
         broken=lambda t, col: sql.SQL("coalesce(repeated, false)"),
         reason=lambda t, col: sql.SQL("format('duplicate key: %s, also at line %s', {}, previous_line + 1)").format(
             _key_text(t))),
    Rule("orphan", "consistency", "a reference to a row its parent table does not hold",
         where=lambda t: list(t.refs),
         broken=lambda t, col: _c(f"orphan_{col}"),
         reason=lambda t, col: sql.SQL(
             "case when {why} is null then format({msg}, {v}) else format({refused}, {v}, {why}) end").format(
             why=_c(f"refused_{col}"), v=_c(f"t_{col}"), msg=_lit(f"orphan: {col}=%s is not in {t.refs[col][0]}"),
             refused=_lit(f"orphan: {col}=%s was quarantined (%s)"))),
)
"""Every hard rule, in the order a refused row's reasons list them."""


def _promote(cur, table: str, schema: _Schema, mode: str, read: int) -> tuple[int, int]:
    """Move ``staging.<table>`` into quarantine, then the rest into core, but for the copies of rows already in
    core (``_in_core``: there only for the rows that repeat their key); return (loaded, quarantined).

    The first statement checks every value once and writes out only the rows that broke a rule, with all
    their reasons; the second casts and inserts every other row, which is what a load costs anyway.
    """
    columns, keys, refs = COLUMNS[table], schema.keys[table], schema.references[table]
    ident, lit = sql.Identifier, sql.Literal
    checks, typed, expected = [], [], {}
    for column in columns:
        raw = sql.SQL("c.{}").format(ident(column))
        full_type = schema.types[table][column][1]
        check = _valid(sql.SQL("s.{}").format(ident(column)), *schema.types[table][column], schema.soft_input_check)
        if check is not None:
            expression, expected[column] = check
            ok = ident(f"ok_{column}")
            checks.append(sql.SQL(", {} as {}").format(expression, ok))
            if column in keys or column in refs:
                typed.append(sql.SQL(", case when {ok} then {raw}::{type} end as {name}").format(
                    ok=ok, raw=raw, type=sql.SQL(full_type), name=ident(f"t_{column}")))
        elif column in keys or column in refs:
            typed.append(sql.SQL(", {} as {}").format(raw, ident(f"t_{column}")))
    t = _Table(table, columns, keys, refs, expected)
    broken, reasons, rules = [], [], []
    for rule in RULES:
        for column in rule.where(t):
            condition = rule.broken(t, column)
            broken.append(condition)
            reasons.append(sql.SQL("case when {} then {} end").format(condition, rule.reason(t, column)))
            rules.append(sql.SQL("case when {} then {} end").format(condition, lit(rule.name)))

    key_cols = sql.SQL(", ").join(ident(f"t_{k}") for k in keys)
    # column by column: comparing row values is several times slower
    same_as_previous = sql.SQL(" and ").join(sql.SQL("{k} = lag({k}) over w").format(k=ident(f"t_{k}")) for k in keys)
    joins, orphan_flags = [], []
    for n, (column, (parent, parent_column)) in enumerate(refs.items()):
        alias, flag, refused = ident(f"p{n}"), ident(f"orphan_{column}"), ident(f"q{n}")
        joins.append(sql.SQL("left join {p} {a} on {a}.{pc} = k.{c}").format(
            p=ident(parent), a=alias, pc=ident(parent_column), c=ident(f"t_{column}")))
        # The parent may have been refused itself: then say so, and why, rather than "not in".
        joins.append(sql.SQL("""left join (
                select distinct on (btrim(raw ->> {pc})) btrim(raw ->> {pc}) as key,
                       format('%s line %s: %s', regexp_replace(source_file, '^.*/', ''), line,
                              array_to_string(reasons, '; ')) as why
                from quarantine where table_name = {p} order by btrim(raw ->> {pc}), source_file, line
            ) {q} on {q}.key = k.{c}::text""").format(
            p=lit(parent), pc=lit(parent_column), q=refused, c=ident(f"t_{column}")))
        orphan_flags.append(sql.SQL(", (k.{c} is not null and {a}.{pc} is null) as {flag}, {q}.why as {why}").format(
            c=ident(f"t_{column}"), a=alias, pc=ident(parent_column), flag=flag, q=refused,
            why=ident(f"refused_{column}")))

    cur.execute(sql.SQL("""
        with typed as (
            select c.* {typed}
            from (
                -- each value checked once: OFFSET 0 keeps the planner from inlining (and repeating) the checks
                select s.* {checks} from {staging} s offset 0
            ) c
        ),
        keyed as (
            -- one ordered window, not a partition per key: a row repeats the key of the row before it
            select t.*,
                   {same_as_previous} as repeated,
                   lag(_line) over w as previous_line
            from typed t
            window w as (order by {key_cols}, _line)
        ),
        judged as (
            select k.* {orphan_flags} from keyed k {joins}
        )
        insert into quarantine (source_file, line, table_name, raw, reasons, rules)
        select _file, _line + 1, {table}, jsonb_build_object({raw}), array_remove(array[{reasons}]::text[], null),
               array_remove(array[{rules}]::text[], null)
        from judged c where {broken}
    """).format(
        typed=sql.SQL("").join(typed), checks=sql.SQL("").join(checks), staging=sql.Identifier("staging", table),
        same_as_previous=same_as_previous,
        key_cols=key_cols, orphan_flags=sql.SQL("").join(orphan_flags),
        joins=sql.SQL(" ").join(joins), table=lit(table), broken=sql.SQL(" or ").join(broken),
        reasons=sql.SQL(", ").join(reasons), rules=sql.SQL(", ").join(rules),
        raw=sql.SQL(", ").join(sql.SQL("{}, c.{}").format(lit(c), ident(c)) for c in columns),
    ))
    quarantined = cur.rowcount

    conflict = sql.SQL("")
    if mode == "upsert":
        non_keys = [c for c in columns if c not in keys]
        conflict = sql.SQL(" on conflict ({keys}) do update set {sets} where ({old}) is distinct from ({new})").format(
            keys=sql.SQL(", ").join(map(ident, keys)),
            sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=ident(c)) for c in non_keys),
            old=sql.SQL(", ").join(sql.SQL("{t}.{c}").format(t=ident(table), c=ident(c)) for c in non_keys),
            new=sql.SQL(", ").join(sql.SQL("excluded.{c}").format(c=ident(c)) for c in non_keys))
    cur.execute(sql.SQL("""
        insert into {core} ({target})
        select {values} from {staging} s
        where not s._in_core
          and not exists (select 1 from quarantine q where q.source_file = s._file and q.line = s._line + 1){conflict}
    """).format(
        core=ident(table), target=sql.SQL(", ").join(map(ident, columns)), staging=sql.Identifier("staging", table),
        values=sql.SQL(", ").join(sql.SQL("s.{c}::{t}").format(c=ident(c), t=sql.SQL(schema.types[table][c][1]))
                                  for c in columns),
        conflict=conflict,
    ))
    # The reconciliation: every row read that was not quarantined must be in core now.
    loaded = read - quarantined
    reached = cur.rowcount
    if mode == "upsert":  # unchanged rows are not rewritten, so count what core now holds of this file
        cur.execute(sql.SQL("""
            select count(*) from {staging} s join {core} c on {match}
            where not exists (select 1 from quarantine q where q.source_file = s._file and q.line = s._line + 1)
        """).format(staging=sql.Identifier("staging", table), core=ident(table),
                    match=sql.SQL(" and ").join(sql.SQL("c.{k} = s.{k}::{t}").format(
                        k=ident(k), t=sql.SQL(schema.types[table][k][1])) for k in keys)))
        reached = cur.fetchone()[0]
    if reached != loaded:
        raise IngestError(f"{table}: counts do not reconcile: {read} read, {quarantined} quarantined, "
                          f"but {reached} rows reached core instead of {loaded}")
    return loaded, quarantined


# ---------------------------------------------------------------- the guard

def _core_counts(cur) -> dict[str, int]:
    counts = {}
    for table in COLUMNS:
        cur.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table)))
        counts[table] = cur.fetchone()[0]
    return counts


def _refuse_shrinking(before: dict[str, int], after: dict[str, int]) -> None:
    """Refuse a replace that would empty a core table or shrink it by more than half."""
    shrinking = [f"{t} {before[t]:,} -> {after[t]:,} rows" for t in COLUMNS
                 if before[t] and (after[t] == 0 or after[t] * 2 < before[t])]
    if shrinking:
        dropped = sum(before[t] - after[t] for t in COLUMNS if after[t] < before[t])
        raise IngestError(
            f"refused: this replace load would drop {dropped:,} rows ({'; '.join(shrinking)}); "
            "to replace the warehouse anyway, set force = True (02_ingest) or run `ecompipe run --force`")


# ---------------------------------------------------------------- keys

def _drop_keys(cur, tables: list[str]) -> list[tuple[str, str, str]]:
    """Drop the primary and foreign keys on or into ``tables``; return them for :func:`_add_key`."""
    cur.execute(
        """
        select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        from pg_constraint
        where contype in ('p', 'f')
          and (conrelid = any(%(t)s::regclass[]) or confrelid = any(%(t)s::regclass[]))
        order by contype = 'p', conname
        """,
        {"t": tables},
    )
    keys = cur.fetchall()  # foreign keys first, so the primary keys they lean on can go after them
    for table, name, _ in keys:
        cur.execute(sql.SQL("alter table {} drop constraint {}").format(sql.Identifier(table), sql.Identifier(name)))
    return keys


def _add_key(cur, table: str, name: str, definition: str) -> None:
    cur.execute(
        sql.SQL("alter table {} add constraint {} ").format(sql.Identifier(table), sql.Identifier(name))
        + sql.SQL(definition)  # pg_get_constraintdef output: the server's own text, not user input
    )


def quarantine_reasons(engine: Engine, examples: int = 2) -> pd.DataFrame:
    """Quarantined rows by table and rule, most frequent first, with examples of the reasons. A row refused
    for several reasons counts under each."""
    return pd.read_sql(
        """
        with reasons as (
            select table_name, rule, reason, source_file, line,
                   row_number() over (partition by table_name, rule order by source_file, line) as n
            from quarantine, unnest(rules, reasons) as r(rule, reason)
        )
        select table_name, rule as reason, count(*) as rows,
               string_agg(format('%%s line %%s: %%s', regexp_replace(source_file, '^.*/', ''), line, reason), ' | ')
                   filter (where n <= %(examples)s) as examples
        from reasons group by table_name, rule order by rows desc, table_name, rule
        """,
        engine, params={"examples": examples},
    )


def orders_by_status(engine: Engine) -> pd.DataFrame:
    """Orders in core per status, the most frequent first; a missing status shows as None."""
    return pd.read_sql("select status, count(*) as orders from orders group by status order by orders desc, status",
                       engine)


def latest_load(engine: Engine) -> dict | None:
    """The newest row of ``ingest_loads``: when, what, and each file's reconciliation."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "select load_id, source_dir, mode, started_at, finished_at, as_of, scale, seed, files from ingest_loads "
            "order by load_id desc limit 1")).mappings().one_or_none()
    if row is None:
        return None
    return {**row, "started_at": row["started_at"].isoformat(), "finished_at": row["finished_at"].isoformat(),
            "as_of": row["as_of"] and row["as_of"].isoformat(), "scale": row["scale"] and float(row["scale"])}

"""The text outputs: metrics JSON, CSV and logs, parsed into what the matchers look at.

JSON: any depth up to the cap; arrays of numbers (and the columns of arrays of rows, and
the values of objects of numbers) are numeric sequences; strings longer than the cap are
blocked. CSV: read by the ``csv`` module, row and column and cell caps; each column (and
each row as long as a window) is a sequence; the row count is kept for the dump check.
Logs: lines with the same count of numbers in a row form a table whose columns are
sequences. In all three, runs of base64 or hex long enough to hold a block of a frame are
decoded and searched for frames (:func:`encoded_blobs`)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from typing import Any

import numpy as np

from .content import Blob, Content, Sequence
from .policy import GatePolicy

__all__ = ["encoded_blobs", "parse_csv", "parse_json", "parse_text"]

_B64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){64,}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def encoded_blobs(text: str, where: dict[str, Any], min_bytes: int) -> list[Blob]:
    """Decoded runs of base64 (standard or URL-safe) and hex in ``text`` of at least
    ``min_bytes`` decoded bytes, each with its character offset."""
    out: list[Blob] = []
    for m in _HEX.finditer(text):
        if len(m.group()) // 2 >= min_bytes:
            out.append(Blob(bytes.fromhex(m.group()), where | {"char_offset": m.start(), "encoding": "hex"}))
    for m in _B64.finditer(text):
        s = m.group()
        if len(s) * 3 // 4 < min_bytes or _HEX.fullmatch(s):
            continue
        s = s.rstrip("=")
        s = s[: len(s) - len(s) % 4] if len(s) % 4 == 1 else s
        try:
            raw = base64.b64decode(s.replace("-", "+").replace("_", "/") + "=" * (-len(s) % 4))
        except (binascii.Error, ValueError):
            continue
        out.append(Blob(raw, where | {"char_offset": m.start(), "encoding": "base64"}))
    return out


def _numbers(values: list[Any]) -> np.ndarray | None:
    """The values as float64 when all are numbers (not bools), else None."""
    if not values or not all(type(v) in (int, float) for v in values):
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except (OverflowError, ValueError):
        return None


def _json_walk(doc: Any, path: str, depth: int, content: Content, policy: GatePolicy,
               min_len: int, strings: list[tuple[str, str]]) -> None:
    if depth > policy.json_max_depth:
        content.block("structure", f"nested deeper than {policy.json_max_depth} levels at {path}",
                      json_path=path)
        return
    if isinstance(doc, str):
        if len(doc) > policy.json_max_string:
            content.block("structure", f"a string of {len(doc)} characters at {path} (the cap is "
                          f"{policy.json_max_string}: metrics hold numbers and short text)", json_path=path)
        if len(doc) >= min_len:
            strings.append((path, doc))
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            if len(key) > policy.json_max_string:
                content.block("structure", f"a key of {len(key)} characters in {path}", json_path=path)
            if len(key) >= min_len:
                strings.append((f"{path} (key)", key))
            _json_walk(value, f"{path}.{key}" if re.fullmatch(r"\w+", key) else f"{path}[{key!r}]",
                       depth + 1, content, policy, min_len, strings)
        values = _numbers(list(doc.values()))
        if values is not None and len(values) >= 2:
            content.sequences.append(Sequence(values, {"json_path": f"{path} (values)"}, "index"))
        return
    if isinstance(doc, list):
        values = _numbers(doc)
        if values is not None:
            content.sequences.append(Sequence(values, {"json_path": path}, "index"))
            return
        rows = [_numbers(r) if isinstance(r, list) else None for r in doc]
        if doc and all(r is not None for r in rows) and len({len(r) for r in rows if r is not None}) == 1:
            table = np.stack([r for r in rows if r is not None])
            for j in range(table.shape[1]):
                content.sequences.append(Sequence(table[:, j], {"json_path": f"{path}[*][{j}]"}, "index"))
            for i, r in enumerate(rows):
                if r is not None and len(r) >= 2:
                    content.sequences.append(Sequence(r, {"json_path": f"{path}[{i}]"}, "index"))
            return
        for i, item in enumerate(doc):
            _json_walk(item, f"{path}[{i}]", depth + 1, content, policy, min_len, strings)


def parse_json(text: str, doc: Any, policy: GatePolicy, block_bytes: int) -> Content:
    content = Content("json")
    if doc is None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            content.block("structure", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          byte_offset=len(text[:exc.pos].encode()))
            return content
        except RecursionError:
            content.block("structure", f"nested deeper than {policy.json_max_depth} levels")
            return content
        except ValueError as exc:
            content.block("structure", f"not valid JSON: {exc}")
            return content
    if not isinstance(doc, (dict, list)):
        content.block("structure", f"the top level is a {type(doc).__name__}, expected an object or an array")
        return content
    strings: list[tuple[str, str]] = []
    _json_walk(doc, "$", 0, content, policy, block_bytes, strings)
    for path, s in strings:
        try:
            raw = s.encode("latin-1")  # a binary string smuggled as \u00XX escapes
        except UnicodeEncodeError:
            raw = b""
        if len(raw) >= block_bytes:
            content.blobs.append(Blob(raw, {"json_path": path, "encoding": "latin-1 string"}))
        content.blobs += encoded_blobs(s, {"json_path": path}, block_bytes)
    return content


def _column(cells: list[str]) -> np.ndarray:
    """A CSV column as float64, NaN where a cell is not a number."""
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        out = np.full(len(cells), np.nan)
        for i, c in enumerate(cells):
            try:
                out[i] = float(c)
            except ValueError:
                pass
        return out


def _numeric_runs(values: np.ndarray, min_len: int) -> list[tuple[int, np.ndarray]]:
    """Maximal runs of finite numbers at least ``min_len`` long: ``(start, values)``."""
    ok = np.isfinite(values)
    if ok.all():
        return [(0, values)] if len(values) >= min_len else []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    return [(int(a), values[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_len]


def parse_csv(text: str, policy: GatePolicy, block_bytes: int, min_len: int) -> Content:
    content = Content("csv")
    dialect: Any = "excel-tab" if "\t" in text[:4096] and "," not in text[:4096] else "excel"
    rows: list[list[str]] = []
    try:
        for line_no, row in enumerate(csv.reader(io.StringIO(text, newline=""), dialect), start=1):
            if len(row) > policy.csv_max_columns:
                content.block("size", f"row {line_no} has {len(row)} columns (the cap is "
                              f"{policy.csv_max_columns})", csv_rows=[line_no, line_no])
                return content
            long = [i for i, c in enumerate(row) if len(c) > policy.csv_max_cell]
            if long:
                content.block("structure", f"row {line_no} column {long[0] + 1} has a cell of "
                              f"{len(row[long[0]])} characters (the cap is {policy.csv_max_cell})",
                              csv_rows=[line_no, line_no], csv_column=long[0] + 1)
            rows.append(row)
    except csv.Error as exc:
        content.block("structure", f"not a readable CSV: {exc}")
        return content
    content.blobs += encoded_blobs(text, {"csv": "text"}, block_bytes)
    rows = [r for r in rows if r]
    if not rows:
        content.csv_rows = 0
        return content
    width = max(len(r) for r in rows)
    first = rows[0]
    header = any(not _is_number(c) for c in first)
    data = rows[1:] if header else rows
    names = first if header else [f"column {j + 1}" for j in range(width)]
    names = names + [f"column {j + 1}" for j in range(len(names), width)]
    content.csv_rows, content.csv_columns = len(data), names
    if len(data) > policy.csv_max_rows:
        content.block("size", f"{len(data)} data rows (the cap is {policy.csv_max_rows})",
                      csv_rows=[1, len(rows)])
    base = 2 if header else 1  # line number of the first data row
    cols = [[r[j] if j < len(r) else "" for r in data] for j in range(width)]
    for j, cells in enumerate(cols):
        for start, run in _numeric_runs(_column(cells), 2):
            content.sequences.append(Sequence(run, {"csv_column": names[j]}, "csv_row", base + start))
    if width >= min_len:
        for i, r in enumerate(data):
            for start, run in _numeric_runs(_column(r), min_len):
                content.sequences.append(Sequence(run, {"csv_row": base + i, "csv_columns_from": start + 1},
                                                  "csv_column", start + 1))
    return content


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parse_text(text: str, policy: GatePolicy, block_bytes: int, min_len: int) -> Content:
    """A log: line caps, base64 runs, and tables of numbers (consecutive lines with the same
    count of numbers)."""
    content = Content("text")
    lines = text.splitlines()
    long = [i for i, line in enumerate(lines) if len(line) > policy.text_max_line]
    if long:
        content.block("structure", f"line {long[0] + 1} has {len(lines[long[0]])} characters (the cap "
                      f"is {policy.text_max_line}); {len(long)} such line(s)", line=long[0] + 1)
    content.blobs += encoded_blobs(text, {"text": "log"}, block_bytes)
    counts: list[int] = []
    numbers: list[list[float]] = []
    for line in lines:
        found = [float(x) for x in _NUMBER.findall(line)]
        counts.append(len(found))
        numbers.append(found)
        if len(found) >= min_len:
            content.sequences.append(Sequence(np.asarray(found), {"line": len(counts)}, "number", 1))
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and counts[j] == counts[i]:
            j += 1
        if counts[i] and j - i >= 2:
            table = np.asarray(numbers[i:j], dtype=np.float64)
            for c in range(table.shape[1]):
                content.sequences.append(Sequence(table[:, c], {"lines": [i + 1, j], "number_in_line": c + 1},
                                                  "line", i + 1))
        i = j
    return content

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
from collections.abc import Sequence as Sequence_
from typing import Any

import numpy as np

from .content import Blob, Content, Image, Sequence
from .phash import to_gray
from .policy import GatePolicy

__all__ = ["encoded_blobs", "parse_csv", "parse_json", "parse_text"]

_B64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){64,}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


_B64_CHARS = np.zeros(256, dtype=bool)
_B64_CHARS[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=",
                         np.uint8)] = True


def _long_runs(text: str, min_len: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the runs of base64 alphabet characters at least ``min_len`` long
    (found over the UTF-8 bytes with numpy; offsets are characters when the text is ASCII)."""
    raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)
    inside = _B64_CHARS[raw].astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inside, [0]))))
    starts, ends = edges[::2], edges[1::2]
    keep = ends - starts >= min_len
    if not keep.any():
        return []
    if len(raw) == len(text):
        return [(int(a), int(b)) for a, b in zip(starts[keep], ends[keep], strict=True)]
    as_bytes = text.encode("utf-8", "surrogatepass")
    return [(len(as_bytes[:a].decode("utf-8", "replace")), len(as_bytes[:b].decode("utf-8", "replace")))
            for a, b in zip(starts[keep], ends[keep], strict=True)]


def encoded_blobs(text: str, where: dict[str, Any], min_bytes: int) -> list[Blob]:
    """Decoded runs of base64 (standard or URL-safe) and hex in ``text`` of at least
    ``min_bytes`` decoded bytes, each with its character offset."""
    out: list[Blob] = []
    for a, b in _long_runs(text, min(64, min_bytes)):
        for m in _HEX.finditer(text, a, b):
            if len(m.group()) // 2 >= min_bytes:
                out.append(Blob(bytes.fromhex(m.group()),
                                where | {"char_offset": m.start(), "encoding": "hex"}))
        for m in _B64.finditer(text, a, b):
            blob = _base64(m, where, min_bytes)
            if blob is not None:
                out.append(blob)
    return out


def _base64(m: re.Match[str], where: dict[str, Any], min_bytes: int) -> Blob | None:
    """The bytes a run of base64 (standard or URL-safe, padding optional) decodes to."""
    s = m.group()
    if len(s) * 3 // 4 < min_bytes or _HEX.fullmatch(s):
        return None
    s = s.rstrip("=")
    s = s[: len(s) - len(s) % 4] if len(s) % 4 == 1 else s
    try:
        raw = base64.b64decode(s.replace("-", "+").replace("_", "/") + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None
    return Blob(raw, where | {"char_offset": m.start(), "encoding": "base64"})


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
            content.sequences.append(Sequence(values, {"json_path": f"{path} (values)"}, "item"))
        return
    if isinstance(doc, list):
        values = _numbers(doc)
        if values is not None:
            content.sequences.append(Sequence(values, {"json_path": path}, "item"))
            return
        rows = [_numbers(r) if isinstance(r, list) else None for r in doc]
        if doc and all(r is not None for r in rows) and len({len(r) for r in rows if r is not None}) == 1:
            table = np.stack([r for r in rows if r is not None])
            if min(table.shape) >= 32:  # a grayscale picture as rows of numbers
                content.images.append(Image(to_gray(table), {"json_path": path, "as": "rows of numbers"}))
            for j in range(table.shape[1]):
                content.sequences.append(Sequence(table[:, j], {"json_path": f"{path}[*][{j}]"}, "item"))
            for i, r in enumerate(rows):
                if r is not None and len(r) >= 2:
                    content.sequences.append(Sequence(r, {"json_path": f"{path}[{i}]"}, "item"))
            return
        picture = _picture(doc)
        if picture is not None:  # H x W x C numbers: a colour picture
            content.images.append(Image(picture, {"json_path": path, "as": "nested arrays of numbers"}))
        for i, item in enumerate(doc):
            _json_walk(item, f"{path}[{i}]", depth + 1, content, policy, min_len, strings)


def _picture(doc: list[Any]) -> np.ndarray | None:
    """A list of rows of pixels (``[[[b, g, r], ...], ...]``) as a grayscale image, or None."""
    if len(doc) < 32 or not isinstance(doc[0], list) or len(doc[0]) < 32 or not isinstance(doc[0][0], list):
        return None
    try:
        arr = np.asarray(doc, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        return None
    return to_gray(arr if arr.shape[2] != 1 else arr[:, :, 0])


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
        numbers = _NUMBER.findall(s)  # an array printed into a string
        if len(numbers) >= 16:
            content.sequences.append(Sequence(np.asarray([float(x) for x in numbers]),
                                              {"json_path": f"{path} (numbers in the text)"}, "number"))
    return content


def _column(cells: Sequence_[str]) -> np.ndarray:
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
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        content.block("structure", f"not a readable CSV: {exc}")
        return content
    cap = policy.csv_max_cell
    wide = max(map(len, rows), default=0) > policy.csv_max_columns
    long_cells = len(text) > cap and max((len(c) for r in rows for c in r), default=0) > cap
    for line_no, row in enumerate(rows, start=1) if wide or long_cells else ():
        if len(row) > policy.csv_max_columns:
            content.block("size", f"row {line_no} has {len(row)} columns (the cap is "
                          f"{policy.csv_max_columns})", csv_rows=[line_no, line_no])
            return content
        if long_cells:
            long = [i for i, c in enumerate(row) if len(c) > cap]
            if long:
                content.block("structure", f"row {line_no} column {long[0] + 1} has a cell of "
                              f"{len(row[long[0]])} characters (the cap is {cap})",
                              csv_rows=[line_no, line_no], csv_column=long[0] + 1)
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
    padded = data if all(len(r) == width for r in data) else [r + [""] * (width - len(r)) for r in data]
    columns = [_column(cells) for cells in zip(*padded, strict=True)]
    for j, col in enumerate(columns):
        for start, run in _numeric_runs(col, 2):
            content.sequences.append(Sequence(run, {"csv_column": names[j]}, "csv_row", base + start))
    if width >= 32 and len(data) >= 32:
        table = np.stack(columns, axis=1)
        if np.isfinite(table).mean() > 0.9:  # a grayscale picture as a table of numbers
            content.images.append(Image(to_gray(np.nan_to_num(table)), {"csv": "table of numbers"}))
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
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return content
    values = np.asarray([float(m.group()) for m in matches])
    newlines = np.flatnonzero(np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8) == 10) \
        if text.isascii() else np.asarray([i for i, ch in enumerate(text) if ch == "\n"], dtype=np.int64)
    line_of = np.searchsorted(newlines, np.asarray([m.start() for m in matches]))  # 0-based line
    counts = np.bincount(line_of, minlength=len(newlines) + 1)
    first = np.concatenate(([0], np.cumsum(counts)))  # index of each line's first number
    for line in np.flatnonzero(counts >= min_len):
        content.sequences.append(Sequence(values[first[line]:first[line + 1]], {"line": int(line) + 1},
                                          "number", 1))
    edges = np.flatnonzero(np.diff(np.concatenate(([-1], counts, [-1]))))  # runs of equal counts
    for i, j in zip(edges[:-1], edges[1:], strict=True):
        n = int(counts[i])
        if n and j - i >= 2:
            table = values[first[i]:first[j]].reshape(j - i, n)
            for c in range(n):
                content.sequences.append(Sequence(table[:, c], {"lines": [int(i) + 1, int(j)],
                                                                "number_in_line": c + 1}, "line", int(i) + 1))
    return content

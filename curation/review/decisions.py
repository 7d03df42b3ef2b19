"""The curator's decisions, kept in a labels file that ``demofab curate --labels`` takes.

Each episode the review page labels has one entry selected by its ``key`` (``<source
sha256>:<segment>``, the identity that stays the same across versions; the index is
renumbered). Entries with other selectors (a session, an operator, a file) and the entries
of other episodes are kept as they are. YAML files are written with a comment naming the
episode above each entry; CSV files (``.csv``) with one column per label, lists joined
with ``;``. Every write replaces the file atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from demofab.durable import atomic_write

from ..errors import LabelError
from ..labels import LABEL_TYPES, SELECTORS, coerce, load_labels

Describe = Callable[[str], str]


class DecisionsFile:
    """A labels file the review page reads and writes (see the module doc)."""

    def __init__(self, path: str | Path, describe: Describe | None = None) -> None:
        self.path = Path(path)
        self.csv = self.path.suffix.lower() == ".csv"
        self.describe = describe or (lambda key: "")
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        if self.path.exists():
            load_labels(self.path)  # refuses a malformed file before anything is written
            self._items = self._read()

    def _read(self) -> list[dict[str, Any]]:
        if self.csv:
            with open(self.path, newline="") as f:
                return [{k.strip(): v for k, v in row.items() if k and v not in (None, "")}
                        for row in csv.DictReader(f)]
        from demofab.yamlutil import safe_load

        raw = safe_load(self.path.read_text()) or {}
        return [dict(item) for item in raw.get("episodes") or []]

    @staticmethod
    def _own(item: dict[str, Any]) -> str | None:
        """The key of an entry selected by ``key`` alone (the review page's), else None."""
        sel = [k for k in SELECTORS if item.get(k) not in (None, "")]
        return str(item["key"]) if sel == ["key"] else None

    def entries(self) -> dict[str, dict[str, Any]]:
        """The labels of each episode with an entry of its own, by key (typed values)."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for item in self._items:
                key = self._own(item)
                if key is not None:
                    out[key] = {k: coerce(k, v, f"{self.path}: {key}")
                                for k, v in item.items() if k != "key"}
            return out

    def update(self, key: str, set_: dict[str, Any], unset: list[str]) -> dict[str, Any]:
        """Set and remove labels of the episode ``key``; returns its entry after the write.
        A bad label name or value raises LabelError naming it; the file is then untouched."""
        where = f"episode {key}"
        typed = {k: coerce(k, v, where) for k, v in set_.items()}
        for name in unset:
            if name not in LABEL_TYPES:
                raise LabelError(f"{where}: unknown label {name!r} (labels: {', '.join(LABEL_TYPES)})")
        with self._lock:
            items = [dict(i) for i in self._items]
            entry = next((i for i in items if self._own(i) == key), None)
            if entry is None:
                entry = {"key": key}
                items.append(entry)
            entry.update(typed)
            for name in unset + [k for k in ("flags_add", "flags_clear") if entry.get(k) == []]:
                entry.pop(name, None)
            if len(entry) == 1:
                items.remove(entry)
            atomic_write(self.path, self._render(items))
            self._items = items
            return {k: v for k, v in entry.items() if k != "key"}

    def _render(self, items: list[dict[str, Any]]) -> str:
        if self.csv:
            cols = ["key"] + sorted({k for i in items for k in i} - {"key"})
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for i in items:
                w.writerow({k: _csv_value(v) for k, v in i.items()})
            return buf.getvalue()
        out = ["# Curator's labels for `demofab curate --labels` (written by demofab review;",
               "# entries selected by `key` alone are the review page's, the others are kept).",
               "format_version: 1", "episodes:" if items else "episodes: []"]
        for item in items:
            key = self._own(item)
            about = " ".join((self.describe(key) if key is not None else "").split())  # one line
            if about:
                out.append(f"  # {about}")
            text = yaml.safe_dump([item], sort_keys=False, allow_unicode=True, width=100)
            out.extend("  " + line for line in text.splitlines())
        return "\n".join(out) + "\n"


def _csv_value(v: Any) -> Any:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    if v is None:
        return "unknown"
    return v

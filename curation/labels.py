"""Episode labels: a typed schema, label files (YAML or CSV), command-line labels, splits.

Precedence, lowest first: defaults, the recorder's metadata and events, the previous
version of the release, the labels file, the command line. Each label's source is kept in
the episode table (``labels_source``).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from demofab.yamlutil import safe_load

from .config import SplitConfig
from .errors import LabelError
from .flags import FLAG_BITS, flag_mask

SPLITS = ("train", "val", "test")
SELECTORS = ("episode_id", "key", "file", "session", "operator_is")
LABEL_TYPES: dict[str, str] = {
    "task": "str", "success": "bool?", "operator": "str", "quality_score": "float",
    "flags": "int", "interventions": "int", "notes": "list[str]", "split": "split",
    # a curator's decisions (the review page writes them): leave the episode out of the
    # next version, raise or clear quality flags (names of curation.flags.FLAG_BITS)
    "exclude": "bool", "flags_add": "list[flag]", "flags_clear": "list[flag]",
}
#: labels that are decisions taken when the version is written, not columns of the table
DECISIONS = ("exclude", "flags_add", "flags_clear")
_TRUE = {"true", "yes", "1", "success", "y"}
_FALSE = {"false", "no", "0", "failure", "n"}
_NONE = {"", "null", "none", "unknown", "~"}


def coerce(name: str, value: Any, where: str) -> Any:
    """A label value of the right type (raises LabelError naming where)."""
    kind = LABEL_TYPES.get(name)
    if kind is None:
        raise LabelError(f"{where}: unknown label {name!r} (labels: {', '.join(LABEL_TYPES)})")
    try:
        if kind == "str":
            return "" if value is None else str(value)
        if kind == "bool":
            flag = coerce_bool(value)
            if flag is None:
                raise ValueError(f"{value!r} is not true or false")
            return flag
        if kind == "bool?":
            if isinstance(value, bool) or value is None:
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            if s in _NONE:
                return None
            raise ValueError(f"{value!r} is not a boolean")
        if kind == "float":
            v = float(value)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{v} is outside 0..1")
            return v
        if kind == "int":
            return int(value)
        if kind == "list[str]":
            if isinstance(value, list):
                return [str(v) for v in value]
            return [s.strip() for s in str(value).split(";") if s.strip()]
        if kind == "list[flag]":
            names = value if isinstance(value, list) else str(value).split(";")
            out = [str(v).strip() for v in names if str(v).strip()]
            bad = [n for n in out if n not in FLAG_BITS]
            if bad:
                raise ValueError(f"unknown flag {', '.join(map(repr, bad))} (flags: {', '.join(FLAG_BITS)})")
            return out
        if kind == "split":
            s = str(value).strip()
            if s not in SPLITS:
                raise ValueError(f"{s!r} is not one of {', '.join(SPLITS)}")
            return s
    except (TypeError, ValueError) as exc:
        raise LabelError(f"{where}: label {name}: {exc}") from None
    raise LabelError(f"{where}: label {name}: unsupported type {kind}")


def coerce_bool(value: Any) -> bool | None:
    """True or False from a bool or a word (yes/no, 1/0, ...), None when it is neither."""
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    return True if s in _TRUE else False if s in _FALSE else None


def curator_decisions(row: dict[str, Any], q_flags: set[str], reasons: list[dict[str, str]]
                      ) -> tuple[bool, set[str], list[dict[str, str]]]:
    """Take the decision labels (``exclude``, ``flags_add``, ``flags_clear``) off a labelled
    row: whether it is excluded, and the quality flags and reasons after the curator's
    additions and removals (a cleared flag loses its reasons; an added one gets a reason)."""
    sources = row["labels_source"]
    where = {k: sources.pop(k, "") for k in DECISIONS}
    excluded = bool(row.pop("exclude", False))
    add = set(row.pop("flags_add", None) or [])
    clear = set(row.pop("flags_clear", None) or [])
    if not add and not clear:
        return excluded, q_flags, reasons
    flags = (set(q_flags) | add) - clear
    kept = [r for r in reasons if r["flag"] not in clear]
    by = where["flags_add"].replace("_", " ")
    kept += [{"flag": f, "stream": "", "detail": f"raised by the curator ({by})"}
             for f in sorted(add - clear - set(q_flags))]
    if sources.get("flags") not in ("labels_file", "cli"):
        row["flags"] = flag_mask(flags)
        sources["flags"] = where["flags_add"] or where["flags_clear"]
    return excluded, flags, kept


@dataclass
class LabelRule:
    select: dict[str, str]
    values: dict[str, Any]
    where: str

    def matches(self, ep: dict[str, Any]) -> bool:
        for k, v in self.select.items():
            if k == "file":
                src = ep["provenance"].get("source_file", "")
                if not (src == v or Path(src).name == v or src.endswith("/" + v)):
                    return False
            elif k == "operator_is":
                if ep.get("operator") != v:
                    return False
            elif str(ep.get(k if k != "key" else "key", "")) != v:
                return False
        return True


@dataclass
class Labels:
    """Episode labels: rules from a labels file and values given on the command line."""
    rules: list[LabelRule] = field(default_factory=list)
    cli: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def fingerprint(self) -> str:
        text = repr([(r.select, r.values) for r in self.rules]) + repr(sorted(self.cli.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    def apply(self, ep: dict[str, Any]) -> list[str]:
        """Set labels on an episode row; returns the selectors that matched nothing."""
        for rule in self.rules:
            if rule.matches(ep):
                for k, v in rule.values.items():
                    ep[k] = v
                    ep["labels_source"][k] = "labels_file"
        for k, v in self.cli.items():
            ep[k] = v
            ep["labels_source"][k] = "cli"
        return []

    def unmatched(self, episodes: list[dict[str, Any]]) -> list[str]:
        return [f"{r.where}: {r.select} matches no episode" for r in self.rules
                if not any(r.matches(e) for e in episodes)]


def _rule(raw: dict[str, Any], where: str) -> LabelRule:
    select = {k: str(raw[k]) for k in SELECTORS if raw.get(k) not in (None, "")}
    if not select:
        raise LabelError(f"{where}: no selector; give one of {', '.join(SELECTORS)}")
    values = {k: coerce(k, v, where) for k, v in raw.items()
              if k not in SELECTORS and not (isinstance(v, str) and v == "")}
    return LabelRule(select, values, where)


def load_labels(path: str | Path | None = None, cli: list[str] | None = None) -> Labels:
    """Labels from a YAML/CSV file and ``FIELD=VALUE`` strings from the command line."""
    labels = Labels()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise LabelError(f"labels file {p} does not exist")
        labels.source = str(p)
        if p.suffix.lower() == ".csv":
            with open(p, newline="") as f:
                for i, row in enumerate(csv.DictReader(f), start=2):
                    labels.rules.append(_rule({k.strip(): v for k, v in row.items() if k},
                                              f"{p}:{i}"))
        else:
            try:
                raw = safe_load(p.read_text()) or {}
            except yaml.YAMLError as exc:
                raise LabelError(f"{p}: not valid YAML: {exc}") from exc
            if not isinstance(raw, dict) or not isinstance(raw.get("episodes", []), list):
                raise LabelError(f"{p}: expected a mapping with a list 'episodes'")
            version = raw.get("format_version", 1)
            if version != 1:
                raise LabelError(f"{p}: labels format_version {version} is not supported (1)")
            for i, item in enumerate(raw.get("episodes") or []):
                if not isinstance(item, dict):
                    raise LabelError(f"{p}: episodes[{i}] is not a mapping")
                labels.rules.append(_rule(item, f"{p}: episodes[{i}]"))
    for item in cli or []:
        if "=" not in item:
            raise LabelError(f"--set {item!r}: expected FIELD=VALUE")
        k, v = item.split("=", 1)
        labels.cli[k.strip()] = coerce(k.strip(), v, f"--set {item}")
    return labels


# -- splits -------------------------------------------------------------------------------
def group_of(ep: dict[str, Any], by: str) -> str:
    if by == "operator" and ep.get("operator"):
        return f"operator:{ep['operator']}"
    return f"session:{ep.get('session') or ep['provenance'].get('source_sha256', '')[:16]}"


def _unit(seed: int, group: str) -> float:
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(episodes: list[dict[str, Any]], cfg: SplitConfig) -> None:
    """Give every episode without an explicit split one, by group (operator or session),
    so that no group is in two splits; raises LabelError if explicit labels leak."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for ep in episodes:
        groups.setdefault(group_of(ep, cfg.by), []).append(ep)
    decided: dict[str, str] = {}
    for g, eps in groups.items():
        explicit = {e["split"] for e in eps if e["labels_source"].get("split") in
                    ("labels_file", "cli")}
        if len(explicit) > 1:
            ids = ", ".join(f"{e['episode_id']}={e['split']}" for e in eps
                            if e["labels_source"].get("split") in ("labels_file", "cli"))
            raise LabelError(f"split labels put {g} in {' and '.join(sorted(explicit))} "
                             f"({ids}): a {cfg.by}'s data must stay in one split")
        if explicit:
            decided[g] = explicit.pop()
    free = sorted((g for g in groups if g not in decided), key=lambda g: _unit(cfg.seed, g))
    for g in free:
        u = _unit(cfg.seed, g)
        decided[g] = ("val" if u < cfg.val_fraction else
                      "test" if u < cfg.val_fraction + cfg.test_fraction else "train")
    if (cfg.val_fraction > 0 and len(groups) > 1 and "val" not in decided.values()
            and free):
        decided[free[0]] = "val"  # smallest hash: stable as groups are added
    if free and "train" not in decided.values():
        decided[free[-1]] = "train"  # never a release without training data
    for g, eps in groups.items():
        for e in eps:
            if e["labels_source"].get("split") not in ("labels_file", "cli"):
                e["split"] = decided[g]
                e["labels_source"]["split"] = f"by_{cfg.by}"

"""Labels from files and the command line, typed; splits that never leak an operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation import curate
from curation.config import CurateConfig, SplitConfig
from curation.errors import LabelError
from curation.labels import assign_splits, coerce, load_labels


def _eps(release: Path) -> list[dict]:
    return json.loads((release / "episodes.json").read_text())["episodes"]


def test_yaml_labels_file_sets_typed_labels(tmp_path: Path, clean_session: Path) -> None:
    first = sorted(clean_session.glob("*.mcap"))[0].name
    f = tmp_path / "labels.yaml"
    f.write_text(f"format_version: 1\nepisodes:\n  - file: {first}\n    success: false\n"
                 "    notes: [dropped the cup]\n    interventions: 2\n")
    eps = _eps(curate([clean_session], tmp_path / "rel", "r", labels=load_labels(f)).release)
    one = next(e for e in eps if e["provenance"]["source_file"].endswith(first))
    other = next(e for e in eps if e is not one)
    assert one["success"] is False and one["notes"] == ["dropped the cup"]
    assert one["interventions"] == 2 and one["labels_source"]["success"] == "labels_file"
    assert other["success"] is True and other["labels_source"]["success"] == "events"


def test_csv_labels_file_selects_by_episode_id(tmp_path: Path, clean_session: Path) -> None:
    eps = _eps(curate([clean_session], tmp_path / "a", "r").release)
    f = tmp_path / "labels.csv"
    f.write_text(f"episode_id,task,quality_score\n{eps[1]['episode_id']},pour water,0.25\n")
    eps2 = _eps(curate([clean_session], tmp_path / "b", "r", labels=load_labels(f)).release)
    assert eps2[1]["task"] == "pour water" and eps2[1]["quality_score"] == 0.25
    assert eps2[0]["task"] == "stack cups"


def test_bad_label_values_name_the_file_and_row(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("episode_id,success\nabc,maybe\n")
    with pytest.raises(LabelError, match=r"labels.csv:2: label success: 'maybe' is not a boolean"):
        load_labels(f)
    with pytest.raises(LabelError, match="unknown label 'colour'"):
        load_labels(None, ["colour=red"])
    with pytest.raises(LabelError, match="not one of train, val, test"):
        coerce("split", "holdout", "cli")


def _row(op: str, session: str, split: str | None = None) -> dict:
    src = {"split": "labels_file"} if split else {}
    return {"operator": op, "session": session, "split": split or "train",
            "labels_source": dict(src), "provenance": {}, "episode_id": f"{op}-{session}"}


def test_splits_by_operator_never_leak() -> None:
    rows = [_row(f"op{i % 7}", f"s{i}") for i in range(70)]
    assign_splits(rows, SplitConfig(by="operator", val_fraction=0.3))
    by_op: dict[str, set[str]] = {}
    for r in rows:
        by_op.setdefault(r["operator"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_op.values())
    assert {"train", "val"} <= {r["split"] for r in rows}


def test_explicit_split_labels_that_leak_an_operator_are_refused() -> None:
    rows = [_row("ann", "s1", "train"), _row("ann", "s2", "val")]
    with pytest.raises(LabelError, match="operator:ann in train and val"):
        assign_splits(rows, SplitConfig(by="operator"))


def test_operator_with_an_explicit_split_takes_all_their_episodes_along() -> None:
    rows = [_row("ann", "s1", "val"), _row("ann", "s2"), _row("ben", "s3")]
    assign_splits(rows, SplitConfig(by="operator", val_fraction=0.0))
    assert [r["split"] for r in rows] == ["val", "val", "train"]


def test_release_splits_two_operators_apart(tmp_path: Path, clean_session: Path,
                                            second_session: Path) -> None:
    cfg = CurateConfig(split=SplitConfig(by="operator", val_fraction=0.5))
    eps = _eps(curate([clean_session, second_session], tmp_path, "r", config=cfg).release)
    split_of = {e["operator"]: {x["split"] for x in eps if x["operator"] == e["operator"]}
                for e in eps}
    assert split_of["alice"] != split_of["bob"]
    assert all(len(s) == 1 for s in split_of.values())


def test_exclude_and_flag_decisions_shape_the_next_version(tmp_path: Path,
                                                           lossy_session: Path,
                                                           clean_session: Path) -> None:
    v1 = _eps(curate([clean_session, lossy_session], tmp_path / "rel", "r").release)
    lossy = next(e for e in v1 if e["operator"] == "carol")
    clean = [e for e in v1 if e["operator"] == "alice"]
    assert "gaps" in lossy["flag_names"] and not clean[0]["flag_names"]
    f = tmp_path / "labels.yaml"
    f.write_text("episodes:\n"
                 f"  - key: '{clean[0]['key']}'\n    exclude: true\n"
                 f"  - key: '{clean[1]['key']}'\n    flags_add: [frozen]\n"
                 f"  - key: '{lossy['key']}'\n    flags_clear: [gaps]\n")
    r = curate([clean_session, lossy_session], tmp_path / "rel", "r", labels=load_labels(f))
    v2 = {e["key"]: e for e in _eps(r.release)}
    assert r.version == 2 and clean[0]["key"] not in v2 and len(v2) == len(v1) - 1
    assert any(clean[0]["key"] in s["reason"] and "excluded" in s["reason"] for s in r.skipped)
    assert not any("matches no episode" in n for n in r.notes)
    added = v2[clean[1]["key"]]
    assert added["flag_names"] == ["frozen"] and added["quality_score"] == 0.8
    assert added["labels_source"]["flags"] == "labels_file"
    assert [x["flag"] for x in added["flag_reasons"]] == ["frozen"]
    cleared = v2[lossy["key"]]
    assert "gaps" not in cleared["flag_names"]
    assert set(cleared["flag_names"]) == set(lossy["flag_names"]) - {"gaps"}
    assert cleared["quality_score"] > lossy["quality_score"]
    assert all(x["flag"] != "gaps" for x in cleared["flag_reasons"])
    assert not {"exclude", "flags_add", "flags_clear"} & (set(added) | set(added["labels_source"]))


def test_decision_labels_refuse_unknown_flags_and_non_booleans(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match=r"flags_add: unknown flag 'wobbly'.*gaps"):
        coerce("flags_add", ["gaps", "wobbly"], "x.yaml: episodes[0]")
    with pytest.raises(LabelError, match=r"x.csv:2: label exclude: 'maybe' is not true or false"):
        coerce("exclude", "maybe", "x.csv:2")
    assert coerce("flags_clear", "gaps; frozen", "w") == ["gaps", "frozen"]
    assert coerce("exclude", "yes", "w") is True

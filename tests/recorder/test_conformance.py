"""The conformance folder: committed recordings and the ``inspect`` JSON expected of them.

A change in what the recorder writes or what inspect reports shows up here; when it is
on purpose, regenerate with ``tests/conformance/generate.py`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recorder.errors import CorruptFileError
from recorder.inspect import inspect_path

HERE = Path(__file__).parent.parent / "conformance"


def normalise(report: dict) -> dict:
    return json.loads(json.dumps(report).replace(str(HERE) + "/", ""))


@pytest.mark.parametrize("name", ["session", "foreign_json_protobuf.mcap"])
def test_inspect_matches_the_reference(name):
    expected = json.loads((HERE / f"{name}.expected.json").read_text())
    assert normalise(inspect_path(HERE / name)) == expected


def test_truncated_reference_fails_at_the_recorded_offset():
    expected = json.loads((HERE / "truncated.mcap.expected.json").read_text())
    with pytest.raises(CorruptFileError) as info:
        inspect_path(HERE / "truncated.mcap")
    assert info.value.offset == expected["offset"]
    assert str(info.value).replace(str(HERE) + "/", "") == expected["error"]

"""The gate's format checks, which need no release: PNG chunk tricks, malformed
safetensors, JSON and CSV caps, links, declared types; and the hashes it matches with."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.numpy as stn

from vault.gate import (
    ALLOWED_KINDS,
    KINDS,
    FileVerdict,
    GateError,
    GatePolicy,
    IndexConfig,
    InputIndex,
    check,
)
from vault.gate.hashing import block_hashes, informative, quantise, sequence_hashes, window_hashes


@pytest.fixture(scope="module")
def empty() -> InputIndex:
    return InputIndex(meta={"config": {}, "streams": [], "columns": [], "release": "none", "version": 0})


def one(path: Path, index: InputIndex, policy: GatePolicy | None = None, **kw: object) -> FileVerdict:
    report = check([path], index, policy, **kw)  # type: ignore[arg-type]
    (fv,) = report.files
    return fv


def messages(fv: FileVerdict, kind: str = "structure") -> list[str]:
    return [f.message for f in fv.findings if f.kind == kind]


# -- PNG --------------------------------------------------------------------------------


def _png() -> bytes:
    img = np.full((64, 96, 3), 255, np.uint8)
    cv2.line(img, (0, 60), (95, 5), (200, 80, 20), 2)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _insert_before_iend(png: bytes, chunk: bytes) -> bytes:
    at = png.rindex(b"IEND") - 4
    return png[:at] + chunk + png[at:]


def test_a_plain_png_plot_with_small_metadata_passes(tmp_path: Path, empty: InputIndex) -> None:
    png = _insert_before_iend(_png(), _chunk(b"tEXt", b"Software\x00matplotlib 3.9"))
    (tmp_path / "p.png").write_bytes(png)
    fv = one(tmp_path / "p.png", empty)
    assert fv.verdict == "pass" and fv.detected_type == "png", fv.findings


@pytest.mark.parametrize(("chunk", "expected"), [
    (_chunk(b"acTL", struct.pack(">II", 2, 0)), "animated PNG chunk acTL"),
    (_chunk(b"fdAT", b"\x00" * 40), "animated PNG chunk fdAT"),
    (_chunk(b"tEXt", b"Comment\x00" + b"A" * 2000), "over 256 bytes of text"),
    (_chunk(b"tEXt", b"secret\x00hi"), "keyword 'secret'"),
    (_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"B" * 5000)), "text chunk zTXt 'Comment'"),
    (_chunk(b"iTXt", b"Title\x00\x01\x00en\x00\x00" + zlib.compress(b"C" * 900)), "text chunk iTXt 'Title'"),
    (_chunk(b"prVt", b"\xff" * 500), "chunk prVt (500 bytes)"),
    (_chunk(b"eXIf", b"MM\x00*" + b"\x00" * 20), "chunk eXIf"),
])
def test_png_chunks_that_carry_data_are_blocked(tmp_path: Path, empty: InputIndex, chunk: bytes,
                                                expected: str) -> None:
    (tmp_path / "p.png").write_bytes(_insert_before_iend(_png(), chunk))
    fv = one(tmp_path / "p.png", empty)
    assert fv.verdict == "block"
    assert any(expected in m for m in messages(fv)), messages(fv)


def test_bytes_after_iend_and_bad_crcs_are_blocked(tmp_path: Path, empty: InputIndex) -> None:
    png = _png()
    tail = b"PK\x03\x04 hidden archive"
    (tmp_path / "tail.png").write_bytes(png + tail)
    (msg,) = messages(one(tmp_path / "tail.png", empty))
    assert msg == f"{len(tail)} byte(s) after IEND at offset {len(png)}"
    bad = bytearray(png)
    bad[30] ^= 0xFF  # inside IHDR's body
    (tmp_path / "crc.png").write_bytes(bytes(bad))
    assert any("IHDR at offset 8: CRC mismatch" in m for m in messages(one(tmp_path / "crc.png", empty)))
    (tmp_path / "cut.png").write_bytes(png[:-20])
    assert one(tmp_path / "cut.png", empty).verdict == "block"


def test_image_data_longer_than_the_image_needs_is_blocked(tmp_path: Path, empty: InputIndex) -> None:
    w, h = 32, 16
    raw = b"".join(b"\x00" + bytes([255] * w * 3) for _ in range(h))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    sig = b"\x89PNG\r\n\x1a\n"

    def png(idat: bytes) -> bytes:
        return sig + ihdr + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")

    (tmp_path / "ok.png").write_bytes(png(zlib.compress(raw)))
    assert one(tmp_path / "ok.png", empty).verdict == "pass"
    (tmp_path / "extra.png").write_bytes(png(zlib.compress(raw + b"secret" * 100)))
    assert any("inflates past the 1552 bytes" in m for m in messages(one(tmp_path / "extra.png", empty)))
    (tmp_path / "after.png").write_bytes(png(zlib.compress(raw) + b"more bytes"))
    assert any("10 byte(s) after the end of the compressed" in m
               for m in messages(one(tmp_path / "after.png", empty)))


def test_a_png_over_the_pixel_cap_is_blocked(tmp_path: Path, empty: InputIndex) -> None:
    (tmp_path / "big.png").write_bytes(_png())
    fv = one(tmp_path / "big.png", empty, GatePolicy(png_max_pixels=1000))
    assert messages(fv, "size") == ["96x64 pixels (the cap is 1000)"]


# -- safetensors ------------------------------------------------------------------------


def _st(header: dict[str, object], body: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def test_well_formed_weights_pass_in_every_allowed_dtype(tmp_path: Path, empty: InputIndex) -> None:
    rng = np.random.default_rng(0)
    tensors = {f"t_{d}": rng.normal(size=(8, 5)).astype(d) for d in ("float64", "float32", "float16", "int8")}
    (tmp_path / "w.safetensors").write_bytes(stn.save(tensors, metadata={"format": "pt"}))
    bf16 = (rng.normal(size=40).astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    header = {"x": {"dtype": "BF16", "shape": [40], "data_offsets": [0, 80]}}
    (tmp_path / "bf.safetensors").write_bytes(_st(header, bf16))
    report = check([tmp_path / "w.safetensors", tmp_path / "bf.safetensors"], empty)
    assert report.verdict == "pass", report.summary()


_F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(("header", "body", "expected"), [
    ({"a": _F32_2}, b"\x00" * 8 + b"extra", "+5 bytes unaccounted"),
    ({"a": _F32_2}, b"\x00" * 6, "cover 8 of the 6 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, b"\x00" * 12, "needs 8"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\x00" * 12, "a gap of 4 bytes"),
    ({"a": _F32_2, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8,
     "an overlap of 4 bytes"),
    ({"a": _F32_2 | {"dtype": "C64"}}, b"\x00" * 8, "dtype 'C64' is not allowed"),
    ({"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, b"\x00", "9 dimensions"),
])
def test_malformed_safetensors_are_blocked(tmp_path: Path, empty: InputIndex, header: dict[str, object],
                                           body: bytes, expected: str) -> None:
    (tmp_path / "w.safetensors").write_bytes(_st(header, body))
    fv = one(tmp_path / "w.safetensors", empty)
    assert fv.detected_type == "safetensors" and fv.verdict == "block"
    assert any(expected in m for m in messages(fv)), messages(fv)


def test_safetensors_metadata_is_capped(tmp_path: Path, empty: InputIndex) -> None:
    data = stn.save({"a": np.zeros(4, np.float32)}, metadata={"notes": "x" * 5000})
    (tmp_path / "w.safetensors").write_bytes(data)
    assert any("__metadata__ holds" in m for m in messages(one(tmp_path / "w.safetensors", empty), "size"))


# -- JSON, CSV, text, links -------------------------------------------------------------


def test_json_structure_caps(tmp_path: Path, empty: InputIndex) -> None:
    out = tmp_path / "m.json"
    out.write_text("[" * 40 + "]" * 40)
    assert any("nested deeper than 32 levels" in m for m in messages(one(out, empty)))
    out.write_text('{"loss": 0.5,}')
    (msg,) = messages(one(out, empty))
    assert msg.startswith("not valid JSON: ") and "line 1 column 14" in msg
    out.write_text("3.5")
    assert messages(one(out, empty)) == ["the top level is a float, expected an object or an array"]
    out.write_text(json.dumps({"note": "z" * 5000}))
    assert messages(one(out, empty))[0].startswith("a string of 5000 characters at $.note")


def test_csv_caps(tmp_path: Path, empty: InputIndex) -> None:
    out = tmp_path / "t.csv"
    out.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(50)))
    assert one(out, empty).verdict == "pass"
    fv = one(out, empty, GatePolicy(csv_max_rows=10))
    assert messages(fv, "size") == ["50 data rows (the cap is 10)"]
    out.write_text(",".join(f"c{i}" for i in range(300)) + "\n")
    assert messages(one(out, empty), "size") == ["row 1 has 300 columns (the cap is 256)"]
    out.write_text("a,b\n1," + "q" * 300 + "\n")
    assert messages(one(out, empty)) == ["row 2 column 2 has a cell of 300 characters (the cap is 256)"]


def test_a_log_with_a_giant_line_is_blocked(tmp_path: Path, empty: InputIndex) -> None:
    out = tmp_path / "stdout.log"
    out.write_text("ok\n" + "x" * 20000 + "\n")
    fv = one(out, empty)
    assert fv.detected_type == "text" and messages(fv)[0].startswith("line 2 has 20000 characters")


def test_links_directories_and_missing_files_are_blocked(tmp_path: Path, empty: InputIndex) -> None:
    (tmp_path / "real.json").write_text("{}")
    os.symlink(tmp_path / "real.json", tmp_path / "link.json")
    (tmp_path / "dir.json").mkdir()
    report = check([tmp_path / "link.json", tmp_path / "dir.json", tmp_path / "gone.json"], empty)
    assert [fv.findings[0].message for fv in report.files] == [
        "link.json is a symbolic link", "dir.json is not a regular file",
        "gone.json is unreadable (No such file or directory)"]
    assert report.verdict == "block"


def test_content_of_another_type_than_declared_is_blocked(tmp_path: Path, empty: InputIndex) -> None:
    (tmp_path / "plot.csv").write_bytes(_png())
    fv = one(tmp_path / "plot.csv", empty, declared={tmp_path / "plot.csv": "csv"})
    assert fv.detected_type == "png"
    assert messages(fv, "type") == ["plot.csv was declared csv but its content is png"]
    with pytest.raises(GateError, match="declared output types npy unknown"):
        check([tmp_path / "plot.csv"], empty, declared={tmp_path / "plot.csv": "npy"})


def test_policies_and_configs_load_from_mappings_and_refuse_unknown_keys() -> None:
    p = GatePolicy.from_mapping({"csv_max_rows": 5, "max_bytes": {"json": 10},
                                 "png_text_keywords": ["Software"]})
    assert p.csv_max_rows == 5 and p.cap("json") == 10 and p.cap("png") == 8 << 20
    assert GatePolicy.from_mapping(p.to_dict()) == p
    with pytest.raises(GateError, match="unknown keys csv_rows"):
        GatePolicy.from_mapping({"csv_rows": 5})
    with pytest.raises(GateError, match="unknown kinds npy"):
        GatePolicy(max_bytes={"npy": 1})
    with pytest.raises(GateError, match="min_distinct 9 must be 2..window"):
        IndexConfig(min_distinct=9)
    assert set(ALLOWED_KINDS) == {"json", "csv", "png", "safetensors", "text"} and "frame_copy" in KINDS


# -- the hashes -------------------------------------------------------------------------


def test_the_rolling_hash_at_every_offset_equals_the_hash_of_each_block() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 20_000, dtype=np.uint8)
    every = window_hashes(data, 256)
    starts = np.array([0, 1, 255, 7777, len(data) - 256])
    np.testing.assert_array_equal(every[starts], block_hashes(data, starts, 256))
    assert len(np.unique(every)) == len(every)


def test_numbers_printed_as_text_or_cast_to_float32_get_the_same_codes() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=20_000) * 10.0 ** rng.integers(-2, 3, size=20_000)
    codes = quantise(x, 3, 1e-4)
    for printed in (x.astype(np.float32), np.array([float(f"{v:.6g}") for v in x]),
                    np.array([float(repr(float(v))) for v in x])):
        assert (quantise(printed, 3, 1e-4) == codes).mean() > 0.995
    assert (quantise(np.array([1.234, 1.236, 0.0, 5e-5, np.nan]), 3, 1e-4) ==
            quantise(np.array([1.2341, 1.2359, -0.0, -1e-6, np.nan]), 3, 1e-4)).all()
    ramp = np.arange(20, dtype=np.float64)
    assert not informative(quantise(ramp, 3, 1e-4), 8, 4).any()  # a counter says nothing
    wave = np.sin(np.arange(20) * 0.7)
    assert informative(quantise(wave, 3, 1e-4), 8, 4).all()
    h = sequence_hashes(quantise(wave, 3, 1e-4), 8)
    assert len(h) == 13 and len(set(h.tolist())) == 13


def test_cut_and_corrupted_files_are_blocked_never_crash_the_gate(tmp_path: Path, empty: InputIndex) -> None:
    rng = np.random.default_rng(9)
    good = {"p.png": _png(), "w.safetensors": stn.save({"a": rng.normal(size=(40, 3)).astype(np.float32)}),
            "m.json": json.dumps({"loss": [0.5, 0.4, 0.3] * 10}).encode(),
            "t.csv": b"a,b\n" + b"".join(f"{i},{i * 0.5}\n".encode() for i in range(30))}
    paths = []
    for name, data in good.items():
        for k, cut in enumerate((len(data) // 3, len(data) // 2, len(data) - 1)):
            paths.append(tmp_path / f"cut{k}_{name}")
            paths[-1].write_bytes(data[:cut])
        flipped = bytearray(data)
        for i in rng.integers(8, len(data), 5):
            flipped[i] ^= 0x5A
        paths.append(tmp_path / f"flip_{name}")
        paths[-1].write_bytes(bytes(flipped))
    report = check(paths, empty)
    for fv in report.files:
        if fv.name.startswith("cut") and not fv.name.endswith(".csv"):
            assert fv.verdict == "block", (fv.name, fv.findings)
    assert len(report.files) == len(paths)

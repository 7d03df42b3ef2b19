"""Regenerate the conformance recordings and their expected ``inspect`` JSON.

    .venv/bin/python tests/conformance/generate.py            # everything
    .venv/bin/python tests/conformance/generate.py damaged    # only the damaged copies

Run it only when a format changes on purpose; the tests compare against the committed
files, so a change in what the recorder writes or what inspect reports shows up there.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

from mcap.writer import Writer as McapWriter

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))

from recorder.control import Plan, Recorder  # noqa: E402
from recorder.inspect import inspect_path  # noqa: E402
from recorder.profile import load_profile  # noqa: E402
from recorder.session import Session  # noqa: E402
from recorder.sources.synthetic import RigOptions, SyntheticRig  # noqa: E402

T0 = 1_760_000_000_000_000_000


def normalise(report: dict) -> dict:
    """Paths relative to this folder, so the expectation does not depend on where it runs."""
    text = json.dumps(report).replace(str(HERE) + "/", "")
    return json.loads(text)


def session(path: Path) -> None:
    profile = load_profile(HERE / "small.yaml")
    s = Session(path, profile)
    rig = SyntheticRig(profile, RigOptions(seed=11, start_ns=T0, frame_pool=4))
    Recorder(s, rig, Plan(episodes=2, episode_seconds=0.3, task="reach",
                          operator="conformance")).run(handle_signals=False)


def foreign(path: Path) -> None:
    with open(path, "wb") as f:
        w = McapWriter(f)
        w.start(profile="", library="conformance")
        js = w.register_schema("Pose", "jsonschema", b'{"type": "object"}')
        pb = w.register_schema("acme.Pose", "protobuf", b"\x00")
        cj = w.register_channel("/pose_json", "json", js)
        cp = w.register_channel("/pose_pb", "protobuf", pb)
        for i in range(20):
            w.add_message(cj, T0 + i * 50_000_000, b'{"x": 1}', T0 + i * 50_000_000)
            w.add_message(cp, T0 + i * 50_000_000, b"\x08\x01", T0 + i * 50_000_000)
        w.finish()


def chunks(path: Path) -> None:
    """One episode in many small chunks, so that damage can hit one of them."""
    import tempfile

    from recorder.writer import WriterOptions

    profile = load_profile(HERE / "small.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        s = Session(Path(tmp) / "s", profile, options=WriterOptions(chunk_size=2048))
        rig = SyntheticRig(profile, RigOptions(seed=12, start_ns=T0, frame_pool=4))
        Recorder(s, rig, Plan(episodes=1, episode_seconds=0.5, task="reach",
                              operator="conformance")).run(handle_signals=False)
        shutil.copyfile(Path(tmp) / "s" / "episode_0000.mcap", path)


def damaged(source: Path) -> None:
    """Copies of ``source`` with damage at chosen places, and ``damaged.json`` saying
    where: the chunk that was hit (its place in the chunk index), the bytes, and whether
    the summary is still usable."""
    from mcap.reader import make_reader

    data = source.read_bytes()
    with open(source, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    idx = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    start = idx[-1].chunk_start_offset + idx[-1].chunk_length  # past the last chunk
    (summary_start,) = struct.unpack_from("<Q", data, len(data) - 8 - 29 + 9)  # by the footer
    assert start <= summary_start
    cases: dict[str, dict[str, object]] = {}

    def write(name: str, buf: bytes | bytearray, chunk: int | None, lo: int, hi: int,
              summary_ok: bool) -> None:
        (HERE / name).write_bytes(bytes(buf))
        cases[name] = {"source": source.name, "chunk": chunk, "damaged_bytes": [lo, hi],
                       "summary_usable": summary_ok}

    def zeroed(lo: int, hi: int, buf: bytes | bytearray = data) -> bytearray:
        out = bytearray(buf)
        out[lo:hi] = bytes(hi - lo)
        return out

    c1, c3, c_last = idx[1], idx[3], idx[-1]
    # a flipped byte in the middle of a chunk's compressed records (CRC or zstd fails)
    flip = bytearray(data)
    at = c1.chunk_start_offset + c1.chunk_length // 2
    flip[at] ^= 0xFF
    write("chunks_flipped_byte.mcap", flip, 1, at, at + 1, True)
    # a chunk's header zeroed: its opcode and length are gone, the chunk index is not
    lo = c3.chunk_start_offset
    write("chunks_zeroed_header.mcap", zeroed(lo, lo + 64), 3, lo, lo + 64, True)
    # the same, with the summary and footer cut off: found again by scanning
    write("chunks_zeroed_no_summary.mcap", zeroed(lo, lo + 64)[:summary_start], 3, lo,
          lo + 64, False)
    # the last chunk's records zeroed in the middle
    lo = c_last.chunk_start_offset + c_last.chunk_length // 3
    write("chunks_zeroed_last.mcap", zeroed(lo, lo + 200), len(idx) - 1, lo, lo + 200, True)
    # only the summary damaged: nothing of the data is lost
    lo = summary_start + (len(data) - summary_start) // 2
    write("chunks_zeroed_summary.mcap", zeroed(lo, lo + 40), None, lo, lo + 40, False)
    # the file's first bytes (magic and header) overwritten: the summary still names
    # every chunk and channel
    write("chunks_bad_magic.mcap", zeroed(0, 16), None, 0, 16, True)
    (HERE / "damaged.json").write_text(json.dumps(cases, indent=2) + "\n")


def main(parts: list[str]) -> None:
    if parts == ["damaged"]:  # only the damaged copies of chunks.mcap (it stays as it is)
        damaged(HERE / "chunks.mcap")
        return
    for p in HERE.iterdir():
        if p.name not in ("generate.py", "small.yaml", "README.md", "__pycache__"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    session(HERE / "session")
    foreign(HERE / "foreign_json_protobuf.mcap")
    chunks(HERE / "chunks.mcap")
    damaged(HERE / "chunks.mcap")
    ep = (HERE / "session" / "episode_0001.mcap").read_bytes()
    (HERE / "truncated.mcap").write_bytes(ep[: len(ep) * 2 // 3])
    for name in ("session", "foreign_json_protobuf.mcap"):
        report = normalise(inspect_path(HERE / name))
        (HERE / f"{name}.expected.json").write_text(json.dumps(report, indent=2) + "\n")
    from recorder.errors import CorruptFileError

    try:
        inspect_path(HERE / "truncated.mcap")
    except CorruptFileError as exc:
        (HERE / "truncated.mcap.expected.json").write_text(json.dumps(
            {"error": str(exc).replace(str(HERE) + "/", ""), "offset": exc.offset}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The fast paths of ingest and release writing give the same bytes as the plain ones.

Camera payloads kept as pieces of the decompressed chunks, CDR columns read through
strided views, quantiles, JPEG sizes, and curation started in a fresh interpreter (its
work runs on threads). Direct-I/O shard writes and their fallback: test_zdurable.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from curation.decode import BLOBS_MIN, Blobs, StreamData, jpeg_size, ragged_from, ragged_rows
from curation.ingest import sort_stream
from curation.stats import QUANTILES, quantiles

ROOT = Path(__file__).resolve().parents[2]


def _parts(total: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, total, dtype=np.uint8).tobytes()
    cuts = sorted({0, total, *rng.integers(0, total, 7).tolist()})
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def test_large_payloads_stay_in_pieces_and_join_only_when_asked() -> None:
    frames = _parts(BLOBS_MIN + 10, seed=1)
    values, offsets = ragged_from([memoryview(f) for f in frames])
    assert isinstance(values, Blobs) and len(values) == BLOBS_MIN + 10
    assert [bytes(p) for p in ragged_rows(values, offsets, 2, 5)] == frames[2:5]
    assert bytes(np.asarray(values)) == b"".join(frames)
    small, _ = ragged_from([b"ab", b"c"])
    assert isinstance(small, np.ndarray)


def test_out_of_order_frames_in_pieces_are_sorted_with_their_stamps() -> None:
    frames = _parts(BLOBS_MIN + 10, seed=2)
    n = len(frames)
    stamps = np.arange(n, dtype=np.int64)[::-1].copy()  # received newest first
    sd = StreamData("/cam", "sensor_msgs/msg/CompressedImage", stamps, stamps.copy())
    sd.ragged["data"] = ragged_from(frames)
    sort_stream(sd)
    values, offsets = sd.ragged["data"]
    got = [bytes(values[int(offsets[i]):int(offsets[i + 1])]) for i in range(n)]
    assert got == frames[::-1] and sd.time_ns.tolist() == sorted(stamps.tolist())


@pytest.mark.parametrize("shape", [(1, 3), (2, 5), (9, 1), (1001, 4), (20_000, 43)])
def test_quantiles_equal_numpys_to_the_last_bit(shape: tuple[int, int]) -> None:
    a = np.random.default_rng(3).normal(size=shape)
    assert np.array_equal(quantiles(a, QUANTILES), np.quantile(a, QUANTILES, axis=0))


@pytest.mark.parametrize("progressive", [0, 1])
def test_jpeg_size_is_read_from_the_frame_header(progressive: int) -> None:
    img = np.random.default_rng(4).integers(0, 255, (37, 71, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert ok and jpeg_size(jpg.tobytes()) == (71, 37)
    assert jpeg_size(b"\x89PNG\r\n") is None and jpeg_size(jpg.tobytes()[:3]) is None


def test_curation_runs_in_a_fresh_interpreter(clean_session: Path, tmp_path: Path) -> None:
    """Only ``curation`` imported: the recorder's modules first load on a worker thread."""
    code = ("import sys; from curation import curate; "
            "r = curate([sys.argv[1]], sys.argv[2], 'fresh'); print(r.episodes)")
    out = subprocess.run([sys.executable, "-c", code, str(clean_session), str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "2"


def _image_bag(path: Path, fill: int, n: int = 30) -> tuple[Path, list[bytes]]:
    """A rosbags-written bag (uncompressed chunks) of large CompressedImage payloads."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    Img = store.types["sensor_msgs/msg/CompressedImage"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    frames = [bytes([fill, i]) * 20_000 for i in range(n)]  # 40 kB each, 1.2 MB: views
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/cam", Img.__msgtype__, typestore=store)
        for i, frame in enumerate(frames):
            t = 10**18 + i * 10**8
            msg = Img(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="c"),
                      format="jpeg", data=np.frombuffer(frame, np.uint8))
            w.write(conn, t, store.serialize_cdr(msg, Img.__msgtype__))
    return next(path.glob("*.mcap")), frames


def test_payloads_survive_the_reuse_of_the_read_buffer(tmp_path: Path) -> None:
    from curation.ingest import ingest_file, read_file
    from curation.inputs import InputFile

    a, frames_a = _image_bag(tmp_path / "a", 1)
    b, _ = _image_bag(tmp_path / "b", 2)
    buf = read_file(a)
    rec = ingest_file(InputFile(a, ""), buf, borrowed=True)
    buf.release()
    read_file(b)  # overwrites this thread's buffer with the other file
    values, offsets = rec.streams["/cam"].ragged["data"]
    got = [bytes(np.asarray(values)[offsets[i]:offsets[i + 1]]) for i in range(len(frames_a))]
    assert got == frames_a


def test_camera_frames_beyond_the_memory_budget_are_read_again_and_equal(
        clean_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no memory for payloads, every file's frames are let go after ingest and read
    again from the recording when written: the release is the same, file for file."""
    import json

    from curation import curate
    from curation import ingest as ingest_mod

    monkeypatch.setattr("curation.pipeline.EARLY_FRAMES", False)  # (it lets go of all)
    spilled: list[int] = []
    real = ingest_mod.spill
    monkeypatch.setattr("curation.pipeline.spill",
                        lambda *a: spilled.append(1) or real(*a))
    fast = curate([clean_session], tmp_path / "a", "r").release
    assert not spilled  # the default budget holds this small session
    lean = curate([clean_session], tmp_path / "b", "r", memory_budget=0).release
    assert len(spilled) == 2  # both episodes' frames let go

    def files(rel: Path) -> dict[str, str]:
        m = json.loads((rel / "manifest.json").read_text())["files"]
        return {k: v["sha256"] for k, v in m.items() if k.startswith(("streams", "sync"))}

    assert files(fast) == files(lean)
    assert any("image_raw" in k for k in files(lean))


def _release_files(rel: Path) -> dict[str, str]:
    import json

    m = json.loads((rel / "manifest.json").read_text())["files"]
    return {k: v["sha256"] for k, v in m.items() if k.startswith(("streams", "sync"))}


@pytest.mark.parametrize("order", ["release order", "reversed"])
def test_frames_written_while_loading_give_the_same_release(
        clean_session: Path, second_session: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """Frames are written early in input order; given in another order than the release's
    (sessions sorted by name), they are written again the usual way: same files."""
    from curation import curate, writer

    inputs = [clean_session, second_session]
    if order == "reversed":
        inputs.reverse()
    claimed: list[bool] = []
    real = writer.EarlyPayloads.claim
    monkeypatch.setattr(writer.EarlyPayloads, "claim",
                        lambda self, st, k: claimed.append(bool(r := real(self, st, k))) or r)
    early = curate(inputs, tmp_path / "early", "r").release
    assert claimed and all(claimed) == (order == "release order")
    monkeypatch.setattr("curation.pipeline.EARLY_FRAMES", False)
    plain = curate(inputs, tmp_path / "plain", "r").release
    assert _release_files(early) == _release_files(plain)
    assert not list(early.parent.glob(".v*"))  # no temporary directory left behind

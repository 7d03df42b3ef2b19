"""Identification from a leaked copy: after JPEG re-encoding, resizing, taking a few
episodes or frames, from loose images or a video; two labs told apart; an unmarked copy is
no match; bad input is an error naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vault.pgserver import release_dir  # noqa: F401
from tests.vault.test_fingerprint import Env, env, reader_of  # noqa: F401
from tests.vault.test_service import HEAD
from vault.fingerprint import FingerprintError, Identification
from vault.fingerprint.release import camera_streams, frames_of
from vault.subset import derive_subset

Attack = Callable[[np.ndarray], np.ndarray]


def _jpeg(q: int) -> Attack:
    def attack(img: np.ndarray) -> np.ndarray:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        return np.asarray(cv2.imdecode(enc, cv2.IMREAD_COLOR))
    return attack


def _scale(f: float) -> Attack:
    return lambda img: np.asarray(cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))


def _to(w: int, h: int) -> Attack:
    return lambda img: np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def _crop(f: float) -> Attack:
    def attack(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return img[int(h * f / 2):h - int(h * f / 2), int(w * f / 2):w - int(w * f / 2)]
    return attack


def leak(base: Path, out: Path, attacks: list[Attack], *, streams: list[str] | None = None,
         every: int = 1, quality: int = 90) -> Path:
    """The camera frames of the copy at ``base`` (every ``every``-th), each put through
    ``attacks`` and saved as loose JPEG files in ``out``."""
    out.mkdir(parents=True)
    read = reader_of(base)
    for cam in streams or sorted(camera_streams(read)):
        for i, data in enumerate(frames_of(read, cam)[::every]):
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            for a in attacks:
                img = a(img)
            cv2.imwrite(str(out / f"{cam}-{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return out


def named(result: Identification) -> list[str]:
    return [m.export.lab for m in result.matches]


@pytest.mark.parametrize(("case", "attacks"), [
    ("jpeg-75", [_jpeg(75)]),
    ("jpeg-50", [_jpeg(50)]),
    ("half-size", [_scale(0.5)]),
    ("224x224", [_to(224, 224)]),
    ("224x224-jpeg-50", [_to(224, 224), _jpeg(50)]),
    ("centred-crop-20pct", [_crop(0.2), _jpeg(75)]),
])
def test_a_leaked_copy_names_its_lab_after_re_encoding_and_resizing(
        env: Env, tmp_path: Path, case: str, attacks: list[Attack]) -> None:  # noqa: F811
    result = env.fp.identify([leak(env.dave, tmp_path / case, attacks, every=3)])
    assert named(result) == ["lab-d"], result.as_dict()
    assert result.best is not None and result.best.z > 15 and result.best.p_false < 1e-20
    assert result.informed == result.frames  # each frame matched its original
    assert 0.8 < result.null_std < 1.25 and abs(result.null_mean) < 0.3


def test_one_episode_of_a_copy_names_its_lab(env: Env, tmp_path: Path) -> None:  # noqa: F811
    read = reader_of(env.alice)
    files = [p.relative_to(env.alice).as_posix() for p in env.alice.rglob("*") if p.is_file()]
    one = derive_subset(read, files, [2])
    for rel, data in one.items():
        (tmp_path / "one" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "one" / rel).write_bytes(data)
    result = env.fp.identify([tmp_path / "one"])
    assert named(result) == ["lab-a"] and result.frames == sum(
        len(frames_of(reader_of(tmp_path / "one"), c)) for c in camera_streams(one.__getitem__))
    assert not result.exact  # not byte-identical to the export: found by its pattern


def test_a_few_loose_frames_name_their_lab(env: Env, tmp_path: Path) -> None:  # noqa: F811
    frames = sorted(leak(env.carol, tmp_path / "all", [_jpeg(75)]).iterdir())
    few = [frames[0], frames[len(frames) // 2], frames[-1]]
    result = env.fp.identify(few)
    assert named(result) == ["lab-c"], result.as_dict()
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), cv2.imread(str(frames[5])))
    assert named(env.fp.identify([png])) == ["lab-c"]


def test_a_whole_copy_is_found_exactly_and_by_its_pattern(env: Env) -> None:  # noqa: F811
    result = env.fp.identify([env.alice])
    assert named(result) == ["lab-a"]
    assert result.exact == tuple(e.export_id for e in env.fp.exports(lab="lab-a"))


def test_two_labs_copies_are_told_apart_and_mixed_frames_name_both(
        env: Env, tmp_path: Path) -> None:  # noqa: F811
    a = env.fp.identify([leak(env.alice, tmp_path / "a", [_jpeg(75)], streams=[HEAD])])
    d = env.fp.identify([leak(env.dave, tmp_path / "d", [_jpeg(75)], streams=[HEAD])])
    assert named(a) == ["lab-a"] and named(d) == ["lab-d"]
    z_other = {m.export.lab: m.z for m in (a.best, d.best) if m}
    assert z_other["lab-a"] > 15 and z_other["lab-d"] > 15
    both = env.fp.identify([tmp_path / "a", tmp_path / "d"])
    assert sorted(named(both)) == ["lab-a", "lab-d"]


def test_two_copies_averaged_name_both_labs(env: Env, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "avg"
    out.mkdir()
    fa, fd = frames_of(reader_of(env.alice), HEAD), frames_of(reader_of(env.dave), HEAD)
    for i, (x, y) in enumerate(zip(fa, fd, strict=False)):  # dave's copy has episodes 0, 1
        ix = cv2.imdecode(np.frombuffer(x, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        iy = cv2.imdecode(np.frombuffer(y, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        cv2.imwrite(str(out / f"{i:03d}.jpg"), np.rint((ix + iy) / 2).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert sorted(named(env.fp.identify([out]))) == ["lab-a", "lab-d"]


@pytest.mark.parametrize("case", ["original", "re-encoded", "resized"])
def test_an_unmarked_copy_is_no_match(env: Env, tmp_path: Path, case: str) -> None:  # noqa: F811
    if case == "original":
        paths = [env.release]
    else:
        attacks = [_jpeg(75)] if case == "re-encoded" else [_to(224, 224), _jpeg(60)]
        paths = [leak(env.release, tmp_path / case, attacks)]
    result = env.fp.identify(paths)
    assert not result.identified, result.as_dict()
    assert result.best is not None and result.best.p_false > 1e-3 and result.best.z < 5


def test_frames_of_another_scene_are_no_match(env: Env, tmp_path: Path) -> None:  # noqa: F811
    rng = np.random.default_rng(5)
    for i in range(4):
        img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(tmp_path / f"other{i}.jpg"), img)
    result = env.fp.identify(sorted(tmp_path.glob("*.jpg")))
    assert not result.identified and result.informed == 0 and result.frames == 4


def test_a_video_of_a_copy_names_its_lab(env: Env, tmp_path: Path) -> None:  # noqa: F811
    video = tmp_path / "leak.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 15, (640, 480))
    assert writer.isOpened()
    for data in frames_of(reader_of(env.dave), HEAD):
        writer.write(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    writer.release()
    assert named(env.fp.identify([video])) == ["lab-d"]


def test_identifications_are_audited(env: Env) -> None:  # noqa: F811
    before = len([e for e in env.vault.audit.show("pick") if e.action == "fingerprint_identify"])
    env.fp.identify([env.dave], by="prov")
    entries = [e for e in env.vault.audit.show("pick") if e.action == "fingerprint_identify"]
    assert len(entries) == before + 1
    last = entries[-1]
    assert last.actor == "prov" and last.details["identified"] is True
    assert last.details["matches"][0]["recipient"] == "lab-d"
    assert last.details["inputs"] == [str(env.dave)]


@pytest.mark.parametrize("what", ["missing", "not-an-image", "empty-dir"])
def test_bad_suspect_input_is_an_error_naming_the_file(env: Env, tmp_path: Path, what: str) -> None:  # noqa: F811
    path = tmp_path / what
    if what == "not-an-image":
        path = tmp_path / "notes.txt"
        path.write_text("not a frame")
    elif what == "empty-dir":
        path.mkdir()
    with pytest.raises(FingerprintError, match=str(path.name)):
        env.fp.identify([path])

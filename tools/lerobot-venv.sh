#!/usr/bin/env bash
# tools/lerobot-venv.sh [--selftest] [--force]
#
# Create (idempotently) the venv `.venv-lerobot` that holds Hugging Face LeRobot, to read
# our LeRobot v3 exports with LeRobot's own LeRobotDataset: `demofab bench load`
# (vs_lerobot) runs it in a subprocess, and it is there for checks by hand. It is never
# part of `make test` or `make demo`, and DemoFab itself never imports LeRobot or torch.
# All versions are pinned in tools/lerobot-requirements.txt (read its header for why these)
# and installed with `pip install --no-deps`: pip resolves nothing, so it never pulls a
# torch of its own (plain `pip install lerobot` wants torch<2.11 and several GB of CUDA).
# A stamp file inside the venv holds the sha256 of that file and of this script's logic
# version; when it matches, the script returns at once. Prints the venv path as its last
# stdout line:
#
#     PY="$(tools/lerobot-venv.sh)/bin/python"
#     HF_HUB_OFFLINE=1 "$PY" -c 'from lerobot.datasets.lerobot_dataset import LeRobotDataset'
#
# --selftest  also curate a small synthetic release with .venv (make demo's venv), export
#             it with split files (`demofab export` code, small file sizes) and read every
#             sample back with LeRobotDataset, checking rows, action windows and frames.
# --force     rebuild even when the stamp matches.
#
# Env: DEMOFAB_LEROBOT_VENV (venv dir, default <repo>/.venv-lerobot),
#      PYTHON (a CPython 3.11 interpreter; default: python3.11 on PATH, then pyenv).
#
# The video backend is torchcodec (LeRobot's default when importable). It loads the
# system's FFmpeg shared libraries (libavcodec.so.58 to .62); when none is there and this
# runs as root with apt-get, Debian's `ffmpeg` package is installed for them. LeRobot's
# "pyav" backend does not work with these pins (it needs torchvision.io.VideoReader,
# which torchvision 0.29 no longer has). Disk: about 5.5 GB, mostly torch's CUDA wheels.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${DEMOFAB_LEROBOT_VENV:-$root/.venv-lerobot}"
req="$here/lerobot-requirements.txt"
stamp="$venv/.demofab-lerobot-stamp"

selftest=0
force=0
for a in "$@"; do
  case "$a" in
    --selftest) selftest=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "lerobot-venv: unknown argument $a" >&2; exit 2 ;;
  esac
done

# shellcheck source=python311.sh
source "$here/python311.sh"
find_python() { find_python311 lerobot-venv "lerobot 0.4.4 and the pinned torch wheels"; }

have_ffmpeg_libs() {
  ldconfig -p 2>/dev/null | grep -Eq 'libavcodec\.so\.(58|59|60|61|62) '
}

ensure_ffmpeg_libs() {
  have_ffmpeg_libs && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "lerobot-venv: no FFmpeg libraries for torchcodec; installing Debian's ffmpeg" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends ffmpeg >&2 || {
      apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends ffmpeg >&2; }
  fi
  have_ffmpeg_libs || {
    echo "lerobot-venv: torchcodec needs FFmpeg's shared libraries (libavcodec.so.58-62):" \
         "install your system's ffmpeg package" >&2
    return 1
  }
}

want_stamp() {
  { cat "$req"; echo "lerobot-venv v1"; } | sha256sum | cut -d' ' -f1
}

want="$(want_stamp)"
if [[ $force -eq 0 && -f "$stamp" && -x "$venv/bin/python" && "$(cat "$stamp")" == "$want" ]]; then
  :  # up to date
else
  py="$(find_python)"
  ensure_ffmpeg_libs
  echo "lerobot-venv: building $venv with $py (pins: ${req#"$root"/})" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # --no-deps: every wheel is pinned in $req; pip must not resolve torch on its own.
  # (grep drops the pip warnings about this machine's missing local file:// indexes)
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  # smoke: torch runs, torchcodec finds FFmpeg, LeRobotDataset imports
  HF_HUB_OFFLINE=1 "$venv/bin/python" - >&2 <<'PY'
import torch
from torchvision import transforms  # noqa: F401  (lerobot.datasets.utils imports it)
from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg libraries)
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401
from lerobot.datasets.video_utils import get_safe_default_codec
assert (torch.ones(2) + 1).tolist() == [2.0, 2.0]
assert get_safe_default_codec() == "torchcodec", get_safe_default_codec()
PY
  echo "$want" > "$stamp"
  echo "lerobot-venv: ready" >&2
fi

if [[ $selftest -eq 1 ]]; then
  main_py="$root/.venv/bin/python"
  [[ -x "$main_py" ]] || { echo "lerobot-venv: --selftest needs $main_py (run make demo)" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # A release of 3 synthetic humanoid episodes, exported twice: one file each (LeRobot's
  # default sizes) and split (chunks of 2 files, ~1 episode per file).
  (cd "$root" && "$main_py" - "$work" >&2) <<'PY'
import sys
from pathlib import Path
from bench.load import build_release
from curation.export import export_release
work = Path(sys.argv[1])
release = build_release(work, 3, 1.0)
export_release(release, "lerobot", work, name="whole")
export_release(release, "lerobot", work, name="split", chunks_size=2,
               data_files_size_in_mb=0.01, video_files_size_in_mb=0.1)
PY
  for name in whole split; do
    HF_HUB_OFFLINE=1 HF_HOME="$work/hf-home" "$venv/bin/python" - "$work/$name" >&2 <<'PY'
import json, sys
from pathlib import Path
import av, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root = Path(sys.argv[1])
info = json.loads((root / "meta/info.json").read_text())
fps, window = info["fps"], 16
episodes = sorted((r for p in sorted((root / "meta/episodes").glob("*/*.parquet"))
                   for r in pq.read_table(p).to_pylist()), key=lambda r: r["episode_index"])
data = pa.concat_tables([pq.read_table(p) for p in sorted((root / "data").glob("*/*.parquet"))]
                        ).to_pydict()
cams = [k for k, v in info["features"].items() if v["dtype"] == "video"]
videos = {}
for cam in cams:
    for p in sorted((root / "videos" / cam).glob("*/*.mp4")):
        with av.open(str(p)) as c:
            videos[p.relative_to(root).as_posix()] = [f.to_ndarray(format="rgb24")
                                                     for f in c.decode(video=0)]
ds = LeRobotDataset("demofab/selftest", root=root,
                    delta_timestamps={"action": [i / fps for i in range(window)]})
assert len(ds) == info["total_frames"] == len(data["index"])
for i in range(len(ds)):
    s = ds[i]
    ep = episodes[int(s["episode_index"])]
    a, b = ep["dataset_from_index"], ep["dataset_to_index"]
    assert a <= i < b and int(s["frame_index"]) == i - a
    np.testing.assert_array_equal(s["observation.state"].numpy(),
                                  np.asarray(data["observation.state"][i], np.float32))
    rows = [min(b - 1, i + d) for d in range(window)]
    np.testing.assert_array_equal(s["action"].numpy(),
                                  np.asarray([data["action"][r] for r in rows], np.float32))
    assert s["action_is_pad"].tolist() == [i + d >= b for d in range(window)]
    for cam in cams:
        path = info["video_path"].format(video_key=cam, chunk_index=ep[f"videos/{cam}/chunk_index"],
                                         file_index=ep[f"videos/{cam}/file_index"])
        frames = videos[path]
        want = round(ep[f"videos/{cam}/from_timestamp"] * fps) + i - a
        got = (s[cam].permute(1, 2, 0).numpy() * 255).round()
        err = {j: np.mean((got - frames[j]) ** 2)
               for j in range(max(0, want - 2), min(len(frames), want + 3))}
        assert min(err, key=err.get) == want, (i, cam, err)
print(f"lerobot-venv selftest: {root.name}: LeRobotDataset read {len(ds)} samples of "
      f"{ds.num_episodes} episodes ({ds.video_backend}); files: "
      f"{len(list((root / 'data').glob('*/*.parquet')))} data, {len(videos)} video")
PY
  done
fi

echo "$venv"

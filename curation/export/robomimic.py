"""robomimic HDF5 export: the layout robomimic's ``SequenceDataset`` reads::

    data/                       attrs: total (frames), env_args (JSON), demofab (JSON)
      demo_0/                   attrs: num_samples, demofab_* labels
        actions                 [N, A] float32: the ``actions`` features, concatenated
        action_dict/<key>       every action feature on its own (robomimic >= 0.3 layout)
        rewards, dones          [N]: 1.0 / 1 at the last frame (reward only on success)
        obs/<key>               [N, ...] one per observation feature
        next_obs/<key>          obs shifted by one frame (the last frame repeated)
    mask/<split>                byte strings of demo names (train, val, valid = val, test)

Streams go on one ``fps`` grid per episode by the nearest previous sample, as for LeRobot.
Camera frames are stored as ``[N, H, W, 3]`` uint8 RGB, resized to ``image_size``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..loader import ReleaseReader
from .errors import ExportError
from .grid import (
    ExportFeature,
    describe_source,
    episode_grids,
    image_frames,
    numeric_values,
    resolve_features,
    staged_output,
)


def _obs_key(feature: ExportFeature) -> str:
    if feature.kind == "image":
        return feature.name.removeprefix("observation.images.") + "_image"
    if feature.name == "observation.state":
        return "state"
    return feature.name.removeprefix("observation.")


def export_robomimic(
    release_path: str | Path | ReleaseReader,
    out_dir: str | Path,
    *,
    fps: float = 30,
    features: Mapping[str, str] | Sequence[ExportFeature] | None = None,
    actions: Sequence[str] | None = None,
    episodes: Sequence[int] | None = None,
    split: str | Sequence[str] | None = None,
    image_size: tuple[int, int] | None = (84, 84),
    next_obs: bool = True,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the release as one robomimic HDF5 file under ``out_dir``; returns its path
    (``out_dir/<name>-v<N>.hdf5``). ``actions`` lists the export names concatenated into
    ``actions`` (default: ``action``, else every feature whose name starts with
    ``action``); the other
    features are observations. Every feature whose name starts with ``action`` also goes to
    ``action_dict/``, never to ``obs/``. ``image_size`` is ``(width, height)``; None keeps frames
    at their recorded size."""
    import h5py

    rel = release_path if isinstance(release_path, ReleaseReader) else ReleaseReader(release_path)
    if fps <= 0:
        raise ExportError(f"fps={fps!r}: expected a positive number of frames per second")
    feats = resolve_features(rel, features)
    action_like = [f for f in feats if f.kind == "numeric" and f.name.split(".")[0] == "action"]
    if actions is not None:
        action_names = list(actions)
    elif any(f.name == "action" for f in feats):
        action_names = ["action"]
    else:
        action_names = [f.name for f in action_like]
    unknown = [a for a in action_names if a not in {f.name for f in feats}]
    if unknown:
        raise ExportError(f"actions {unknown}: not exported features; features: "
                          f"{', '.join(f.name for f in feats)}")
    if not action_names:
        raise ExportError("no action feature: pass actions=[...] naming exported features")
    act = [next(f for f in feats if f.name == a) for a in action_names]
    extras = [f for f in action_like if f.name not in action_names]
    obs = [f for f in feats if f.name not in action_names and f not in extras]
    grids, skipped = episode_grids(rel, feats, fps, episodes=episodes, split=split)
    path = Path(out_dir) / (name or f"{rel.name}-v{rel.version}.hdf5")
    with staged_output(path, overwrite) as tmp, h5py.File(tmp, "w") as h5:
        data = h5.create_group("data")
        masks: dict[str, list[bytes]] = {}
        total = 0
        for i, g in enumerate(grids):
            row = rel.episodes[g.episode]
            demo = data.create_group(f"demo_{i}")
            n = len(g.times)
            demo.attrs["num_samples"] = n
            for label in ("episode_id", "key", "task", "operator", "split", "outcome"):
                demo.attrs[f"demofab_{label}"] = str(row.get(label, ""))
            demo.attrs["demofab_release_index"] = g.episode
            demo.attrs["demofab_quality_score"] = float(row.get("quality_score") or 0.0)
            parts = {f.name: numeric_values(rel, f, g).astype(np.float32) for f in act}
            demo.create_dataset("actions", data=np.concatenate(list(parts.values()), axis=1))
            for f in [*act, *extras]:
                key = f.name.removeprefix("action").lstrip(".") or "action"
                values = parts[f.name] if f.name in parts else numeric_values(rel, f, g)
                demo.create_dataset(f"action_dict/{key}", data=values)
            rewards = np.zeros(n, np.float32)
            rewards[-1] = 1.0 if row.get("success") else 0.0
            dones = np.zeros(n, np.int64)
            dones[-1] = 1
            demo.create_dataset("rewards", data=rewards)
            demo.create_dataset("dones", data=dones)
            demo.create_dataset("timestamps_ns", data=g.times)
            for f in obs:
                if f.kind == "image":
                    values = np.stack(list(image_frames(rel, f, g, size=image_size)))
                    chunks: tuple[int, ...] | None = (1, *values.shape[1:])
                else:
                    values = numeric_values(rel, f, g)
                    chunks = None
                demo.create_dataset(f"obs/{_obs_key(f)}", data=values, chunks=chunks)
                if next_obs:
                    shifted = np.concatenate([values[1:], values[-1:]])
                    demo.create_dataset(f"next_obs/{_obs_key(f)}", data=shifted, chunks=chunks)
            masks.setdefault(str(row.get("split") or "train"), []).append(f"demo_{i}".encode())
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({
            "env_name": str(rel.episodes[grids[0].episode].get("robot") or rel.name),
            "type": None,
            "env_kwargs": {"source": "demofab", "release": rel.name, "version": rel.version},
        })
        source: dict[str, Any] = describe_source(rel, feats, fps, skipped)
        source["actions"] = action_names
        source["action_dict"] = {
            (f.name.removeprefix("action").lstrip(".") or "action"): f.source
            for f in [*act, *extras]}
        source["obs"] = {_obs_key(f): f.source for f in obs}
        data.attrs["demofab"] = json.dumps(source)
        if "val" in masks:
            masks["valid"] = masks["val"]  # robomimic's default validation filter key
        for split_name, demos in masks.items():
            h5.create_dataset(f"mask/{split_name}", data=np.array(demos, dtype="S"))
    return path

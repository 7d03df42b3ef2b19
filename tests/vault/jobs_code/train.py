"""A clean-room job: fits a linear next-step model of the joint positions, by gradient
descent in numpy, on the samples the DemoFab loader yields from the job's input."""

import json
from pathlib import Path

import numpy as np

from curation.loader import ReleaseDataset


def main(inputs: Path, outputs: Path) -> None:
    ds = ReleaseDataset(inputs, keys=["joint_states/position"])
    x = np.stack([ds[i]["joint_states/position"] for i in range(len(ds))]).astype(np.float64)
    episodes = np.array([int(ds[i]["episode_index"]) for i in range(len(ds))])
    same = episodes[1:] == episodes[:-1]
    a, b = x[:-1][same], x[1:][same]
    w = np.zeros((a.shape[1], a.shape[1]))
    losses = []
    lr = 1.0 / (np.mean(np.sum(a * a, axis=1)) + 1e-9)  # below 2 / the largest eigenvalue
    for _ in range(50):
        err = a + a @ w - b
        losses.append(float(np.mean(err ** 2)))
        w -= lr * a.T @ err / len(a)
    print(f"trained on {len(ds)} samples of {len(set(episodes.tolist()))} episodes; "
          f"loss {losses[0]:.3g} -> {losses[-1]:.3g}")
    (outputs / "metrics.json").write_text(json.dumps({
        "samples": len(ds), "episodes": sorted(set(episodes.tolist())),
        "first_loss": losses[0], "last_loss": losses[-1],
        "position_sum": float(x.sum())}))

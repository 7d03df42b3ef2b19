"""``demofab replay ... --to foxglove``: serve a selection to the Foxglove app until ^C,
with one status line, and the URL and layout to open printed on start."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from ..contract import read_session_state
from ..errors import RecorderError
from .foxglove import FoxgloveReplay, layout_path
from .options import ReplayOptions

__all__ = ["serve"]


def _profile_of(source: str | Path | Sequence[str | Path]) -> str:
    """The recording profile of a session directory (humanoid when it cannot tell)."""
    first = Path(source if isinstance(source, (str, Path)) else source[0])
    try:
        state = read_session_state(first) if first.is_dir() else None
    except RecorderError:
        state = None
    return (state.profile_name if state is not None else "") or "humanoid"


def serve(source: str | Path | Sequence[str | Path], options: ReplayOptions, *, host: str,
          port: int, paused: bool, as_json: bool, con: Console) -> int:
    """Serve until ^C; plays when the first client subscribes (``paused``: when the app
    says play)."""
    replay = FoxgloveReplay(source, options, host=host, port=port, autoplay=not paused)
    player = replay.player
    try:
        layout: Path | None = layout_path(_profile_of(source))
    except RecorderError:
        layout = None
    tl = replay.timeline
    for topic, why in replay.publisher.skipped.items():
        con.print(f"[yellow]not serving {topic}: {why}[/]")
    con.print(f"serving {len(tl.episodes)} episode(s), {player.total} messages on "
              f"{len(tl.topics) - len(player.unpublished)} topics, {player.duration_s:.1f} s, "
              f"to Foxglove at [b]{replay.url}[/]")
    con.print("  in the Foxglove app: Open connection -> Foxglove WebSocket -> "
              f"{replay.url}")
    if layout is not None:
        con.print(f"  layout: {layout} (Layouts -> Import from file)")
    con.print("  " + ("paused: press play in the app" if paused else
                      "plays when the app connects") + "; ^C stops")
    print(replay.url, flush=True)
    if layout is not None:
        print(layout, flush=True)
    done = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: done.set())
    replay.start()
    try:
        while not done.wait(0.25):
            if replay.wait(0):
                break
            if con.is_terminal:
                con.print("\r" + _status(replay) + "   ", end="")
    finally:
        signal.signal(signal.SIGINT, previous)
        replay.stop()
    if replay.error is not None:
        raise replay.error
    stats = player.stats
    j = stats.jitter_ms
    con.print(f"\npublished {stats.messages} messages in {stats.wall_s:.1f} s; timing error "
              f"p50 {j['p50']:.3f} ms, p99 {j['p99']:.3f} ms, max {j['max']:.3f} ms")
    if as_json:
        out: dict[str, Any] = {**stats.as_dict(), "url": replay.url,
                               "layout": str(layout) if layout else None}
        print(json.dumps(out))
    return 0


def _status(replay: FoxgloveReplay) -> str:
    player = replay.player
    state = ("[b]ended[/]" if replay.ended else "[b yellow]paused[/]" if player.paused
             else "playing")
    return (f"{state} {player.position_s:7.1f} / {player.duration_s:.1f} s  episode "
            f"{player.episode.index}  rate {player.rate:g}x  clients' subscriptions "
            f"{replay.subscribers}  jitter p99 {player.stats.jitter.percentile_ms(99):.2f} ms")

"""The teleoperator's terminal: single keys for episode control and a live health panel.

Keys: SPACE start, ENTER or s stop (success), f stop (failure), d discard, r re-record,
m subtask mark, i intervention mark, q quit (the open episode is finished cleanly).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .control import Command, Plan, Recorder
from .session import EpisodeInfo, Session, State
from .sources import Source

KEYS = {
    " ": Command("start"), "\r": Command("stop", "success"), "\n": Command("stop", "success"),
    "s": Command("stop", "success"), "f": Command("stop", "failure"), "d": Command("discard"),
    "r": Command("rerecord"), "m": Command("mark", "subtask", label="subtask"),
    "i": Command("mark", "intervention", label="intervention"), "q": Command("quit"),
}
HELP = ("[b]SPACE[/] start  [b]ENTER/s[/] stop ok  [b]f[/] stop failed  [b]d[/] discard  "
        "[b]r[/] re-record  [b]m[/] subtask  [b]i[/] intervention  [b]q[/] quit")


def panel(rec: Recorder, now: int) -> Group:
    s = rec.session
    state = s.state.value
    head = Text.from_markup(f"[b]{s.name}[/]  profile {s.profile.name}  state [b]{state}[/]")
    if s.current is not None:
        head.append(f"  episode {s.current.index}  {(now - s.current.start_ns) / 1e9:6.1f} s"
                    f"  task {s.current.task or '-'}  operator {s.current.operator or '-'}")
    elif s.state is State.RESET:
        head.append(f"  reset {(s.reset_until_ns - now) / 1e9:4.1f} s left")
    table = Table("topic", "Hz", "expected", "gaps", "lat p99 ms", "flags", expand=True)
    report = s.health(at_ns=now, window_s=2.0)
    if report is not None:
        for t in report.topics:
            style = "red" if t.flags else ""
            table.add_row(t.topic, f"{t.rate_hz:.1f}",
                          f"{t.expected_hz:.0f}" if t.expected_hz else "-", str(t.gaps),
                          "-" if t.latency_p99_ms is None else f"{t.latency_p99_ms:.1f}",
                          ",".join(t.flags), style=style)
        left = "-" if report.seconds_left is None else f"{report.seconds_left / 60:.0f} min"
        disk = Text(f"disk free {report.disk_free_bytes / 1e9:.1f} GB, time left {left}")
    else:
        disk = Text("")
    done = Text(f"episodes kept {len(s.episodes)}, discarded {len(s.discarded)}")
    err = Text(str(rec.error), style="red") if rec.error else Text("")
    return Group(Panel(Group(head, table, disk, done, err), title="DemoFab recorder"),
                 Text.from_markup(HELP))


def _read_keys(rec: Recorder, stop: threading.Event) -> None:
    fd = sys.stdin.fileno()
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            ch = os.read(fd, 1).decode(errors="ignore")
            cmd = KEYS.get(ch)
            if cmd is not None:
                rec.commands.put(cmd)


def run_interactive(session: Session, source: Source, plan: Plan) -> list[EpisodeInfo]:
    live = Live(refresh_per_second=4, screen=False)
    rec = Recorder(session, source, plan,
                   on_update=lambda r, now: live.update(panel(r, now)))
    stop = threading.Event()
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd) if os.isatty(fd) else None
    if old is not None:
        tty.setcbreak(fd)
    thread = threading.Thread(target=_read_keys, args=(rec, stop), daemon=True)
    thread.start()
    try:
        with live:
            return rec.run()
    finally:
        stop.set()
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)

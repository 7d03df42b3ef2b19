"""The teleoperator's terminal: keys drive episodes, the panel shows live health."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, COLUMNS="140", LINES="40", TERM="xterm")
        self.proc = subprocess.Popen([sys.executable, "-m", "demofab.cli", *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.screen = ""

    def read_until(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, ANSI.sub("", self.screen)):
                return self.screen
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    self.screen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    break
        raise AssertionError(f"never saw {pattern!r}; screen tail: {self.screen[-2000:]}")

    def key(self, k: str) -> None:
        self.screen = ""
        os.write(self.master, k.encode())


def test_keys_start_stop_discard_and_quit(tmp_path):
    out = tmp_path / "s"
    t = Terminal("record", "--profile", "humanoid", "--out", str(out), "--task", "pour",
                 "--operator", "kim")
    try:
        t.read_until("state idle")
        t.key(" ")
        t.read_until(r"state recording\s+episode 0")
        t.read_until(r"/joint_states\s+│\s+\d{3}\.\d")  # live rate column filled
        time.sleep(1.0)
        t.key("f")
        t.read_until("state idle")
        t.key(" ")
        t.read_until(r"episode 1")
        t.key("d")
        t.read_until("discarded 1")
        t.key("q")
        assert t.proc.wait(timeout=30) == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    state = yaml.safe_load((out / "demofab_session.yaml").read_text())
    (ep,) = state["episodes"]
    assert (ep["outcome"], ep["task"], ep["operator"]) == ("failure", "pour", "kim")
    assert ep["messages"] > 500
    assert [d["index"] for d in state["discarded"]] == [1]

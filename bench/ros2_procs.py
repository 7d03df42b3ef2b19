"""Child processes of ``bench ros2``: how roles and ROS 2 nodes are started (in
``.venv-ros``, inside the loopback-only namespace), and their stdout collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    env = os.environ.copy()
    paths = [str(ROOT / "ros2_ws" / "src" / "demofab_ros"), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log(msg: str) -> None:
    print(f"[bench ros2] {msg}", file=sys.stderr, flush=True)


def rclpy_init() -> Any:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    return rclpy


class Proc:
    """A child with its stdout lines collected in a thread."""

    def __init__(self, args: list[str], log: Path | None = None, stdin: bool = True) -> None:
        self.lines: list[str] = []
        self.p = subprocess.Popen(args, cwd=ROOT, env=child_env(), text=True,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=open(log, "w") if log else subprocess.DEVNULL)  # noqa: SIM115
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:  # type: ignore[union-attr]
            self.lines.append(line.strip())

    def last_json(self) -> dict[str, Any] | None:
        for line in reversed(self.lines):
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result
        return None

    def has_result(self) -> bool:
        return self.last_json() is not None

    def exited(self) -> bool:
        return self.p.poll() is not None

    def wait_for(self, pred: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            if self.p.poll() is not None and not pred():
                return False
            time.sleep(0.05)
        return False

    def tell(self, line: str = "") -> None:
        try:
            self.p.stdin.write(line + "\n")  # type: ignore[union-attr]
            self.p.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def start_role(name: str, config: dict[str, Any], log: Path | None = None) -> Proc:
    return Proc([sys.executable, "-m", "bench.ros2", name, json.dumps(config)], log)


def start_node(executable: str, params: dict[str, Any], log: Path) -> Proc:
    args = [sys.executable, "-m", f"demofab_ros.{executable}", "--ros-args"]
    for k, v in params.items():
        v = ("true" if v else "false") if isinstance(v, bool) else v
        args += ["-p", f"{k}:={v}"]
    return Proc(args, log, stdin=False)


__all__ = ["ROOT", "Proc", "child_env", "log", "start_node", "rclpy_init", "start_role"]

"""Review page: the episode list of a 1,000-episode release and camera frames during playback
over HTTP, beside the same data read straight from the release; Foxglove replay jitter.

Releases are curated from real MCAP sessions of the synthetic rig and cached under
``$DEMOFAB_CACHE/bench/review`` (default ``~/.cache/demofab/bench/review``), so a re-run
only measures. ``demofab review`` runs in its own process on a free 127.0.0.1 port, as a
curator starts it; requests come from one keep-alive ``httpx`` client per camera, as a
browser's connections would.

* ``list_1000_ms``: median time to load the list (the page's HTML, ``/api/release``,
  ``/api/labels`` and ``/api/episodes``) of a release of ``--episodes`` episodes (1,000;
  ``--quick``: 100; short episodes, one 320x240 camera) over ``--requests`` loads, after a
  warm-up that fetched every thumbnail (``thumbs_fill_s``: how long that first visit
  took); ``list_p99_ms`` beside it.
  Reference: ``loader_table_ms``, the episode table read from the release by
  ``curation.loader.ReleaseReader`` (``list_vs_loader`` = list / loader). ``first_screen_ms``
  adds the thumbnails of the first 25 rows (cached) to a list load; ``thumbs_all_ms`` is
  every cached thumbnail fetched once; ``list_browser_ms``: headless chromium from
  navigation to the page drawn with every row. Target ``list_1000_ms`` <= 500.
* ``frame_p99_ms``: p99 latency of camera frames fetched in playback order at the camera's
  rate (one paced client per camera, the three 640x480 cameras of the humanoid profile),
  against ``direct_p99_ms``, the same frames read from the release by ``ReleaseReader``
  (the loader's Zarr fast path) in the same run; ``frame_vs_direct`` = frame_p99_ms /
  direct_p99_ms. Every frame served is checked equal to the bytes in the release.
  Target ``frame_p99_ms`` <= 30.
* ``foxglove_p99_jitter_ms``: from ``bench.foxglove_replay`` (the replay into Foxglove
  beside ``--to dds`` on the same timing core), with the dds figure it reports.
  Target <= 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"list_1000_ms": 500.0, "frame_p99_ms": 30.0, "foxglove_p99_jitter_ms": 2.0}
#: bump when the generated recordings change, so that cached releases are made again
_GENERATOR = 1
_T0 = 1_700_000_000_000_000_000
#: what the list page asks the server for when it opens (index.html, then list.js); the
#: episode list last
LIST_PAGE = ("/", "/api/release", "/api/labels", "/api/episodes")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_OPERATORS = ("ana", "ben", "chloe", "dev", "eli")
_TASKS = ("stack cups", "fold towel", "wipe table", "open drawer", "pour water")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="100 episodes, fewer requests, a short playback")
    p.add_argument("--episodes", type=int, default=None, help="episodes in the list release (1000)")
    p.add_argument("--requests", type=int, default=None, help="timed list loads (30; quick: 10)")
    p.add_argument("--play-seconds", type=float, default=None, help="playback length (8; quick: 3)")
    p.add_argument("--skip-foxglove", action="store_true", help="leave the Foxglove replay out")


def cache_root() -> Path:
    root = os.environ.get("DEMOFAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "demofab")
    return Path(root) / "bench" / "review"


def _list_profile() -> Any:
    """The humanoid profile cut down for many short episodes: joint states and commands at
    100 Hz and one 320x240 head camera at 30 Hz."""
    from demofab.yamlutil import safe_load
    from recorder.profile import parse_profile

    raw = safe_load((files("recorder") / "profiles" / "humanoid.yaml").read_text())
    rates = {"/joint_states": 100, "/joint_commands": 100, "/camera/head/image_raw/compressed": 30}
    topics = []
    for t in raw["topics"]:
        if t["topic"] in rates:
            t["rate_hz"] = rates[t["topic"]]
        elif t.get("role") != "event":
            continue
        if "camera" in t:
            t["camera"] |= {"width": 320, "height": 240}
        topics.append(t)
    raw |= {"name": "bench_review", "topics": topics}
    return parse_profile(raw, "bench review profile")


def _record(out: Path, profile: Any, *, episodes: int, seconds: float, operator: str, task: str,
            seed: int, start_ns: int, drop_rate: float = 0.0) -> Path:
    from recorder.control import Plan, Recorder
    from recorder.session import Session
    from recorder.sources.synthetic import RigOptions, SyntheticRig
    from recorder.urdf import urdf_from_profile

    session = Session(out, profile, robot_description=(
        "robot_description.urdf", "application/xml", urdf_from_profile(profile)))
    rig = SyntheticRig(profile, RigOptions(seed=seed, start_ns=start_ns, drop_rate=drop_rate))
    Recorder(session, rig, Plan(episodes=episodes, episode_seconds=seconds, task=task,
                                operator=operator)).run(handle_signals=False)
    return out


def _cached_release(key: str, make: Any) -> Path:
    """``cache_root()/key/releases/bench`` (a name directory), made by ``make(work_dir)``
    the first time; the recordings are deleted once curated."""
    from curation.release import release_versions
    from curation.writer import FORMAT_VERSION

    final = cache_root() / f"{key}-g{_GENERATOR}-f{FORMAT_VERSION}"
    name_dir = final / "releases" / "bench"
    if (final / "done").is_file() and release_versions(name_dir):
        return name_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        make(work)
        shutil.rmtree(work / "sessions", ignore_errors=True)
        shutil.rmtree(work / "releases" / "bench" / ".work", ignore_errors=True)
        (work / "done").write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return name_dir


def list_release(episodes: int) -> Path:
    """A release of ``episodes`` short episodes by five operators with five tasks (0.6 to
    1.4 s long; one operator's recordings lose 2% of their messages)."""
    from curation import curate

    def make(work: Path) -> None:
        profile = _list_profile()
        sessions: list[str | Path] = []
        for k, (op, task) in enumerate(zip(_OPERATORS, _TASKS, strict=True)):
            n = episodes // len(_OPERATORS) + (k < episodes % len(_OPERATORS))
            sessions.append(_record(work / "sessions" / f"s_{op}", profile, episodes=n,
                                    seconds=0.6 + 0.2 * k, operator=op, task=task, seed=k,
                                    start_ns=_T0 + k * 10**13, drop_rate=0.02 if k == 3 else 0.0))
        curate(sessions, work / "releases", "bench")

    return _cached_release(f"list-{episodes}", make)


def play_release(seconds: float) -> Path:
    """One humanoid episode (three 640x480 cameras at 30 Hz) of ``seconds``."""
    from curation import curate
    from recorder.profile import load_profile

    def make(work: Path) -> None:
        s = _record(work / "sessions" / "s_play", load_profile("humanoid"), episodes=1,
                    seconds=seconds, operator="ana", task="stack cups", seed=7, start_ns=_T0)
        curate([s], work / "releases", "bench")

    return _cached_release(f"play-{seconds:g}s", make)


class _Served:
    """``demofab review NAME_DIR`` in its own process on a free 127.0.0.1 port (as a curator
    runs it; the clients here do not share its interpreter), with a fresh thumbnail cache and
    labels file under ``tmp``; ``start_s``: from launch to the first answer."""

    def __init__(self, name_dir: Path, tmp: Path) -> None:
        import httpx

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tmp.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp / "server.log"
        t = time.perf_counter()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from demofab.cli import main; raise SystemExit(main())",
                 "review", str(name_dir), "--port", str(port), "--labels", str(tmp / "labels.yaml"),
                 "--cache", str(tmp / "cache")], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench review: demofab review exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/release", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"bench review: demofab review did not answer on {self.url} in 120 s")
            time.sleep(0.05)
        self.start_s = time.perf_counter() - t

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # a server that ignores SIGTERM is killed
            self.proc.kill()
            self.proc.wait()


def _get(client: Any, url: str) -> Any:
    resp = client.get(url)
    if resp.status_code != 200:
        raise RuntimeError(f"bench review: GET {url}: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {"median": round(float(np.median(a)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def _browser_list(url: str, rows: int, repeat: int) -> dict[str, Any]:
    """``list_browser_ms``: Debian's chromium (headless, through Playwright) from navigation
    to the list page saying it is ready with every row drawn, median of ``repeat`` loads
    (the browser's cache on, as a curator's would be); null with the reason without it."""
    if not CHROMIUM.exists():
        return {"list_browser_ms": None, "list_browser_note": f"{CHROMIUM} is absent"}
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for i in range(repeat + 1):
                t = time.perf_counter()
                page.goto(url + "/")
                page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
                shown = page.locator('[data-testid="episode-row"]').count()
                if i:  # the first load fills the browser's cache
                    times.append(time.perf_counter() - t)
                if shown != rows:
                    raise RuntimeError(f"bench review: the browser shows {shown} rows of {rows}")
        finally:
            browser.close()
    return {"list_browser_ms": round(statistics.median(times) * 1e3, 1)}


def measure_list(name_dir: Path, tmp: Path, requests: int) -> dict[str, Any]:
    import httpx

    from curation.loader import ReleaseReader

    served = _Served(name_dir, tmp)
    try:
        with httpx.Client(base_url=served.url, timeout=120) as client:
            def load_list() -> list[dict[str, Any]]:
                for url in LIST_PAGE:
                    resp = _get(client, url)
                rows: list[dict[str, Any]] = resp.json()["episodes"]
                return rows

            t = time.perf_counter()
            rows = load_list()
            thumbs = [url for r in rows for url in (r["thumbs"]["first"], r["thumbs"]["last"])]
            for url in thumbs:  # the first visit: every thumbnail made and cached
                _get(client, url)
            fill_s = time.perf_counter() - t
            release = ReleaseReader(name_dir)
            if len(rows) != len(release.episodes):
                raise RuntimeError(f"bench review: the list shows {len(rows)} episodes, the release "
                                   f"{name_dir} holds {len(release.episodes)}")
            lists, tables, screens = [], [], []
            for _ in range(requests):  # taking turns, so that a busy machine slows both alike
                t = time.perf_counter()
                load_list()
                lists.append(time.perf_counter() - t)
                t = time.perf_counter()
                table = ReleaseReader(name_dir).episodes
                tables.append(time.perf_counter() - t)
                assert len(table) == len(rows)
            for _ in range(max(3, requests // 5)):
                t = time.perf_counter()
                for url in thumbs[:50]:  # the first 25 rows' first and last frames
                    _get(client, url)
                screens.append(time.perf_counter() - t)
            t = time.perf_counter()
            for url in thumbs:
                _get(client, url)
            all_s = time.perf_counter() - t
        browser = _browser_list(served.url, len(rows), max(3, requests // 5))
    finally:
        served.close()
    lst, ref = _ms(lists), _ms(tables)
    return {
        "list_1000_ms": lst["median"], "list_p99_ms": lst["p99"],
        "loader_table_ms": ref["median"], "loader_table_p99_ms": ref["p99"],
        "list_vs_loader": round(lst["median"] / ref["median"], 2),
        "first_screen_ms": round(lst["median"] + statistics.median(screens) * 1e3, 3),
        "thumbs_all_ms": round(all_s * 1e3, 1), "thumbs": len(thumbs),
        "thumbs_fill_s": round(fill_s, 2), "list_episodes": len(rows), "list_requests": requests,
        "server_start_s": round(served.start_s, 2), **browser,
    }


def _play_camera(base: str, episode: int, camera: dict[str, Any], t0: float,
                 out: list[tuple[int, float, float, bytes]]) -> None:
    """Fetch ``camera``'s frames at their recorded times from ``t0`` (monotonic): per frame
    (row, latency s, lateness s, bytes)."""
    import httpx

    times = camera["times_s"]
    with httpx.Client(base_url=base, timeout=30) as client:
        for k, ts in enumerate(times):
            due = t0 + (ts - times[0])
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            start = time.monotonic()
            resp = _get(client, f"/api/episodes/{episode}/cameras/{camera['name']}/frames/{k}")
            out.append((int(resp.headers["X-Frame-Row"]), time.monotonic() - start,
                        max(0.0, start - due), resp.content))


def measure_frames(name_dir: Path, tmp: Path) -> dict[str, Any]:
    import httpx

    from curation.loader import ReleaseReader

    served = _Served(name_dir, tmp)
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            detail = _get(client, "/api/episodes/0").json()
        cameras = detail["cameras"]
        got: dict[str, list[tuple[int, float, float, bytes]]] = {c["name"]: [] for c in cameras}
        t0 = time.monotonic() + 0.2
        with ThreadPoolExecutor(len(cameras)) as pool:  # one client per camera, in parallel
            for f in [pool.submit(_play_camera, served.url, 0, c, t0, got[c["name"]]) for c in cameras]:
                f.result()  # a failed request fails the benchmark
        for c in cameras:
            if len(got[c["name"]]) != c["frames"]:
                raise RuntimeError(f"bench review: camera {c['name']}: {len(got[c['name']])} frames "
                                   f"played of {c['frames']}")
    finally:
        served.close()
    reader = ReleaseReader(name_dir)  # a fresh reader: its chunk cache starts empty
    streams = {c["name"]: _stream_of(reader, c["name"]) for c in cameras}
    direct: list[float] = []
    order = sorted(((row, name) for name, frames in got.items() for row, *_ in frames),
                   key=lambda x: x[0])
    for row, name in order:  # the playback order of each camera, cameras interleaved
        t = time.perf_counter()
        reader.payload(streams[name], row)
        direct.append(time.perf_counter() - t)
    for name, frames in got.items():
        for row, _lat, _late, data in frames:
            if data != reader.payload(streams[name], row):
                raise RuntimeError(f"bench review: camera {name} frame row {row}: the served bytes "
                                   f"differ from the release's")
    http = _ms([lat for frames in got.values() for _, lat, _, _ in frames])
    ref = _ms(direct)
    late = [late for frames in got.values() for _, _, late, _ in frames]
    return {
        "frame_p99_ms": http["p99"], "frame_median_ms": http["median"],
        "direct_p99_ms": ref["p99"], "direct_median_ms": ref["median"],
        "frame_vs_direct": round(http["p99"] / ref["p99"], 1),
        "frames": len(late), "cameras": len(cameras),
        "frame_late_p99_ms": round(float(np.percentile(late, 99)) * 1e3, 3),
    }


def _stream_of(reader: Any, camera: str) -> str:
    """The release stream that the review page's camera ``camera`` shows."""
    if camera in reader.streams:
        return camera
    matches = [s.name for s in reader.streams.values() if s.is_camera and camera in s.name]
    if len(matches) != 1:
        raise RuntimeError(f"bench review: camera {camera!r} matches streams {matches} of {reader.path}")
    return str(matches[0])


def _foxglove(quick: bool, skip: bool) -> dict[str, Any]:
    """``bench.foxglove_replay.measure_foxglove``'s figures (its dds figure beside)."""
    if skip:
        return {"foxglove_p99_jitter_ms": None, "foxglove_note": "skipped (--skip-foxglove)"}
    from .foxglove_replay import measure_foxglove

    figures: dict[str, Any] = measure_foxglove(quick=quick)
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(args.quick)
    episodes = args.episodes or (100 if quick else 1000)
    requests = args.requests or (10 if quick else 30)
    seconds = args.play_seconds or (3.0 if quick else 8.0)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    lst_dir, play_dir = list_release(episodes), play_release(seconds)
    prepare_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="demofab-bench-review-") as tmp:
        out: dict[str, Any] = measure_list(lst_dir, Path(tmp) / "list", requests)
        out |= measure_frames(play_dir, Path(tmp) / "play")
    out |= _foxglove(quick, args.skip_foxglove)
    out |= {"targets": TARGETS, "quick": quick, "prepare_s": round(prepare_s, 1),
            # how busy the machine was: latencies on a shared machine read with this
            "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
            "cache": str(cache_root())}
    return out

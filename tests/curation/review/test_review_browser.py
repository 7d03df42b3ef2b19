"""The review page in a real headless browser (Debian's chromium through Playwright): the
list, sorting and filtering, playing an episode, the curator's shortcuts saved into the
labels file and carried by ``demofab curate --labels`` into the next release version, and
the statistics page. Each test saves screenshots under test-artifacts/review/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from curation import flag_names
from curation.release import episode_table
from demofab.cli import main

from .conftest import ReviewSite, screenshot

# slow: the release is recorded and curated and chromium started once, ~12 s, before the first
pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 10_000
T = TypeVar("T")


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


def _open(page: Any, url: str) -> None:
    """Go to ``url`` and wait until the page says it has loaded its data."""
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', timeout=WAIT_MS)


def _width_when_loaded(img: Any) -> int:
    """The natural width of an <img> once it has loaded (0 if it is broken)."""
    img.scroll_into_view_if_needed()
    width: int = img.evaluate(
        "i => i.decode().then(() => i.naturalWidth, () => 0)")
    return width


def _rows(page: Any) -> list[dict[str, str]]:
    return [{"key": r.get_attribute("data-key") or "", "index": r.get_attribute("data-index") or "",
             "task": r.get_by_test_id("cell-task").inner_text().strip(),
             "duration_s": r.get_by_test_id("cell-duration_s").inner_text().strip(),
             "flags": r.get_by_test_id("cell-flags").inner_text().strip()}
            for r in page.get_by_test_id("episode-row").all()]


def _durations(page: Any) -> list[float]:
    return [float(r["duration_s"].split()[0]) for r in _rows(page)]


def _until(page: Any, read: Callable[[], T], ok: Callable[[T], bool]) -> T:
    """``read()`` once ``ok`` holds of it (polled for up to WAIT_MS); fails with the last value."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {WAIT_MS} ms")
        page.wait_for_timeout(50)


def _seconds(text: str) -> float:
    """The first number of a time display such as ``1.23 / 4.56 s``."""
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    assert m, f"no time in {text!r}"
    return float(m.group())


def test_the_list_shows_every_episode_with_its_first_and_last_frames(
        review_site: ReviewSite, page: Any) -> None:
    expect = _expect()
    table = episode_table(review_site.release)
    _open(page, review_site.url + "/")
    rows = page.get_by_test_id("episode-row")
    expect(rows).to_have_count(len(table))
    expect(page.get_by_test_id("episode-count")).to_contain_text(f"{len(table)} of {len(table)}")
    assert sorted(r["key"] for r in _rows(page)) == sorted(e["key"] for e in table)
    for row in rows.all():
        for which in ("thumb-first", "thumb-last"):
            img = row.get_by_test_id(which)
            assert _width_when_loaded(img) > 0, f"{which} of {row.get_attribute('data-key')} did not load"
    # bob's episode lost messages and its head camera: flagged, and marked as an outlier
    lossy = next(e for e in table if e["operator"] == "bob")
    row = page.locator(f'[data-testid="episode-row"][data-key="{lossy["key"]}"]')
    expect(row.get_by_test_id("cell-flags")).to_contain_text("gaps")
    expect(row.get_by_test_id("outlier").first).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "list")
    # the keyboard: j moves the selection down, Enter opens the selected episode
    second = rows.nth(1).get_attribute("data-index")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/episodes/{second}$"))


def test_sorting_and_filtering_the_list_changes_the_rows_shown(
        review_site: ReviewSite, page: Any) -> None:
    expect = _expect()
    table = episode_table(review_site.release)
    _open(page, review_site.url + "/")
    expect(page.get_by_test_id("episode-row")).to_have_count(len(table))

    lengths = sorted(e["duration_s"] for e in table)
    assert lengths[0] < lengths[-1]  # alice's 1.5 s episodes and bob's 2 s one
    page.get_by_test_id("sort-duration_s").click()
    first = _until(page, lambda: _durations(page), lambda d: d in (sorted(d), sorted(d)[::-1]))
    page.get_by_test_id("sort-duration_s").click()
    second = _until(page, lambda: _durations(page), lambda d: d == first[::-1])
    assert first != second

    page.get_by_test_id("filter-text").fill("wipe")
    expect(page.get_by_test_id("episode-row")).to_have_count(1)
    expect(page.get_by_test_id("episode-count")).to_contain_text(f"1 of {len(table)}")
    assert _rows(page)[0]["task"] == "wipe table"
    screenshot(page, "list-filtered-text")
    page.get_by_test_id("filter-text").fill("")
    expect(page.get_by_test_id("episode-row")).to_have_count(len(table))

    page.get_by_test_id("filter-flag").select_option("gaps")
    flagged = [e["key"] for e in table if "gaps" in flag_names(int(e["flags"]))]
    expect(page.get_by_test_id("episode-row")).to_have_count(len(flagged))
    assert [r["key"] for r in _rows(page)] == flagged
    screenshot(page, "list-filtered-flag")


def test_playing_an_episode_moves_the_cameras_the_plot_cursor_and_the_clock(
        review_site: ReviewSite, page: Any) -> None:
    expect = _expect()
    _open(page, review_site.url + "/episodes/0")
    cameras = page.get_by_test_id("camera")
    expect(cameras).to_have_count(3)
    for cam in cameras.all():
        assert _width_when_loaded(cam) == 640
    plot = page.get_by_test_id("joint-plot")
    expect(plot).to_be_visible()
    before = {
        "frames": [c.get_attribute("data-frame") for c in cameras.all()],
        "srcs": [c.get_attribute("src") for c in cameras.all()],
        "time": _seconds(page.get_by_test_id("time-display").inner_text()),
        "cursor": plot.get_attribute("data-cursor-t"),
        "pixels": plot.evaluate("c => c.toDataURL()"),
    }
    assert before["time"] == 0.0
    assert float(before["cursor"] or "nan") == 0.0
    screenshot(page, "episode-start")

    page.get_by_test_id("play-button").click()
    expect(page.locator("body")).to_have_attribute("data-playing", "1")
    page.wait_for_function(
        "() => parseFloat(document.querySelector('[data-testid=time-display]').textContent) > 0.6",
        timeout=WAIT_MS)
    page.keyboard.press("Space")  # pause
    expect(page.locator("body")).to_have_attribute("data-playing", "0")
    t_paused = _seconds(page.get_by_test_id("time-display").inner_text())
    frames = [c.get_attribute("data-frame") for c in cameras.all()]
    assert all(int(f or 0) >= 15 for f in frames), f"30 fps cameras at {t_paused} s show frames {frames}"
    assert [c.get_attribute("src") for c in cameras.all()] != before["srcs"]
    for cam in cameras.all():
        assert _width_when_loaded(cam) == 640
    _until(page, lambda: float(plot.get_attribute("data-cursor-t") or "nan"),
           lambda c: c == pytest.approx(t_paused, abs=0.05))  # the cursor is where the clock is
    assert plot.evaluate("c => c.toDataURL()") != before["pixels"]
    page.wait_for_timeout(400)
    assert _seconds(page.get_by_test_id("time-display").inner_text()) == t_paused  # paused stays
    screenshot(page, "episode-playing")


def _press(page: Any, key: str, text: str | None = None) -> None:
    """Press a shortcut; with ``text``, type it into the dialog it opens and press Enter.
    Waits until the page says the server saved the file."""
    expect = _expect()
    status = page.get_by_test_id("save-status")
    page.evaluate("() => { document.querySelector('[data-testid=save-status]').textContent = '' }")
    page.keyboard.press(key)
    if text is not None:
        dialog = page.get_by_test_id("edit-dialog")
        expect(dialog).to_be_visible()
        page.get_by_test_id("edit-input").fill(text)
        page.get_by_test_id("edit-input").press("Enter")
        expect(dialog).to_be_hidden()
    expect(status).to_have_text("saved")


def test_shortcuts_go_into_the_labels_file_and_the_next_release_carries_them(
        review_site: ReviewSite, page: Any) -> None:
    expect = _expect()
    table = episode_table(review_site.release)
    lossy = next(e for e in table if e["operator"] == "bob")
    first, second = table[0], table[1]
    assert first["operator"] == second["operator"] == "alice"

    _open(page, review_site.url + f"/episodes/{first['index']}")
    expect(page.get_by_test_id("episode-title")).to_contain_text(first["episode_id"][:8])
    _press(page, "f")
    expect(page.get_by_test_id("decision-success")).to_contain_text("failure")
    _press(page, "t", "stack the red cups")
    expect(page.get_by_test_id("decision-task")).to_contain_text("stack the red cups")
    _press(page, "g", "jerk_spike")
    expect(page.get_by_test_id("decision-flags")).to_contain_text("jerk_spike")
    _press(page, "n", "gripper slipped at the end")
    expect(page.get_by_test_id("decision-notes")).to_contain_text("gripper slipped at the end")
    screenshot(page, "episode-decided")

    page.keyboard.press("j")  # the next episode
    expect(page).to_have_url(re.compile(rf"/episodes/{second['index']}$"))
    expect(page.get_by_test_id("episode-title")).to_contain_text(second["episode_id"][:8])
    _press(page, "x")
    expect(page.get_by_test_id("decision-exclude")).to_contain_text("yes")
    _press(page, "s")
    expect(page.get_by_test_id("decision-success")).to_contain_text("success")

    _open(page, review_site.url + f"/episodes/{lossy['index']}")
    expect(page.get_by_test_id("episode-title")).to_contain_text(lossy["episode_id"][:8])
    _press(page, "c", "gaps")
    expect(page.get_by_test_id("decision-flags")).to_contain_text(re.compile(r"[-−]\s*gaps"))

    # the decisions are on disk, in a file the curate command reads
    saved = yaml.safe_load(review_site.labels.read_text())
    by_key = {e["key"]: e for e in saved["episodes"]}
    assert by_key[first["key"]]["success"] is False
    assert by_key[first["key"]]["task"] == "stack the red cups"
    assert by_key[second["key"]]["exclude"] is True
    assert "gaps" in by_key[lossy["key"]]["flags_clear"]

    _open(page, review_site.url + "/")
    row = page.locator(f'[data-testid="episode-row"][data-key="{second["key"]}"]')
    expect(row.get_by_test_id("decision")).to_contain_text("exclude")
    expect(row).to_have_class(re.compile(r"\bexcluded\b"))
    screenshot(page, "list-decided")

    # `demofab curate SESSIONS --labels FILE` makes v2 with the decisions
    assert main(["curate", *map(str, review_site.sessions), "--out", str(review_site.releases),
                 "--name", "demo", "--labels", str(review_site.labels)]) == 0
    v2 = review_site.releases / "demo" / "v2"
    after = {e["key"]: e for e in episode_table(v2)}
    assert second["key"] not in after, "the excluded episode is still in the next version"
    assert set(after) == {e["key"] for e in table} - {second["key"]}
    one = after[first["key"]]
    assert (one["success"], one["task"]) == (False, "stack the red cups")
    assert "jerk_spike" in flag_names(int(one["flags"]))
    assert "gripper slipped at the end" in one["notes"]
    assert "gaps" not in flag_names(int(after[lossy["key"]]["flags"]))
    assert "dropped_frames" in flag_names(int(after[lossy["key"]]["flags"]))  # not cleared


def test_the_stats_page_draws_a_plot_per_feature(review_site: ReviewSite, page: Any) -> None:
    expect = _expect()
    _open(page, review_site.url + "/stats")
    plots = page.get_by_test_id("stats-plot")
    expect(plots.first).to_be_visible()
    streams = page.get_by_test_id("stats-stream")
    assert plots.count() >= 1

    def drawn() -> list[tuple[str, int]]:
        """(field, count of painted pixels) of each plot canvas."""
        return [(p.get_attribute("data-field") or "", p.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""))
            for p in plots.all()]

    shown = drawn()
    assert all(n > 100 for _, n in shown), f"blank plots: {shown}"
    screenshot(page, "stats")
    options = [o for o in streams.locator("option").all_inner_texts() if o.strip()]
    assert "joint_states" in options
    assert streams.input_value() == "joint_states"
    other = "imu"
    streams.select_option(other)
    page.wait_for_function("f => [...document.querySelectorAll('[data-testid=stats-plot]')]"
                           ".map(c => c.dataset.field).join() !== f",
                           arg=",".join(f for f, _ in shown), timeout=WAIT_MS)
    assert all(n > 100 for _, n in drawn())
    screenshot(page, f"stats-{other}")


def test_an_unknown_flag_is_refused_on_the_page_and_the_labels_file_keeps_what_it_had(
        review_site: ReviewSite, page: Any, expected_errors: list[str]) -> None:
    expect = _expect()
    expected_errors.append("/api/episodes/0/labels")  # the refused POST
    _open(page, review_site.url + "/episodes/0")
    _press(page, "f")
    before = review_site.labels.read_text()
    page.keyboard.press("g")
    page.get_by_test_id("edit-input").fill("wobbly")
    page.get_by_test_id("edit-input").press("Enter")
    expect(page.get_by_test_id("save-status")).to_contain_text("unknown flag 'wobbly'")
    expect(page.get_by_test_id("decision-flags")).not_to_contain_text("wobbly", timeout=1000)
    assert review_site.labels.read_text() == before
    assert "wobbly" not in before
    screenshot(page, "episode-refused")

"""The job page's sync preview, beat grid and phone layout in a real browser (Debian's chromium
driven by Playwright, against a real ``streamlit run app.py`` with one worker; see
test_e2e_browser.py, whose fixtures and helpers these tests share; chromium is required in CI).

* The preview (a custom component whose root carries ``data-preview``) appears while the job is
  still running, plays the song with the muted class video, and a nudge moves the song's position in
  the page at once without any script rerun: the page sends nothing to the server (no websocket
  message: a rerun is one) and the component receives no new arguments from Python. "Render this"
  then sends the nudge once, and the correction job it starts shows its progress under the preview
  and ends as a file named for what it did. Another session that opens the job's link (it does not
  own the job) can listen, without "Render this".
* At 390 px: no horizontal scroll, and the beat grid opens on about 8 s of the video (the time axis
  zooms, the vertical one is fixed).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import server_util as su
from test_e2e_browser import (
    JOB_TIMEOUT_MS,
    TASK_URL,
    TIMEOUT_MS,
    assert_no_horizontal_scroll,
    new_page,
    wait_app_ready,
)

PREVIEW = "iframe[title='ui.preview.sync_preview']"


@pytest.fixture(scope="module")
def long_pair(tmp_path_factory):
    return su.long_pair(tmp_path_factory)


@pytest.fixture(scope="module")
def short_pair(tmp_path_factory):
    return su.short_pair(tmp_path_factory)


def preview_frame(page):
    """The preview's frame (its element is on the page a moment before its document)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not (frames := [f for f in page.frames if "sync_preview" in f.url]):
        assert time.monotonic() < deadline, "the preview's frame never loaded"
        page.wait_for_timeout(100)
    return frames[0]


def preview_state(frame) -> dict:
    return frame.evaluate("() => window.beatsyncPreview.state()")


def wait_state(frame, predicate: str, timeout_ms: int = 45_000) -> dict:
    frame.wait_for_function(f"() => {{ const s = window.beatsyncPreview && window.beatsyncPreview.state(); "
                            f"return s && ({predicate}); }}", timeout=timeout_ms)
    return preview_state(frame)


def sync(page, server, pair) -> str:
    """Choose the pair on the upload page, press Sync; returns the new task's id."""
    from playwright.sync_api import expect

    page.goto(server.url("/"))
    inputs = page.locator("input[type=file]")
    expect(inputs).to_have_count(2)
    inputs.nth(0).set_input_files(str(pair.video_path))
    expect(page.get_by_role("button", name=f"Remove {pair.video_path.name}")).to_be_visible()
    inputs.nth(1).set_input_files(str(pair.song_path))
    expect(page.get_by_role("button", name=f"Remove {pair.song_path.name}")).to_be_visible()
    page.get_by_role("button", name="Sync", exact=True).click()
    page.wait_for_url(TASK_URL, timeout=TIMEOUT_MS)
    return TASK_URL.search(page.url).group(1)


def test_preview_plays_and_a_nudge_needs_no_rerun(browser, server, long_pair):
    from playwright.sync_api import expect

    page = new_page(browser)
    sent: list[float] = []  # every message the page sends the server (a script rerun is one)
    page.on("websocket", lambda ws: ws.on("framesent", lambda _payload: sent.append(time.monotonic())))
    task_id = sync(page, server, long_pair)
    expect(page.get_by_role("heading", name="Working…", exact=True)).to_be_visible()

    # the player is there while the job still runs (loading the video and the song), and it gets the
    # song's placement while the job runs
    page.locator(PREVIEW).wait_for(state="attached", timeout=JOB_TIMEOUT_MS)
    when = su.status(server, task_id)
    assert when["status"] in ("pending", "processing"), f"the preview came only once the job was {when['status']}"
    frame = page.frame_locator(PREVIEW)
    expect(frame.locator("[data-preview]")).to_have_count(1)
    early = preview_frame(page)
    wait_state(early, "s.placed")
    when = su.status(server, task_id)
    assert when["status"] == "processing", f"the song was placed only once the job was {when['status']}"
    assert when["preview"]["quick"] is not None or when["preview"]["variants"], when["preview"]
    early.evaluate("() => window.beatsyncPreview.setNudge(20)")  # a nudge made while the job runs ...

    # the job ends: the page says so, and the preview is still there
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    done = su.status(server, task_id)
    assert done["status"] == "success", done
    wait_app_ready(page)
    fr = preview_frame(page)
    wait_state(fr, "s.ready && s.variant === 'modular' && s.nudgeMs === 20")  # ... is kept
    fr.get_by_role("button", name="Reset").click()
    wait_state(fr, "s.nudgeMs === 0")
    al = done["variants"]["modular"]["alignment"]
    seg = al["segments"][0]
    fps = done["preview"]["frame_rate"]
    assert fps == pytest.approx(15.0)

    # a point in the music: the song position the preview plays there is the alignment's
    t = seg["dance_start_s"] + 5.0
    fr.evaluate(f"() => {{ document.getElementById('video').currentTime = {t}; }}")
    st1 = wait_state(fr, f"Math.abs(s.videoTime - {t}) < 0.01 && s.songTime !== null")
    expected = seg["bgm_start_s"] + (t - seg["dance_start_s"]) * seg["rate"]
    assert st1["songTime"] == pytest.approx(expected, abs=0.001), st1
    renders = st1["argsChanges"]
    page.wait_for_timeout(1500)
    quiet = len(sent)  # (nothing is sent while the page is idle)

    # nudges: +10 ms, +1 frame, a typed number; each moves the song at once, in the page
    fr.get_by_role("button", name="10 ms later").click()
    # (the song element may still be seeking to where the video was put: it follows within a few frames)
    st2 = wait_state(fr, "s.nudgeMs === 10 && s.songTime !== null && Math.abs(s.audioTime - s.songTime) < 0.002")
    assert st2["songTime"] == pytest.approx(expected - 0.010, abs=0.0005), st2
    assert st2["audioTime"] == pytest.approx(st2["songTime"], abs=0.002), "the song element itself moved"
    fr.get_by_role("button", name="+1 frame").click()
    st3 = wait_state(fr, f"Math.abs(s.nudgeMs - {10 + 1000 / fps}) < 0.11")
    assert st3["songTime"] == pytest.approx(expected - 0.010 - 1 / fps, abs=0.0006), st3
    box = fr.get_by_label("Move the song by (ms, + = later)")
    box.fill("40")
    box.press("Tab")
    st4 = wait_state(fr, "s.nudgeMs === 40")
    assert st4["songTime"] == pytest.approx(expected - 0.040, abs=0.0005), st4

    # it plays: the muted class video, and the song following it
    fr.get_by_role("button", name="▶ Play").click()
    st5 = wait_state(fr, "!s.audioPaused && s.audioTime > 0", timeout_ms=10_000)
    page.wait_for_timeout(1500)
    st6 = preview_state(fr)
    assert not st6["audioPaused"] and st6["audioTime"] > st5["audioTime"] + 0.5, (st5, st6)
    assert abs(st6["audioTime"] - st6["songTime"]) < 0.08, st6
    assert fr.locator("video").evaluate("v => v.muted && !v.paused")
    fr.get_by_role("button", name="❚❚ Pause").click()
    wait_state(fr, "s.audioPaused")

    # none of it asked the server for anything, and Python sent the component nothing new
    assert len(sent) == quiet, f"{len(sent) - quiet} message(s) sent to the server while nudging"
    assert preview_state(fr)["argsChanges"] == renders, preview_state(fr)

    # "Render this": the nudge goes to Python once, as a correction job shown under the preview
    fr.get_by_role("button", name="Render this (+40 ms)").click()
    deadline = time.monotonic() + 30
    while not su.status(server, task_id)["corrections"]:
        assert time.monotonic() < deadline, "no correction job"
        time.sleep(0.2)
    (cid,) = su.status(server, task_id)["corrections"]
    c = su.status(server, cid)
    assert c["correction"] == {"source_task": task_id, "variant": "modular", "alternative": None, "nudge_ms": 40.0}
    expect(page.get_by_text("Rendering modular moved by +40 ms.")).to_be_visible()
    expect(page.get_by_role("heading", name="Corrected results")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    link = page.locator("a.bs-download").filter(has_text="class_modular_+40ms.mp4")
    expect(link).to_have_count(1)
    assert su.status(server, cid)["status"] == "success"


def test_phone_width_no_horizontal_scroll_grid_opens_on_8_s_and_beats_on_onsets(browser, server, short_pair):
    from playwright.sync_api import expect

    page = new_page(browser, viewport={"width": 390, "height": 844})
    task_id = sync(page, server, short_pair)
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert su.status(server, task_id)["status"] == "success"
    page.locator(".js-plotly-plot").first.wait_for(timeout=TIMEOUT_MS)
    wait_app_ready(page)
    page.wait_for_timeout(1000)
    assert_no_horizontal_scroll(page)
    axes = page.evaluate("""() => { const g = document.querySelector('.js-plotly-plot');
        return {x: g._fullLayout.xaxis.range, yFixed: g._fullLayout.yaxis.fixedrange,
                slider: g._fullLayout.xaxis.rangeslider.visible}; }""")
    span = axes["x"][1] - axes["x"][0]
    assert span == pytest.approx(8.0, abs=0.01) and axes["yFixed"] and axes["slider"], axes
    start = su.status(server, task_id)["variants"]["modular"]["alignment"]["segments"][0]["dance_start_s"]
    assert axes["x"][0] <= start <= axes["x"][1], (axes, start)
    # the grid shows the result right: the song's beats mapped through it fall within 30 ms of the class
    # recording's onsets drawn at them (most beats have one; a drawn onset is matched up to 120 ms away)
    beats = page.evaluate("""() => { const d = document.querySelector('.js-plotly-plot')._fullData;
        return {onsets: Array.from(d[1].x), mapped: Array.from(d[2].x)}; }""")
    mapped = np.asarray(beats["mapped"])
    assert len(mapped) >= 8, beats
    gaps = np.array([np.min(np.abs(mapped - x)) for x in beats["onsets"]])
    assert len(gaps) >= 0.6 * len(mapped) and np.all(gaps <= 0.030), (np.round(gaps * 1000, 1), len(mapped))
    # the plot is described in words too
    expect(page.get_by_text("Beat grid of modular:")).to_be_visible()
    # headings in order (h1, then h2, h3 never skipping a level), captions readable (>= 4.5:1)
    levels = page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1])")
    assert levels[0] == 1 and levels.count(1) == 1, levels
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    ratios = page.evaluate(CONTRASTS)
    assert ratios and min(ratios) >= 4.5, ratios


def test_a_shared_link_plays_the_preview_without_render_this(browser, server, short_pair):
    """Another browser session that opens the job's link (it does not own the job) gets the preview to
    listen to, but not its "Render this" (nor the correction panel's button); the owner's session
    has both."""
    from playwright.sync_api import expect

    owner_page = new_page(browser)
    task_id = sync(owner_page, server, short_pair)
    expect(owner_page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_app_ready(owner_page)
    mine = owner_page.frame_locator(PREVIEW)
    expect(mine.locator("#render-row")).to_be_visible()
    expect(mine.get_by_role("button", name="Render this (±0 ms)")).to_be_disabled()  # (no nudge yet)
    panel = owner_page.get_by_test_id("stExpander").filter(has_text="Correct a result")
    if not panel.get_by_role("button", name="Render the corrected video").is_visible():
        panel.get_by_text("Correct a result").click()
    expect(panel.get_by_role("button", name="Render the corrected video")).to_be_visible()

    page = new_page(browser)  # a new context: a session of its own, as a shared link opens
    page.goto(server.url(f"/task?task={task_id}"))
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("This job was started in another browser")).to_be_visible()
    fr = preview_frame(page)
    wait_state(fr, "s.ready")
    expect(page.frame_locator(PREVIEW).locator("#render-row")).to_be_hidden()
    fr.evaluate("() => window.beatsyncPreview.setNudge(40)")  # it still nudges, for listening
    wait_state(fr, "s.nudgeMs === 40")
    expect(page.frame_locator(PREVIEW).get_by_role("button", name="Render this (+40 ms)")).to_have_count(0)
    panel = page.get_by_test_id("stExpander").filter(has_text="Correct a result")
    if not panel.get_by_role("combobox").first.is_visible():
        panel.get_by_text("Correct a result").click()
    expect(panel.get_by_role("combobox").first).to_be_visible()  # (the panel is open: it shows the grid's choices)
    expect(panel.get_by_role("button", name="Render the corrected video")).to_have_count(0)
    assert su.status(server, task_id)["corrections"] == []


#: the contrast ratio of every caption's text against the page (its colour blended over the background)
CONTRASTS = r"""() => {
  const rgba = (c) => {
    let m = c.match(/^rgba?\(([^)]+)\)/);
    if (m) { const v = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; }
    m = c.match(/^color\(srgb ([^)]+)\)/);
    if (m) { const v = m[1].split(/[ \/]+/).filter(Boolean).map(Number);
             return [v[0] * 255, v[1] * 255, v[2] * 255, v.length > 3 ? v[3] : 1]; }
    throw new Error('colour ' + c);
  };
  const lum = ([r, g, b]) => { const f = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = rgba(getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor);
  return [...document.querySelectorAll('[data-testid=stCaptionContainer]')].map((e) => {
    const c = rgba(getComputedStyle(e).color);
    const mix = [0, 1, 2].map((i) => c[i] * c[3] + bg[i] * (1 - c[3]));
    const [hi, lo] = [lum(mix), lum(bg)].sort((a, b) => b - a);
    return Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100;
  });
}"""

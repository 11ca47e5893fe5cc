"""The web UI in a real browser: Debian's chromium driven by Playwright, against a real
``python -m streamlit run app.py`` (its own port and data dir, one worker thread).

The happy path as a user clicks it: choose the two files, Sync, the job's page with its progress
and then both results, download one and check that it is a valid mp4 whose sound is the clean
song; then the language switch in the sidebar.

Chromium (``/usr/bin/chromium``, or ``$BEATSYNC_CHROMIUM``) and the ``playwright`` package are
required. In CI (``$CI`` set; ``.ci/run`` installs both and sets it) a missing browser fails the
tests; on a developer's machine without Debian's chromium they are skipped with how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
import server_util as su
import songgen as sg
from server_util import CLEAN_NCC

from beatsync import media

TIMEOUT_MS = 60_000  # page loads and script runs (CI: 2 cores)
JOB_TIMEOUT_MS = 90_000
VIEWPORT = {"width": 1366, "height": 900}
TASK_URL = re.compile(r"/task\?task=([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})$")


def chromium_path() -> str:
    path = os.environ.get("BEATSYNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        why = (f"chromium is required for the browser tests and was not found at {path} "
               "(Debian: apt-get install chromium; or set BEATSYNC_CHROMIUM)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright as sp
    except ImportError as e:
        pytest.fail(f"the playwright package is required for the browser tests ({e}); "
                    "pip install -r requirements-dev.txt")
    return sp()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> sg.ClassMedia:
    return su.short_pair(tmp_path_factory)


#: records whether a progress bar was ever in the page (the app is one page: this survives page switches)
WATCH_PROGRESS = """
window.__progressSeen = false;
new MutationObserver(() => {
  if (!window.__progressSeen && document.querySelector('[data-testid=stProgress]')) window.__progressSeen = true;
}).observe(document, {childList: true, subtree: true});
"""


def new_page(browser, *, locale: str = "en-US", viewport=None):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ctx = browser.new_context(viewport=viewport or VIEWPORT, locale=locale, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(WATCH_PROGRESS)
    return ctx.new_page()


#: what reaches past a phone's width: the document, every element that scrolls sideways (Streamlit
#: scrolls its main area itself; the sidebar is closed on a phone), and HTML boxes (not a plot's
#: clipped drawing) past the window's right edge
OVERFLOW = """() => {
    const scrolls = [...document.querySelectorAll('body *')].filter(e => !e.closest('[data-testid=stSidebar]') && (() => {
        const o = getComputedStyle(e).overflowX;
        return (o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth + 1; })()).map(e => `${e.tagName}[${e.getAttribute('data-testid') || ''}] ${e.scrollWidth}>${e.clientWidth}`);
    const wide = [...document.querySelectorAll('body *')].filter(e => !e.closest('svg') && (() => {
        const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1; })())
        .map(e => `${e.tagName}[${e.getAttribute('data-testid') || ''}]`).slice(0, 5);
    return {doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
            view: window.innerWidth, scrolls, wide};
}"""


def assert_no_horizontal_scroll(page) -> None:
    widths = page.evaluate(OVERFLOW)
    assert widths["doc"] <= widths["view"] and widths["body"] <= widths["view"], widths
    assert not widths["scrolls"] and not widths["wide"], widths


def wait_app_ready(page) -> None:
    """The script run finished: Streamlit's status widget says nothing is running."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=TIMEOUT_MS)


def test_sync_download_and_language_in_a_browser(browser, server, pair, tmp_path):
    from playwright.sync_api import expect

    t0 = time.monotonic()
    page = new_page(browser)
    # the site's address: the upload page (the default page, /upload)
    page.goto(server.url("/"))
    sync = page.get_by_role("button", name="Sync", exact=True)
    expect(sync).to_be_visible()
    expect(sync).to_be_disabled()
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Sync a video")).to_be_visible()
    expect(sidebar.get_by_text("Language")).to_be_visible()
    assert page.title() == "BeatSync"

    # choose the two files (Streamlit shows their names once they are uploaded)
    inputs = page.locator("input[type=file]")
    expect(inputs).to_have_count(2)
    inputs.nth(0).set_input_files(str(pair.video_path))
    expect(page.get_by_role("button", name="Remove class.mp4")).to_be_visible()
    inputs.nth(1).set_input_files(str(pair.song_path))
    expect(page.get_by_role("button", name="Remove song.wav")).to_be_visible()
    expect(sync).to_be_enabled()
    sync.click()

    # the job's page: its link, then progress (if we are quick enough) and both results
    page.wait_for_url(TASK_URL, timeout=TIMEOUT_MS)
    task_id = TASK_URL.search(page.url).group(1)
    # the heading says what is happening: working, then the result
    expect(page.get_by_role("heading", name=re.compile(r"^(Working…|Result)$"))).to_be_visible()
    expect(page.get_by_text(task_id)).to_be_visible()
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Your synced video", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    expect(page.get_by_text("The music starts at 0:03 in the video")).to_be_visible()
    expect(page.get_by_text("Compare methods")).to_be_visible()
    status = su.status(server, task_id)
    assert status["status"] == "success", status
    # the recommended result's player, and the other method's under "compare methods" (unless the same video)
    videos = page.locator("video")
    shown = ["modular"] if status["variants"]["v2"]["same_as"] else ["modular", "v2"]
    expect(videos).to_have_count(len(shown))
    srcs = videos.evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert [s.split("/api/download/", 1)[1] for s in srcs] == [f"{task_id}/{v}" for v in shown], srcs
    progress_seen = page.evaluate("window.__progressSeen")
    if status["finished"] - status["created"] > 1.5:  # the page's first run came well before the end
        assert progress_seen, "no progress bar was shown while the job ran"

    # download the modular result through its link
    link = page.locator("a.bs-download[data-variant=modular]")
    expect(link).to_have_attribute("href", re.compile(rf"/api/download/{task_id}/modular$"))
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "class_modular.mp4"
    saved = tmp_path / "downloaded.mp4"
    download.save_as(saved)
    assert download.failure() is None
    check_clean_song(saved, pair, status)

    # the language switch: Chinese on this page and on the others
    sidebar.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="简体中文").click()
    expect(page.get_by_role("heading", name="结果", exact=True)).to_be_visible()
    expect(page.get_by_text("音乐从视频的 0:03 开始")).to_be_visible()
    expect(sidebar.get_by_text("同步视频")).to_be_visible()
    expect(sidebar.get_by_text("语言")).to_be_visible()
    sidebar.get_by_text("同步视频").click()
    expect(page.get_by_role("button", name="开始同步", exact=True)).to_be_visible()
    expect(page.get_by_text("1. 课堂视频")).to_be_visible()

    print(f"browser flow: {time.monotonic() - t0:.1f} s (progress bar seen: {progress_seen})")


def check_clean_song(path: Path, pair: sg.ClassMedia, status: dict) -> None:
    """``path`` is an mp4 with picture and sound, and its sound is the clean song, in sync: output
    time ``t`` is class-video time ``render.start_s + t``, where the song plays from ``offset_s``."""
    info = media.probe(str(path))
    assert info.video is not None and info.audio is not None, info
    assert path.read_bytes()[4:8] == b"ftyp"
    variant = status["variants"]["modular"]
    start = variant["render"]["start_s"]
    offset = variant["alignment"]["offset_s"]
    first, last = pair.music_at_s - start, pair.music_at_s + pair.music_len_s - start  # the music, output time
    out_times = [first + 0.5 + k * (last - first - 2.0) / 3 for k in range(4)]
    heard = su.heard_song_times(path, pair, out_times)
    for t, (song_t, ncc) in zip(out_times, heard, strict=True):
        assert ncc >= CLEAN_NCC, f"at {t:.2f} s of the download the sound is not the clean song (ncc {ncc:.2f})"
        assert song_t == pytest.approx(start + t - offset, abs=0.006), (t, song_t, start, offset)


def test_deep_link_to_a_fresh_server_has_the_navigation(browser, server):
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(server.url("/upload"))
    expect(page.get_by_role("button", name="Sync", exact=True)).to_be_visible()
    wait_app_ready(page)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Language")).to_be_visible(timeout=5_000)
    expect(sidebar.get_by_text("Sync a video")).to_be_visible(timeout=5_000)
    assert page.title() == "BeatSync"

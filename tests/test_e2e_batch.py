"""A class's group takes in one go, in a real browser (Debian's chromium driven by Playwright, against a
real ``streamlit run app.py`` with one worker; see test_e2e_browser.py, whose fixtures and helpers
these tests share; chromium is required in CI).

The upload page is given three class videos of one routine and the song; Sync opens the batch's
page, which lists the three takes (each linked to its own job page), follows them without a reload
until all are done, shows a result for each, and offers a ZIP of them all, which downloads as a
valid archive of playable videos. At 390 px the batch page has no horizontal scroll.
"""

from __future__ import annotations

import re
import time
import zipfile

import pytest
import server_util as su
from test_e2e_browser import (
    JOB_TIMEOUT_MS,
    TIMEOUT_MS,
    assert_no_horizontal_scroll,
    new_page,
    wait_app_ready,
)

from beatsync import media

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
BATCH_URL = re.compile(rf"/batch\?batch=({UUID})$")
BATCH_TIMEOUT_MS = 3 * JOB_TIMEOUT_MS  # three jobs, one after the other on one worker


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> su.Takes:
    return su.class_takes(tmp_path_factory.mktemp("e2e_takes"), 3)


def test_three_class_videos_in_one_go(browser, server, takes, tmp_path):
    from playwright.sync_api import expect

    t0 = time.monotonic()
    page = new_page(browser)
    page.goto(server.url("/"))
    sync = page.get_by_role("button", name="Sync", exact=True)
    expect(sync).to_be_disabled()
    inputs = page.locator("input[type=file]")
    expect(inputs).to_have_count(2)
    inputs.nth(0).set_input_files([str(v) for v in takes.videos])  # the class video's uploader takes several
    expect(page.get_by_text("3 class videos: one job each")).to_be_visible()
    inputs.nth(1).set_input_files(str(takes.song_path))
    expect(page.get_by_role("button", name="Remove song.wav")).to_be_visible()
    expect(sync).to_be_enabled()
    sync.click()

    # the batch's page: its three takes, each linked to its own job page
    page.wait_for_url(BATCH_URL, timeout=TIMEOUT_MS)
    batch_id = BATCH_URL.search(page.url).group(1)
    batch = su.check(server.get(f"/api/batch/{batch_id}"), 200, server=server)
    task_ids = batch["task_ids"]
    assert len(task_ids) == 3 and [t["inputs"]["dance"]["name"] for t in batch["tasks"]] == [
        "group1.mp4", "group2.mp4", "group3.mp4"]
    expect(page.get_by_text("3 class videos with the song song.wav")).to_be_visible()
    for n, tid in enumerate(task_ids, 1):
        link = page.get_by_role("link", name=f"Take {n}: group{n}.mp4")
        expect(link).to_be_visible()
        expect(link).to_have_attribute("href", re.compile(rf"(^|/)task\?task={tid}$"))

    # it follows the takes by itself until all are done: a result each, and the ZIP of them all
    expect(page.get_by_role("heading", name="Group takes", exact=True)).to_be_visible(timeout=BATCH_TIMEOUT_MS)
    expect(page.get_by_text("3 done · 0 working · 0 waiting · 0 failed")).to_be_visible()
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    expect(page.locator("video")).to_have_count(3)
    for tid in task_ids:  # each take's recommended result, played from the API
        expect(page.locator(f"video[src*='/api/download/{tid}/']")).to_have_count(1)
    batch = su.check(server.get(f"/api/batch/{batch_id}"), 200, server=server)
    assert batch["finished"] and batch["counts"]["success"] == 3 and batch["zip_missing"] == [], batch["counts"]
    if batch["tasks"][-1]["finished"] - batch["created"] > 3.0:  # the page's first run came well before the end
        assert page.evaluate("window.__progressSeen"), "no progress bar was shown while the takes ran"

    # one song analysis for the whole batch: one take computed it, the others reused it (the same key)
    analyses = [t["song_analysis"] for t in batch["tasks"]]
    assert sum(not a["reused"] for a in analyses) == 1 and len({a["key"] for a in analyses}) == 1, analyses
    entries = [p for p in (server.data_dir / "cache" / "songs").iterdir() if p.is_dir()]
    assert len(entries) == 1, entries

    # the ZIP, through the page's link
    link = page.locator("a.bs-download[data-zip]")
    expect(link).to_have_attribute("href", re.compile(rf"/api/batch/{batch_id}/zip$"))
    expect(link).to_contain_text(f"Download all results as a ZIP ({len(batch['zip_files'])} videos)")
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "song_takes.zip"
    saved = tmp_path / "takes.zip"
    download.save_as(saved)
    assert download.failure() is None
    with zipfile.ZipFile(saved) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names == [f["name"] for f in batch["zip_files"]], names
        assert {f["task_id"] for f in batch["zip_files"]} == set(task_ids)
        assert all(f"group{n}_modular.mp4" in names for n in (1, 2, 3)), names
        out = tmp_path / "unzipped"
        zf.extractall(out)
        for info_ in zf.infolist():
            assert info_.compress_type == zipfile.ZIP_STORED
            probe = media.probe(str(out / info_.filename))
            assert probe.video is not None and probe.audio is not None and probe.duration_s > 3.0, probe

    # a take's link opens its own job page
    page.get_by_role("link", name="Take 2: group2.mp4").click()
    page.wait_for_url(re.compile(rf"/task\?task={task_ids[1]}$"), timeout=TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible()
    back = page.get_by_role("link", name="All the takes synced with this one")  # and back to the batch
    expect(back).to_have_attribute("href", re.compile(rf"(^|/)batch\?batch={batch_id}$"))

    # on a phone, in Chinese: nothing reaches past the screen's width
    phone = new_page(browser, locale="zh-CN", viewport={"width": 390, "height": 844})
    phone.goto(server.url(f"/batch?batch={batch_id}"))
    expect(phone.get_by_role("heading", name="多组视频", exact=True)).to_be_visible()
    expect(phone.locator("video")).to_have_count(3)
    wait_app_ready(phone)
    phone.wait_for_timeout(1000)
    assert_no_horizontal_scroll(phone)
    print(f"batch flow: {time.monotonic() - t0:.1f} s")

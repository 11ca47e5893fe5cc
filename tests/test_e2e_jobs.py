"""Jobs that stay and failures that lead somewhere, in a real browser (Debian's chromium driven by
Playwright, against a real ``streamlit run app.py`` with one worker; see test_e2e_browser.py, whose
helpers these tests share; chromium is required in CI).

* My jobs survives a reload and a new browser context with the same storage (the owner token is kept
  in the browser's local storage), and stays private: a browser without that storage lists nothing
  and may not control the job. A finished job's line says what was found, without repeated words.
* "Song not found" offers "Try another song", which keeps the class video: the new job uses the
  first job's copy of it (no second upload of the class video is stored), and it succeeds.
"""

from __future__ import annotations

import json
import re

import mediagen
import pytest
import server_util as su
import songgen as sg
from test_e2e_browser import (
    JOB_TIMEOUT_MS,
    TASK_URL,
    TIMEOUT_MS,
    new_page,
    wait_app_ready,
)

STORAGE_KEY = "beatsync.owner_token"
READ_ONLY = "This job was started in another browser"


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> sg.ClassMedia:
    return su.short_pair(tmp_path_factory)


def sync_files(page, server, video, song) -> str:
    """On the upload page: choose the two files, Sync; returns the new job's id."""
    from playwright.sync_api import expect

    page.goto(server.url("/"))
    wait_app_ready(page)
    inputs = page.locator("input[type=file]")
    inputs.nth(0).set_input_files(str(video))
    expect(page.get_by_role("button", name=f"Remove {video.name}")).to_be_visible()
    inputs.nth(1).set_input_files(str(song))
    expect(page.get_by_role("button", name=f"Remove {song.name}")).to_be_visible()
    page.get_by_role("button", name="Sync", exact=True).click()
    page.wait_for_url(TASK_URL, timeout=TIMEOUT_MS)
    return TASK_URL.search(page.url).group(1)


def job_row(page, task_id: str):
    return page.locator(f".st-key-job-{task_id}")


def test_my_jobs_survive_reload_and_a_new_context(browser, server, pair):
    from playwright.sync_api import expect

    page = new_page(browser)
    task_id = sync_files(page, server, pair.video_path, pair.song_path)
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)

    page.goto(server.url("/tasks"))
    row = job_row(page, task_id)
    expect(row).to_be_visible()
    expect(row.get_by_text("class.mp4")).to_be_visible()
    # a finished job's line: its status once, then what was found
    expect(row.get_by_text(re.compile(r"^done · took .* · music at 0:03"))).to_be_visible()
    text = row.inner_text().lower()
    assert text.count("done") == 1, text

    # a reload: a new session of the same browser finds the same jobs
    page.reload()
    expect(job_row(page, task_id)).to_be_visible()
    stored = page.evaluate(f"() => window.localStorage.getItem('{STORAGE_KEY}')")
    assert stored and re.fullmatch(r"[A-Za-z0-9_-]{43}", stored), stored
    assert server.get("/api/tasks", headers=server.owner_headers(stored)).json()["tasks"][0]["task_id"] == task_id

    # a browser restart: a new context with the same storage lists the job and controls it
    state = page.context.storage_state()
    assert any(item["name"] == STORAGE_KEY for o in state["origins"] for item in o["localStorage"]), state
    page.context.close()
    again = browser.new_context(storage_state=state, viewport={"width": 1366, "height": 900})
    again.set_default_timeout(TIMEOUT_MS)
    page2 = again.new_page()
    page2.goto(server.url("/tasks"))
    expect(job_row(page2, task_id)).to_be_visible()
    job_row(page2, task_id).get_by_role("link", name=re.compile("class.mp4")).click()
    page2.wait_for_url(TASK_URL)
    expect(page2.get_by_role("heading", name="Result", exact=True)).to_be_visible()
    expect(page2.get_by_text(READ_ONLY)).to_have_count(0)
    again.close()

    # another browser: nothing listed, and the job's link is read-only there
    other = new_page(browser)
    other.goto(server.url("/tasks"))
    wait_app_ready(other)
    expect(other.get_by_text("No jobs yet in this browser")).to_be_visible()
    expect(job_row(other, task_id)).to_have_count(0)
    other.wait_for_function(f"() => window.localStorage.getItem('{STORAGE_KEY}')")
    assert other.evaluate(f"() => window.localStorage.getItem('{STORAGE_KEY}')") != stored
    other.goto(server.url(f"/task?task={task_id}"))
    expect(other.get_by_role("heading", name="Result", exact=True)).to_be_visible()
    expect(other.get_by_text(READ_ONLY)).to_be_visible()
    other.context.close()


def test_try_another_song_keeps_the_class_video(browser, server, pair, tmp_path):
    from playwright.sync_api import expect

    wrong = mediagen.write_song(tmp_path / "wrong_song.wav", sg.song(10.0, sr=44100, tempo_bpm=96.0, seed=977,
                                                                    channels=2), sr=44100)
    page = new_page(browser)
    first = sync_files(page, server, pair.video_path, wrong)
    expect(page.get_by_role("heading", name="Failed", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert su.status(server, first)["error_code"] == "song_not_found"
    # the way on is another song, not running the same job again
    expect(page.get_by_role("heading", name="Try another song")).to_be_visible()
    expect(page.get_by_role("button", name="Run it again")).to_have_count(0)
    levels = page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1])")
    assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    box = page.locator(f".st-key-another-song-{first}")
    expect(box.get_by_text("class.mp4")).to_be_visible()
    go = box.get_by_role("button", name="Sync with this song")
    expect(go).to_be_disabled()
    # a file of the wrong kind gets its reason next to the slot
    notes = tmp_path / "notes.txt"
    notes.write_text("not a song")
    box.locator("input[type=file]").set_input_files(str(notes))
    expect(box.get_by_text("notes.txt cannot go here")).to_be_visible()
    expect(go).to_be_disabled()
    box.get_by_role("button", name="Remove notes.txt").click()
    box.locator("input[type=file]").set_input_files(str(pair.song_path))
    expect(box.get_by_role("button", name=f"Remove {pair.song_path.name}")).to_be_visible()
    expect(go).to_be_enabled()
    go.click()
    page.wait_for_url(re.compile(r"/task\?task=(?!" + first + ")"), timeout=TIMEOUT_MS)
    second = TASK_URL.search(page.url).group(1)
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    done = su.status(server, second)
    assert done["status"] == "success" and done["rerun_of"] == first, json.dumps(done)[:1000]
    assert done["inputs"]["dance"]["name"] == "class.mp4" and done["inputs"]["bgm"]["name"] == pair.song_path.name
    # the class video was uploaded once: three uploads in all (the class video and the two songs)
    uploads = sorted(p.name for p in (server.data_dir / "uploads").iterdir())
    assert len(uploads) == 3, uploads

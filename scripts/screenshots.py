"""Screenshots of the web UI, full page, at desktop width (1366 px) and phone width (390 px), in
English or Simplified Chinese: the upload page; a job's page while it works, with the sync preview
already there (``working-*``); a finished job's results page (``result-*``); the sync preview itself
after a nudge of +40 ms (``preview-*``: the component alone); a job whose song was not found, with
"Try another song" (``failed-*``); My jobs (``jobs-*``); a finished batch of three group takes with
one song (``batch-*``); the beat explorer (``explore-*``). The browser holds the owner token the
jobs were submitted with (as a browser that started them would, in its local storage), so the pages
show what their owner sees.

Starts a real server (``python -m streamlit run app.py`` on a free port, with a temporary data
dir), runs one job on generated media (a short synthesized dance class and its song) so the
results page has content, and for each width a longer one to catch it working, then drives
Debian's chromium with Playwright.

    python scripts/screenshots.py                  # English, into screenshots/
    python scripts/screenshots.py --lang zh --out /tmp/shots

Prints the path of every PNG written. Needs chromium (``/usr/bin/chromium`` or ``--chromium``),
the ``playwright`` package and, for legible Chinese, a CJK font (Debian: fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the app's package and the tests' server/media helpers

import server_util as su  # noqa: E402
import songgen as sg  # noqa: E402

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}
LOCALES = {"en": "en-US", "zh": "zh-CN"}
MEDIA = {"video_s": 14.0, "song_s": 12.0, "music_at_s": 2.5, "music_len_s": 10.0, "seed": 61,
         "size": (320, 180), "fps": 15.0, "gop": 15}
#: a class long enough to be seen working (its job takes tens of seconds)
LONG_MEDIA = {"video_s": 150.0, "song_s": 140.0, "music_at_s": 4.0, "music_len_s": 140.0, "seed": 62,
              "size": (320, 180), "fps": 15.0, "gop": 15}
PREVIEW = "iframe[title='ui.preview.sync_preview']"
STORAGE_KEY = "beatsync.owner_token"  # (ui/device_component: where the browser keeps its owner token)
TIMEOUT_MS = 60_000


def run_job(server: su.Server, folder: Path, media: dict = MEDIA, *, wait: bool = True, wrong_song: bool = False) -> str:
    """Upload a generated pair through the API and (``wait``) wait for the job to succeed (``wrong_song``:
    with another song, to fail as "song not found"); returns its id."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = sg.write_class_media(folder, **media)
    song_path = pair.song_path
    if wrong_song:
        import mediagen

        song_path = mediagen.write_song(folder / "another_song.wav", sg.song(12.0, sr=44100, tempo_bpm=96.0, seed=977,
                                                                             channels=2), sr=44100)
    dance = su.upload_ok(server, pair.video_path)["file_id"]
    song = su.upload_ok(server, song_path)["file_id"]
    task_id = su.submit_ok(server, dance, song)
    if wait:
        final = su.wait_status(server, task_id, until="failed" if wrong_song else "success", timeout=180)
        print(f"job {task_id}: {final['status']} in {final['finished'] - final['created']:.1f} s", file=sys.stderr)
    return task_id


def run_batch(server: su.Server, folder: Path) -> str:
    """Three group takes of one routine (generated) submitted as a batch through the API, waited for;
    returns the batch's id."""
    takes = su.class_takes(folder, 3)
    dances = [su.upload_ok(server, v)["file_id"] for v in takes.videos]
    song = su.upload_ok(server, takes.song_path)["file_id"]
    sub = su.check(server.post("/api/process", json={"dance_file_ids": dances, "bgm_file_id": song},
                               headers=server.owner_headers()), 202, server=server)
    for task_id in sub["task_ids"]:
        su.wait_status(server, task_id, until="success", timeout=180)
    print(f"batch {sub['batch_id']}: {len(dances)} takes done", file=sys.stderr)
    return sub["batch_id"]


def preview_frame(page):
    """The sync preview's frame, once it can play."""
    page.locator(PREVIEW).wait_for(state="attached", timeout=TIMEOUT_MS)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not (frames := [f for f in page.frames if "sync_preview" in f.url]):
        assert time.monotonic() < deadline, "the preview's frame never loaded"
        page.wait_for_timeout(100)
    frame = frames[0]
    frame.wait_for_function("() => window.beatsyncPreview && window.beatsyncPreview.state().ready",
                            timeout=TIMEOUT_MS)
    return frame


def settle(page, *, running: bool = False) -> None:
    """Wait until the script run is over (``running``: a job's page refreshes itself, so only for a
    moment), the charts are drawn and the videos show a frame."""
    if not running:
        page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')",
                               timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(c => c.querySelector('svg'))",
        timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)  # fonts, plot transitions


#: height of the page's content: Streamlit scrolls inside its own container, not the document
CONTENT_HEIGHT = """() => Math.max(document.documentElement.scrollHeight,
  ...[...document.querySelectorAll('*')].filter(e => /(auto|scroll)/.test(getComputedStyle(e).overflowY))
     .map(e => e.scrollHeight + e.getBoundingClientRect().top))"""


def full_page(page, path: Path, height: int) -> Path:
    """A screenshot of the whole content: the viewport is made as tall as the content first."""
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(12_000, max(height, int(page.evaluate(CONTENT_HEIGHT))))})
    page.wait_for_timeout(600)  # the layout and the charts follow the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": height})
    return path


def shoot(browser, server: su.Server, task_id: str, lang: str, out: Path, media: Path,
          batch_id: str | None = None) -> list[Path]:
    base_url = server.url("")
    written = []
    for name, (width, height) in WIDTHS.items():
        phone = name == "phone"
        ctx = browser.new_context(viewport={"width": width, "height": height}, locale=LOCALES[lang],
                                  is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1)
        ctx.set_default_timeout(TIMEOUT_MS)
        # the browser that started the jobs: their owner token is in its local storage
        ctx.add_init_script(f"window.localStorage.setItem('{STORAGE_KEY}', '{server.owner}');")
        page = ctx.new_page()
        try:
            page.goto(base_url + "/")
            page.locator("[data-testid=stFileUploader]").first.wait_for()
            settle(page)
            written.append(full_page(page, out / f"upload-{lang}-{name}.png", height))

            # a job at work: the preview is there before the videos are
            working = run_job(server, media / f"long-{name}", LONG_MEDIA, wait=False)
            page.goto(f"{base_url}/task?task={working}")
            preview_frame(page)
            status = su.status(server, working)["status"]
            settle(page, running=True)
            written.append(full_page(page, out / f"working-{lang}-{name}.png", height))
            print(f"working-{lang}-{name}: the job was {status} when the preview could play", file=sys.stderr)

            page.goto(f"{base_url}/task?task={task_id}")
            page.locator("video").first.wait_for()
            page.locator("[data-testid=stPlotlyChart]").first.wait_for()
            settle(page)
            written.append(full_page(page, out / f"result-{lang}-{name}.png", height))

            # the preview after a nudge of +40 ms, at a point in the music
            frame = preview_frame(page)
            frame.evaluate("() => { document.getElementById('video').currentTime = 6.0; "
                           "window.beatsyncPreview.setNudge(40); }")
            frame.wait_for_function("() => window.beatsyncPreview.state().nudgeMs === 40", timeout=TIMEOUT_MS)
            page.wait_for_timeout(800)
            frame_el = page.locator(PREVIEW)
            frame_el.scroll_into_view_if_needed()
            path = out / f"preview-{lang}-{name}.png"
            frame_el.screenshot(path=str(path))
            written.append(path)

            # a song that is not in the class video: "Try another song" keeps the class video
            failed = run_job(server, media / f"failed-{name}", wrong_song=True)
            page.goto(f"{base_url}/task?task={failed}")
            page.locator(f".st-key-another-song-{failed}").wait_for()
            settle(page)
            written.append(full_page(page, out / f"failed-{lang}-{name}.png", height))

            page.goto(f"{base_url}/tasks")
            page.locator(f".st-key-job-{failed}").wait_for()
            settle(page)
            written.append(full_page(page, out / f"jobs-{lang}-{name}.png", height))

            if batch_id is not None:
                page.goto(f"{base_url}/batch?batch={batch_id}")
                page.locator("video").first.wait_for()
                settle(page)
                written.append(full_page(page, out / f"batch-{lang}-{name}.png", height))

            page.goto(f"{base_url}/explore")
            page.locator("input[type=file]").set_input_files(str(media / "song.wav"))
            page.locator("[data-testid=stPlotlyChart]").first.wait_for(timeout=TIMEOUT_MS)
            settle(page)
            written.append(full_page(page, out / f"explore-{lang}-{name}.png", height))
        finally:
            ctx.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"), help="output folder (default: screenshots/)")
    ap.add_argument("--lang", choices=sorted(LOCALES), default="en", help="the browser's language (default: en)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                    help="chromium executable (default: /usr/bin/chromium)")
    args = ap.parse_args(argv)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: the playwright package is needed (pip install -r requirements-dev.txt)", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(f"error: chromium not found at {args.chromium}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="beatsync-shots-") as tmp:
        tmp = Path(tmp)
        (tmp / "media").mkdir()
        server = su.Server(tmp / "data", {"BEATSYNC_WORKERS": 1}, name="screenshots", log_dir=tmp)
        try:
            server.start()
            task_id = run_job(server, tmp / "media")
            batch_id = run_batch(server, tmp / "takes")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium,
                                            args=["--no-sandbox", "--disable-dev-shm-usage"])
                try:
                    written = shoot(browser, server, task_id, args.lang, args.out, tmp / "media", batch_id)
                finally:
                    browser.close()
        except Exception:
            print(server.log_hint(), file=sys.stderr)
            raise
        finally:
            server.close()
    for path in written:
        print(path)
    print(f"{len(written)} screenshots in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

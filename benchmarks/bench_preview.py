"""Time to the first audible sync preview after Sync, against the whole job, as a user sees it.

A real server (``streamlit run app.py``, one worker thread, its own data dir) and Debian's chromium
driven by Playwright: the class video and the song are chosen on the upload page (the browser
uploads them before Sync is pressed, as a user's would), then, from the click on **Sync**:

* ``job_started``, ``published``: the job is picked up, and it publishes its first alignment (from
  its status, polled every 50 ms);
* ``preview``: the preview's frame is on the job's page (while the job runs it is there before the
  song is placed, loading the video and the song meanwhile);
* ``placed``: the preview can play and has the song placed;
* ``audible``: the preview's Play was pressed as soon as it could play, and the song is heard (the
  song element plays and its position advances);
* ``result``: the page shows the finished job (the "Result" heading);

and the job's own times from its status (queued, started, finished). The target (issue 13): the
first audible preview within 25 % of the full job time.

    python benchmarks/bench_preview.py --video /tmp/bench-speed/class1080.mp4 --song /tmp/bench-speed/song.ogg
    python benchmarks/bench_preview.py ... --repeat 3 --json /tmp/preview.json

Needs chromium (``/usr/bin/chromium``) and the ``playwright`` package (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import server_util as su  # noqa: E402

TASK_URL = re.compile(r"/task\?task=([0-9a-f-]{36})$")
PREVIEW = "iframe[title='ui.preview.sync_preview']"


def one_run(browser, server: su.Server, video: Path, song: Path, *, timeout_s: float) -> dict:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.set_default_timeout(timeout_s * 1000)
    page = ctx.new_page()
    try:
        page.goto(server.url("/"))
        inputs = page.locator("input[type=file]")
        inputs.nth(0).set_input_files(str(video))
        page.get_by_role("button", name=f"Remove {video.name}").wait_for()
        inputs.nth(1).set_input_files(str(song))
        page.get_by_role("button", name=f"Remove {song.name}").wait_for()
        sync = page.get_by_role("button", name="Sync", exact=True)
        sync.wait_for()
        t0 = time.monotonic()
        sync.click()
        page.wait_for_url(TASK_URL)
        task_id = TASK_URL.search(page.url).group(1)
        t_page = time.monotonic() - t0
        seen: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:  # when the job is picked up and when it publishes its first alignment
            while not stop.is_set():
                st = su.status(server, task_id)
                if st["status"] != "pending":
                    seen.setdefault("started", time.monotonic() - t0)
                if st["preview"]["quick"] is not None or st["preview"]["variants"]:
                    seen.setdefault("published", time.monotonic() - t0)
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        page.locator(PREVIEW).wait_for(state="attached")
        t_preview = time.monotonic() - t0
        status_then = su.status(server, task_id)
        while not (frames := [f for f in page.frames if "sync_preview" in f.url]):
            page.wait_for_timeout(50)  # (the frame element is there a moment before its document)
        frame = frames[0]
        # Play once the song is placed (the player may be there, loading, before that)
        frame.wait_for_function("() => window.beatsyncPreview && window.beatsyncPreview.state().ready "
                                "&& window.beatsyncPreview.state().placed", polling=50)
        t_placed = time.monotonic() - t0
        frame.get_by_role("button", name="▶ Play").click()
        frame.wait_for_function("() => { const s = window.beatsyncPreview.state(); "
                                "return !s.audioPaused && s.songTime !== null; }", polling=20)
        t_playing = time.monotonic() - t0
        a0 = frame.evaluate("() => window.beatsyncPreview.state().audioTime")
        frame.wait_for_function(f"() => window.beatsyncPreview.state().audioTime > {a0} + 0.05", polling=20)
        t_audible = time.monotonic() - t0
        stop.set()
        page.get_by_role("heading", name="Result", exact=True).wait_for()
        t_result = time.monotonic() - t0
        final = su.status(server, task_id)
        return {"task_id": task_id, "page_s": round(t_page, 2), "job_started_s": round(seen.get("started", -1), 2),
                "published_s": round(seen.get("published", -1), 2), "preview_s": round(t_preview, 2),
                "placed_s": round(t_placed, 2), "playing_s": round(t_playing, 2),
                "audible_s": round(t_audible, 2), "result_s": round(t_result, 2),
                "ratio": round(t_audible / t_result, 3), "status_at_preview": status_then["status"],
                "stage_at_preview": status_then["stage"],
                "preview_had": "variants" if status_then["preview"]["variants"] else "quick",
                "job_queued_to_finished_s": round(final["finished"] - final["created"], 2),
                "job_run_s": round(final["finished"] - final["started"], 2), "pipeline_s": final["seconds"]}
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=Path("/tmp/bench-speed/class1080.mp4"))
    ap.add_argument("--song", type=Path, default=Path("/tmp/bench-speed/song.ogg"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per step")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    runs = []
    with tempfile.TemporaryDirectory(prefix="beatsync-bench-preview-") as tmp:
        server = su.Server(Path(tmp) / "data", {"BEATSYNC_WORKERS": 1}, name="bench-preview", log_dir=Path(tmp))
        try:
            server.start()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium,
                                            args=["--no-sandbox", "--disable-dev-shm-usage"])
                try:
                    for i in range(args.repeat):
                        r = one_run(browser, server, args.video, args.song, timeout_s=args.timeout)
                        runs.append(r)
                        print(f"run {i + 1}: " + json.dumps(r), flush=True)
                finally:
                    browser.close()
        except Exception:
            print(server.log_hint(), file=sys.stderr)
            raise
        finally:
            server.close()
    med = {k: statistics.median(r[k] for r in runs) for k in ("page_s", "preview_s", "audible_s", "result_s",
                                                              "ratio", "job_run_s")}
    print(f"median of {len(runs)}: first audible preview {med['audible_s']:.1f} s after Sync, result "
          f"{med['result_s']:.1f} s: {med['ratio']:.0%} of the full job (target <= 25 %)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med}, indent=1))
    return 0 if med["ratio"] <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The Streamlit pages, run in-process with AppTest (real script runs, real job service and workers).

Every test drives ``app.py`` (the navigation) and its pages like a browser session would: widgets
by key, clicks, page switches, query params. The job service is the process-wide one
(`beatsync.service.get_service`, cached by `ui.state.service`); the fixtures below give it a fresh
data directory (and, for the tests that need jobs to stay pending, no workers), so the workers
run as threads of this test process and the jobs as its child processes.

Media: a 12-s class video (128x96) with the song heard from 2.5 s, its 10-s song, and an unrelated
song (another seed) for the failure path; one job takes a few seconds.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import songgen as sg
from streamlit.testing.v1 import AppTest

import beatsync.service as bs
from beatsync import media, messages
from beatsync.errors import BeatSyncError
from beatsync.owner import new_token
from beatsync.tasks import FINISHED
from ui import i18n
from ui import state as ui_state

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = "views"  # the folder of the page scripts, as app.py's st.Page entries name it
RUN_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 120.0
SHORT = {"video_s": 12.0, "song_s": 10.0, "music_at_s": 2.5, "music_len_s": 8.0, "seed": 61,
         "size": (128, 96), "fps": 15.0, "gop": 15}
UNRELATED = {"seed": 64, "tempo_bpm": 96.0}  # another song, at another tempo
#: the owner token of "this browser": the jobs the tests submit through the service are owned by it,
#: and `open_task` opens them in a session holding it (``owner=None``: a session that got the link)
OWNER = new_token()


def en(key: str, **kw) -> str:
    text = i18n.STRINGS[key][0]
    return text.format(**kw) if kw else text


def zh(key: str, **kw) -> str:
    text = i18n.STRINGS[key][1]
    return text.format(**kw) if kw else text


# --------------------------------------------------------------------------------------------
# the job service: a fresh one per module (or per test, for the no-worker tests)
# --------------------------------------------------------------------------------------------


def _drop_service() -> None:
    """Stop the process-wide service's workers and forget it (and the pages' cached handle)."""
    old = bs._service
    if old is not None:
        old.stop_workers()
    bs._service = None
    ui_state.service.clear()


@contextlib.contextmanager
def fresh_service(data_dir: Path, *, workers: int) -> Iterator[bs.BeatSync]:
    """A new process-wide service on ``data_dir`` with ``workers`` worker threads (started by the
    pages' first run); the previous service is stopped first and put back afterwards."""
    previous = bs._service
    _drop_service()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEATSYNC_DATA_DIR", str(data_dir))
        mp.setenv("BEATSYNC_WORKERS", str(workers))
        mp.setenv("BEATSYNC_MIN_FREE_MB", "1")
        mp.delenv("BEATSYNC_QUOTA_MB", raising=False)
        svc = bs.get_service()
        assert svc.store.root == data_dir, "the service must be created from this test's environment"
        try:
            yield svc
        finally:
            _drop_service()
    if previous is not None:  # the module's service again (its workers restart on the next page run)
        bs._service = previous
        previous.start_workers()


@pytest.fixture(scope="module")
def svc(tmp_path_factory) -> Iterator[bs.BeatSync]:
    """This module's job service: its own data dir, one worker thread."""
    with fresh_service(tmp_path_factory.mktemp("app_data"), workers=1) as s:
        s.start_workers()
        yield s


@pytest.fixture
def idle_svc(svc, tmp_path) -> Iterator[bs.BeatSync]:
    """A service without workers (jobs stay pending) on its own data dir, for this test only."""
    with fresh_service(tmp_path / "idle_data", workers=0) as s:
        yield s


# --------------------------------------------------------------------------------------------
# media and prepared jobs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> sg.ClassMedia:
    return sg.write_class_media(tmp_path_factory.mktemp("app_media"), **SHORT)


@pytest.fixture(scope="module")
def unrelated_song(pair) -> Path:
    import mediagen

    y = sg.song(SHORT["song_s"], sr=44100, channels=2, **UNRELATED)
    return mediagen.write_song(pair.song_path.parent / "other.wav", y, sr=44100)


def status(svc: bs.BeatSync, task_id: str) -> dict:
    """The task's status object as a client reads it (JSON data; outputs are file paths here)."""
    return svc.status(task_id).model_dump(mode="json")


def wait_final(svc: bs.BeatSync, task_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(svc, task_id)
        if s["status"] in FINISHED:
            return s
        assert time.monotonic() < deadline, f"task {task_id} not finished within {timeout:.0f} s: {s}"
        time.sleep(0.2)


def submit_files(svc: bs.BeatSync, dance: Path, song: Path, options: dict | None = None) -> str:
    with open(dance, "rb") as d, open(song, "rb") as b:
        dance_id = svc.upload_file(dance.name, d, owner=OWNER).file_id
        song_id = svc.upload_file(song.name, b, owner=OWNER).file_id
    return svc.submit(dance_id, song_id, options, owner=OWNER).task_id


@pytest.fixture(scope="module")
def done_task(svc, pair) -> str:
    """A job (submitted through the service) that succeeded."""
    tid = submit_files(svc, pair.video_path, pair.song_path)
    s = wait_final(svc, tid)
    assert s["status"] == "success", s
    return tid


@pytest.fixture(scope="module")
def failed_task(svc, pair, unrelated_song) -> str:
    """A job that failed: the song is not the one played in the class."""
    tid = submit_files(svc, pair.video_path, unrelated_song)
    s = wait_final(svc, tid)
    assert s["status"] == "failed" and s["error_code"] == "song_not_found", s
    return tid


# --------------------------------------------------------------------------------------------
# AppTest helpers
# --------------------------------------------------------------------------------------------


def new_app(*, locale: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    if locale:
        at.context = {"locale": locale}
    return at


def ok(at: AppTest) -> AppTest:
    """Assert the last run raised nothing; returns ``at``."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_task(task_id: str, *, lang: str | None = None, owner: str | None = OWNER) -> AppTest:
    """A new session on ``/task?task=<task_id>`` (in ``lang``: what the sidebar switch sets), holding the
    owner token ``owner`` (None: a session of its own, as when a link is shared)."""
    at = ok(new_app().run())
    if owner is not None:
        at.session_state[ui_state.OWNER_KEY] = owner
    if lang:
        at.session_state["lang"] = lang
    at.switch_page(f"{PAGES}/task.py")
    at.query_params["task"] = task_id
    return ok(at.run())


def query_task(at: AppTest) -> str | None:
    v = at.query_params.get("task")
    return v[0] if isinstance(v, list) else v


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def all_text(at: AppTest) -> str:
    """The text of every text-like element of the last run (titles, markdown, alerts, captions...)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [b.label for b in at.button]
    parts += [m.label for m in at.metric]
    return "\n".join(parts)


def upload(at: AppTest, index: int, path: Path, mime: str) -> None:
    at.file_uploader[index].upload(path.name, path.read_bytes(), mime)


def sync_pair(pair) -> AppTest:
    """A new app session that chose the pair's class video and song and pressed Sync."""
    at = ok(new_app().run())
    upload(at, 0, pair.video_path, "video/mp4")
    upload(at, 1, pair.song_path, "audio/wav")
    ok(at.run())
    return ok(at.button(key="sync").click().run())


def poll_page(at: AppTest, svc: bs.BeatSync, task_id: str, *, timeout: float = JOB_TIMEOUT_S,
              seen: list | None = None) -> dict:
    """Rerun the page (as its live fragment would) until the task is finished; every run is checked
    for exceptions and, with ``seen``, recorded as ``(status before the run, status after it,
    progress values shown)``."""
    deadline = time.monotonic() + timeout
    while True:
        before = status(svc, task_id)
        ok(at.run())
        after = status(svc, task_id)
        if seen is not None:
            seen.append((before, after, [p.value for p in at.progress]))
        if before["status"] in FINISHED:
            return before
        assert time.monotonic() < deadline, f"task {task_id} not finished within {timeout:.0f} s: {after}"
        time.sleep(0.3)


def plotly_charts(at: AppTest) -> list:
    return list(at.get("plotly_chart"))


# --------------------------------------------------------------------------------------------
# upload page
# --------------------------------------------------------------------------------------------


def test_upload_page_renders(svc):
    at = ok(new_app().run())
    assert texts(at.title) == [en("upload.title")]
    uploaders = at.file_uploader
    assert [u.label for u in uploaders] == [en("upload.video"), en("upload.song")]
    # the slots take any file (a wrong one is told why under its slot); their help says what fits
    assert "mp4" in uploaders[0].help and "wav" in uploaders[1].help
    sync = at.button(key="sync")
    assert sync.label == en("upload.sync") and sync.disabled
    captions = texts(at.caption)
    assert en("upload.limit", mb=500) in captions  # .streamlit/config.toml server.maxUploadSize
    assert en("upload.need_both") in captions
    # the options, with their defaults
    assert at.toggle(key="trim").value is True
    assert at.slider(key="margin").value == 1.0
    assert at.radio(key="fill").value == "silence"
    # the navigation's language switch
    assert at.selectbox(key="lang").value == "en"
    assert [s.key for s in at.sidebar.selectbox] == ["lang"]


def test_sync_is_enabled_only_with_both_files(svc, pair):
    at = ok(new_app().run())
    upload(at, 0, pair.video_path, "video/mp4")
    ok(at.run())
    assert at.button(key="sync").disabled, "only the video is chosen"
    assert en("upload.need_both") in texts(at.caption)
    upload(at, 1, pair.song_path, "audio/wav")
    ok(at.run())
    assert not at.button(key="sync").disabled
    assert en("upload.need_both") not in texts(at.caption)


def test_upload_submit_progress_and_results(svc, pair):
    at = sync_pair(pair)

    # the switch to the job page, with the task in the URL
    tid = query_task(at)
    assert tid, at.query_params
    assert uuid.UUID(tid).version == 4
    first = status(svc, tid)
    # the heading says what is happening: working, then the result
    assert texts(at.title) == [en("task.title" if first["status"] == "success" else "task.title_working")]
    assert en("task.files", dance="class.mp4", bgm="song.wav") in texts(at.markdown)
    assert en("task.id", id=tid) in texts(at.caption)
    if first["status"] not in FINISHED:  # a job takes seconds: the first run shows it queued or running
        assert len(at.progress) == 1
        assert at.button(key=f"cancel-{tid}").label == en("task.cancel")
        # and how long it should take: its run time while it waits, the time left once it runs
        estimate = "takes about" if first["status"] == "pending" else " left"
        assert any(estimate in c or en("task.eta_soon") in c for c in texts(at.caption)), texts(at.caption)

    seen: list = []
    s = poll_page(at, svc, tid, seen=seen)
    assert s["status"] == "success", s
    statuses = [after for _before, after, _shown in seen]
    order = {"pending": 0, "processing": 1, "success": 2}
    assert [order[x["status"]] for x in statuses] == sorted(order[x["status"]] for x in statuses), statuses
    assert "processing" in [x["status"] for x in statuses], statuses
    # a run that ended before the job did shows a progress bar, and the bar never goes back
    running = [shown for _before, after, shown in seen if after["status"] not in FINISHED]
    assert running and all(len(bar) == 1 for bar in running), seen
    values = [bar[0] for bar in running]
    assert values == sorted(values) and values[-1] > 0, values

    # the results: one recommended (the methods agree), the other under "compare methods"
    ok(at.run())
    assert not at.progress, "no progress bar once the job is done"
    assert texts(at.title) == [en("task.title")]
    headers = texts(at.header)
    assert headers == [en("task.your_video"), en("preview.title"), en("task.plot")], headers
    assert [e.label for e in at.expander][:1] == [en("task.compare")]
    # where the music starts, as a fact; the exact numbers in the result's details
    assert "- " + en("fact.position_start", video="0:03") in texts(at.markdown), texts(at.markdown)
    details = [c for c in texts(at.caption) if c.startswith(("modular: confidence", "v2: confidence"))]
    assert len(details) == 2, texts(at.caption)
    for line in details:
        assert f"video {SHORT['music_at_s']:.2f}" in line, line  # "exactly: video 2.50x s = song 0.00x s"
    compare = " ".join(texts(at.markdown))
    assert "Both methods found" in compare, compare  # the same sync (within n ms) or the very same video
    assert len(plotly_charts(at)) >= 1
    downloads = [(d.label, d.key) for d in at.get("download_button")]
    if s["variants"]["v2"]["same_as"]:  # one video: the second is not shown again
        assert downloads == [(en("task.download", name="class_modular.mp4"), f"dl-{tid}-modular")]
    else:
        assert downloads == [(en("task.download", name=f"class_{v}.mp4"), f"dl-{tid}-{v}") for v in ("modular", "v2")]
    assert len(at.get("video")) == len(downloads)
    assert at.button(key=f"render-{tid}-modular").disabled  # nothing to render before a correction
    assert not at.error and not at.warning, (texts(at.error), texts(at.warning))
    # the beat grid in words
    assert any(m.startswith("Beat grid of modular:") for m in texts(at.markdown)), texts(at.markdown)

    for v in ("modular", "v2"):
        out = Path(s[f"{v}_output"])
        assert out.is_relative_to(svc.store.root), "the job ran on this module's data dir"
        info = media.probe(out)
        assert info.video is not None and info.audio is not None

    # the session's jobs page lists it, finished
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert [p.label for p in at.page_link] == ["class.mp4"]
    assert any(m.startswith(f"**{en('status.success')}**") for m in texts(at.markdown)), texts(at.markdown)


def test_options_reach_the_task(idle_svc, pair):
    at = ok(new_app().run())
    upload(at, 0, pair.video_path, "video/mp4")
    upload(at, 1, pair.song_path, "audio/wav")
    at.slider(key="margin").set_value(2.5)
    ok(at.run())
    at.toggle(key="trim").set_value(False)
    at.radio(key="fill").set_value("original")
    ok(at.run())
    assert at.slider(key="margin").disabled, "the margin only matters when cutting"
    ok(at.button(key="sync").click().run())
    tid = query_task(at)
    s = status(idle_svc, tid)
    assert s["status"] == "pending"
    opts = s["options"]
    assert opts["trim"] is False and opts["fill"] == "original" and opts["margin_s"] == 2.5, opts

    # and with cutting on: the margin chosen on the page
    at = ok(new_app().run())
    upload(at, 0, pair.video_path, "video/mp4")
    upload(at, 1, pair.song_path, "audio/wav")
    at.slider(key="margin").set_value(4.0)
    ok(at.run())
    ok(at.button(key="sync").click().run())
    opts = status(idle_svc, query_task(at))["options"]
    assert opts["trim"] is True and opts["margin_s"] == 4.0 and opts["fill"] == "silence", opts


def test_a_file_that_cannot_be_used_says_why_under_its_slot(svc, pair, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video\n" * 100)
    at = ok(new_app().run())
    upload(at, 0, bad, "video/mp4")
    upload(at, 1, pair.song_path, "audio/wav")
    ok(at.run())
    # at once, before Sync: the reason, in words that name no internal tool; Sync waits for a usable file
    (err,) = texts(at.error)
    assert "broken.mp4" in err and "Traceback" not in err and "ffmpeg" not in err.lower(), err
    assert at.button(key="sync").disabled and en("upload.fix_files") in texts(at.caption)
    assert query_task(at) is None, "no job is created for a file that is not media"
    # a song in the class video's slot is told where it goes, in the reader's language
    at.session_state["lang"] = "zh"
    upload(at, 0, pair.song_path, "audio/wav")
    ok(at.run())
    (err,) = texts(at.error)
    assert err == zh("upload.song_in_video_slot", name="song.wav", types="mp4, mov, m4v, mkv, webm, avi"), err
    # the right file: no reason, Sync is enabled
    upload(at, 0, pair.video_path, "video/mp4")
    ok(at.run())
    assert not at.error and not at.button(key="sync").disabled


# --------------------------------------------------------------------------------------------
# job page: failure, retry, unknown ids, cancel, corrections
# --------------------------------------------------------------------------------------------


def test_several_class_videos_make_a_batch_and_open_its_page(idle_svc, pair):
    """Two class videos and one song: one job each, queued together as a batch, and the batch's page
    (the jobs stay pending here: no worker)."""
    at = ok(new_app().run())
    at.file_uploader[0].set_value([("group1.mp4", pair.video_path.read_bytes(), "video/mp4"),
                                   ("group2.mp4", pair.video_path.read_bytes(), "video/mp4")])
    upload(at, 1, pair.song_path, "audio/wav")
    ok(at.run())
    assert en("upload.several", n=2) in texts(at.caption)
    ok(at.button(key="sync").click().run())
    batch_id = at.query_params.get("batch")
    batch_id = batch_id[0] if isinstance(batch_id, list) else batch_id
    assert batch_id and uuid.UUID(batch_id).version == 4, at.query_params
    b = idle_svc.batch_status(batch_id)
    assert [s.inputs["dance"].name for s in b.tasks] == ["group1.mp4", "group2.mp4"]
    assert {s.status for s in b.tasks} == {"pending"} and b.song == "song.wav"
    # the page: its state, each take linked to its own job page, the ZIP to come
    assert texts(at.title) == [en("batch.title_working")]
    assert en("batch.song", n=2, song="song.wav") in texts(at.markdown)
    assert en("batch.zip_none") in texts(at.caption)
    links = {pl.label: pl for pl in at.get("page_link")}
    assert en("batch.take", n=1, name="group1.mp4") in links and en("batch.take", n=2, name="group2.mp4") in links
    # this session remembers the jobs and the batch, and controls them
    assert at.session_state["my_batches"] == [batch_id]
    assert set(b.task_ids) <= set(at.session_state["my_tasks"])
    assert [btn.label for btn in at.button if btn.key and btn.key.startswith("cancel-")] == [en("task.cancel")] * 2
    # in Chinese; and the page without a batch lists this session's
    at.session_state["lang"] = "zh"
    ok(at.run())
    assert texts(at.title) == [zh("batch.title_working")]
    at.query_params.clear()
    ok(at.run())
    assert texts(at.title) == [zh("batch.title")]
    assert any(pl.label.startswith("song.wav · 2 组") for pl in at.get("page_link")), [
        pl.label for pl in at.get("page_link")]


def test_a_finished_batch_shows_each_result_and_a_zip(svc, pair):
    """A finished batch of two takes: each take's recommended result, and (no API served here) the ZIP
    of all results as Streamlit's own download button, made from the same entries as the API's."""
    import io
    import zipfile

    from beatsync.zipstream import stream_zip

    with open(pair.video_path, "rb") as a, open(pair.video_path, "rb") as b2, open(pair.song_path, "rb") as song:
        ids = [svc.upload_file(name, f, owner=OWNER).file_id for name, f in (("group1.mp4", a), ("group2.mp4", b2))]
        bgm = svc.upload_file("song.wav", song, owner=OWNER).file_id
    batch = svc.submit_batch(ids, bgm, {"engines": ["modular"]}, owner=OWNER)
    for tid in batch.task_ids:
        assert wait_final(svc, tid)["status"] == "success"
    at = ok(new_app().run())
    at.session_state[ui_state.OWNER_KEY] = OWNER
    at.switch_page(f"{PAGES}/batch.py")
    at.query_params["batch"] = batch.batch_id
    ok(at.run())
    assert texts(at.title) == [en("batch.title")]
    assert en("batch.counts", success=2, processing=0, pending=0, failed=0) in texts(at.markdown)
    assert not at.progress and not [btn for btn in at.button if (btn.key or "").startswith("cancel-")]
    downloads = [(d.label, d.key) for d in at.get("download_button")]
    assert downloads == [(en("batch.zip", n=2), f"zip-{batch.batch_id}"),
                         (en("task.download", name="group1_modular.mp4"), f"dl-{batch.task_ids[0]}-modular"),
                         (en("task.download", name="group2_modular.mp4"), f"dl-{batch.task_ids[1]}-modular")]
    assert len(at.get("video")) == 2
    entries, name = svc.batch_zip(batch.batch_id)
    assert name == "song_takes.zip" and [n for n, _ in entries] == ["group1_modular.mp4", "group2_modular.mp4"]
    zf = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(entries))))
    assert zf.namelist() == ["group1_modular.mp4", "group2_modular.mp4"]
    assert zf.read("group2_modular.mp4") == Path(svc.output(batch.task_ids[1], "modular")[0]).read_bytes()


@pytest.mark.parametrize("batch_id", [str(uuid.uuid4()), "not-an-id"])
def test_unknown_or_malformed_batch_id_shows_a_friendly_warning(svc, batch_id):
    at = ok(new_app().run())
    at.switch_page(f"{PAGES}/batch.py")
    at.query_params["batch"] = batch_id
    ok(at.run())
    assert texts(at.title) == [en("batch.error_title")]
    assert at.warning, all_text(at)


def test_failed_job_offers_another_song_keeping_the_class_video(svc, failed_task, pair):
    at = open_task(failed_task)
    s = status(svc, failed_task)
    assert texts(at.title) == [en("task.title_failed")]
    (err,) = texts(at.error)
    assert err.startswith(f"**{en('task.failed')}**: ") and s["error"] in err, err
    assert en("task.try", hint=messages.HINTS["song_not_found"][0]) in texts(at.caption)
    assert not at.progress and "modular" not in texts(at.subheader)
    # running the same job again would fail again: the way on is another song, for the same class video
    assert not [b for b in at.button if b.key == f"retry-{failed_task}"]
    assert en("task.another_song") in texts(at.header)
    assert en("task.another_song_help", name="class.mp4") in texts(at.caption)
    assert at.button(key=f"another-go-{failed_task}").disabled
    at.file_uploader(key=f"another-{failed_task}").upload(pair.song_path.name, pair.song_path.read_bytes(),
                                                          "audio/wav")
    ok(at.run())
    ok(at.button(key=f"another-go-{failed_task}").click().run())
    new = query_task(at)
    assert new and new != failed_task
    s2 = status(svc, new)
    assert s2["rerun_of"] == failed_task
    assert s2["inputs"]["bgm"]["name"] == pair.song_path.name and s2["inputs"]["dance"]["name"] == "class.mp4"
    assert texts(at.title) == [en("task.title_working")]
    assert en("task.id", id=new) in texts(at.caption)
    with contextlib.suppress(BeatSyncError):  # no need to run it: free the worker for the next tests
        svc.cancel(new, owner=OWNER, wait_s=10.0)


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "../x", "%2e%2e%2f", "not-an-id"],
                         ids=["unknown", "dotdot", "encoded", "word"])
def test_unknown_or_malformed_task_id_shows_a_friendly_warning(svc, task_id):
    at = open_task(task_id)
    assert texts(at.title) == [en("error.title")]
    (warn,) = texts(at.warning)
    assert "Traceback" not in warn and len(warn) > 10
    if task_id.count("-") == 4:
        assert warn.startswith("No job has this id"), warn
    else:
        assert "not a valid task id" in warn, warn
    assert not at.progress and not at.button
    assert len(at.page_link) == 2  # the way out: upload page, my jobs


def test_job_page_without_an_id(svc):
    at = ok(new_app().run())
    ok(at.switch_page(f"{PAGES}/task.py").run())
    assert texts(at.title) == [en("task.title")]
    assert texts(at.info) == [en("task.none")]
    at.text_input(key="open_id").input(str(uuid.uuid4()))
    ok(at.run())
    assert texts(at.title) == [en("error.title")]


def test_cancel_a_pending_job_from_its_page(idle_svc, pair):
    at = sync_pair(pair)
    tid = query_task(at)
    assert status(idle_svc, tid)["status"] == "pending"
    (bar,) = at.progress
    assert en("task.pending") in bar.proto.text
    assert en("task.queue", n=1) in " ".join(texts(at.caption))
    ok(at.run())  # still waiting: nobody takes it
    assert status(idle_svc, tid)["status"] == "pending"

    ok(at.button(key=f"cancel-{tid}").click().run())
    s = status(idle_svc, tid)
    assert s["status"] == "failed" and s["error_code"] == "cancelled", s
    ok(at.run())
    assert texts(at.info) == [en("task.cancelled")]
    assert not at.progress and not at.error
    assert at.button(key=f"retry-{tid}").label == en("task.retry")

    # the jobs page shows it as failed, without a cancel button
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert f"**{en('status.failed')}**" in " ".join(texts(at.markdown))
    assert not [b for b in at.button if b.key.startswith("cancel-")]


def test_a_finished_job_opened_from_a_link_has_no_controls(svc, done_task, failed_task):
    at = open_task(done_task, owner=None)
    assert en("task.read_only") in texts(at.caption)
    assert len(at.get("download_button")) == 2 and len(plotly_charts(at)) >= 1  # results and grid stay
    assert not [b for b in at.button if b.key.startswith(("render-", "retry-", "cancel-"))]
    at = open_task(failed_task, owner=None)
    assert not [b for b in at.button if b.key.startswith("retry-")]


def test_a_shared_link_is_read_only(idle_svc, svc, pair):
    """A session that did not submit the job sees it but gets no cancel, retry or render button; the
    service refuses it too."""
    tid = submit_files(idle_svc, pair.video_path, pair.song_path)
    at = open_task(tid, owner=None)
    assert en("task.read_only") in texts(at.caption)
    assert len(at.progress) == 1 and not [b for b in at.button if b.key.startswith("cancel-")]
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert not [b for b in at.button if b.key.startswith("cancel-")]
    stranger = at.session_state[ui_state.OWNER_KEY]
    assert stranger != OWNER
    with pytest.raises(BeatSyncError) as e:
        idle_svc.cancel(tid, owner=stranger)
    assert e.value.code == "not_owner"
    with pytest.raises(BeatSyncError) as e:
        idle_svc.cancel(tid)
    assert e.value.code == "owner_required"
    assert status(idle_svc, tid)["status"] == "pending"
    # the owner's session has the button
    at = open_task(tid)
    assert en("task.read_only") not in texts(at.caption)
    ok(at.button(key=f"cancel-{tid}").click().run())
    assert status(idle_svc, tid)["error_code"] == "cancelled"


def test_cancel_from_the_jobs_page(idle_svc, pair):
    tid = submit_files(idle_svc, pair.video_path, pair.song_path)
    at = open_task(tid)
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert f"**{en('status.pending')}**" in " ".join(texts(at.markdown))
    assert len(at.progress) == 1
    ok(at.button(key=f"cancel-{tid}").click().run())
    assert status(idle_svc, tid)["error_code"] == "cancelled"
    ok(at.run())
    assert f"**{en('status.failed')}**" in " ".join(texts(at.markdown))
    assert not at.progress


def test_correction_creates_a_follow_up_task_shown_on_the_same_page(svc, done_task):
    at = open_task(done_task)
    render = at.button(key=f"render-{done_task}-modular")
    assert render.disabled
    at.number_input(key=f"nudge-{done_task}-modular").set_value(40)
    ok(at.run())
    render = at.button(key=f"render-{done_task}-modular")
    assert not render.disabled
    ok(render.click().run())

    assert query_task(at) == done_task, "the correction stays on the original job's page"
    (cid,) = status(svc, done_task)["corrections"]
    c = status(svc, cid)
    assert c["kind"] == "render" and c["correction"]["variant"] == "modular" and c["correction"]["nudge_ms"] == 40
    if c["status"] not in FINISHED:  # its progress is shown where it was asked for: in the correction panel
        (panel,) = [e for e in at.expander if e.label == en("task.correct")]
        assert len(panel.get("progress")) == 1, "the correction's progress is not in the panel"
    s = poll_page(at, svc, cid)
    assert s["status"] == "success", s
    ok(at.run())
    assert en("task.corrections") in texts(at.header)
    text = all_text(at)
    assert en("task.correction_of", variant="modular", what="Moved +40 ms by hand.") in text, text
    downloads = [d.label for d in at.get("download_button")]
    assert en("task.download", name="class_modular_+40ms.mp4") in downloads, downloads  # says what it did
    original = status(svc, done_task)["variants"]["modular"]["alignment"]["offset_s"]
    assert s["variants"]["modular"]["alignment"]["offset_s"] == pytest.approx(original + 0.040, abs=1e-6)
    corrected = [c for c in texts(at.caption) if c.startswith("modular: confidence")]
    assert any(f"video {s['variants']['modular']['alignment']['segments'][0]['dance_start_s']:.3f} s" in c
               for c in corrected), corrected
    info = media.probe(s["modular_output"])
    assert info.video is not None and info.audio is not None
    # the correction's own page links back to the original job
    at2 = open_task(cid)
    assert [p.label for p in at2.page_link] == [en("task.source")]
    assert en("task.download", name="class_modular_+40ms.mp4") in [d.label for d in at2.get("download_button")]


# --------------------------------------------------------------------------------------------
# jobs page and explorer
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def record_changed(svc, task_id: str, change) -> Iterator[None]:
    """The task's stored record changed by ``change(record)`` for a while (restored afterwards)."""
    import copy

    saved = copy.deepcopy(svc.store.get(task_id))
    svc.store.update(task_id, change)
    try:
        yield
    finally:
        svc.store.update(task_id, lambda rec: rec.update(saved))


def test_each_variant_shows_the_part_it_kept(svc, done_task):
    """Variants trimmed differently each show their own kept part (and the beat grid draws the chosen
    variant's); the same trims are shown once for the job; a same_result notice is news, not a warning."""
    def trim(a, b, m0, m1):
        return {"start_s": a, "end_s": b, "music_start_s": m0, "music_end_s": m1, "black_head_s": 0.0,
                "black_tail_s": 12.0}

    own = {"modular": trim(1.5, 11.5, 2.5, 10.5), "v2": trim(1.5, 9.0, 2.5, 8.0)}

    def differ(rec):
        for v, tr in own.items():
            rec["variants"][v]["trim"] = tr
        rec["trim"] = trim(1.5, 11.5, 2.5, 10.5)

    with record_changed(svc, done_task, differ):
        captions = texts(open_task(done_task).caption)
        for tr in own.values():
            kept = en("task.kept", a=tr["start_s"], b=tr["end_s"], m0=tr["music_start_s"], m1=tr["music_end_s"])
            assert captions.count(kept) == 1, captions

    def same(rec):
        for v in own:
            rec["variants"][v]["trim"] = own["modular"]
        rec["trim"] = own["modular"]
        rec["variants"]["v2"]["same_as"] = "modular"
        rec["notices"] = [*rec.get("notices", []), {"code": "same_result",
                                                     "params": {"engine": "v2", "same_as": "modular"}}]

    with record_changed(svc, done_task, same):
        at = open_task(done_task)
        kept = en("task.kept", a=1.5, b=11.5, m0=2.5, m1=10.5)
        assert texts(at.caption).count(kept) == 1, texts(at.caption)
        # one video: said once, as news (not a warning), and not shown twice
        assert en("task.same_file") in texts(at.markdown) and not at.warning
        mine = [d.key for d in at.get("download_button") if d.key.startswith(f"dl-{done_task}")]
        assert mine == [f"dl-{done_task}-modular"], mine  # (not the corrections made of it)


def test_tasks_page_lists_this_sessions_jobs(svc, done_task, failed_task):
    at = ok(new_app().run())
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert texts(at.title) == [en("tasks.title")]
    assert texts(at.info) == [en("tasks.none")]

    # open both jobs in this session: they are remembered
    for tid in (done_task, failed_task):
        ok(at.switch_page(f"{PAGES}/task.py").run())
        at.query_params["task"] = tid
        ok(at.run())
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert not at.info
    links = at.page_link
    assert [p.label for p in links] == ["class.mp4", "class.mp4"]
    statuses = [m for m in texts(at.markdown) if m.startswith("**")]
    assert statuses[0].startswith(f"**{en('status.failed')}**"), statuses  # the newest first
    assert statuses[1].startswith(f"**{en('status.success')}**"), statuses
    assert "Done" not in statuses[1] and "took" in statuses[1], statuses  # not "done · Done"
    captions = " ".join(texts(at.caption))
    assert f"`{done_task[:8]}`" in captions and f"`{failed_task[:8]}`" in captions
    assert not at.button  # nothing to cancel


def test_explorer_shows_tempo_and_beats(svc, pair):
    at = ok(new_app().run())
    ok(at.switch_page(f"{PAGES}/explore.py").run())
    assert texts(at.title) == [en("explore.title")]
    assert not at.metric and not plotly_charts(at)
    at.file_uploader(key="explore_file").upload("song.wav", pair.song_path.read_bytes(), "audio/wav")
    ok(at.run())
    # the analysis runs as a job (kind beats) in a worker: the page follows it, then draws its result
    tid = query_task(at)
    assert tid and status(svc, tid)["kind"] == "beats"
    assert texts(at.header) == ["song.wav"]
    seen: list = []
    s = poll_page(at, svc, tid, seen=seen)
    assert s["status"] == "success" and s["beats"]["duration_s"] == pytest.approx(SHORT["song_s"], abs=0.05), s
    running = [shown for _before, after, shown in seen if after["status"] not in FINISHED]
    assert all(len(bar) == 1 for bar in running), seen  # its progress while it runs
    ok(at.run())
    assert texts(at.header) == ["song.wav"]
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {en("explore.tempo"), en("explore.count"), en("explore.duration")}, metrics
    bpm = float(metrics[en("explore.tempo")].split()[0])
    assert bpm == pytest.approx(112.0, rel=0.03), metrics  # songgen's default tempo
    assert int(metrics[en("explore.count")]) >= 12
    assert metrics[en("explore.duration")] == f"{SHORT['song_s']:.1f} s"
    assert len(plotly_charts(at)) == 1
    assert not at.warning and not at.error
    ok(at.run())  # a rerun keeps the result without analysing it again
    assert len(plotly_charts(at)) == 1 and query_task(at) == tid
    assert status(svc, tid)["attempts"] == 1


def test_explorer_rejects_a_file_that_is_not_media(svc, tmp_path):
    at = ok(new_app().run())
    ok(at.switch_page(f"{PAGES}/explore.py").run())
    at.file_uploader(key="explore_file").upload("noise.wav", b"RIFF not really a wave file" * 20, "audio/wav")
    ok(at.run())
    (err,) = texts(at.error)
    assert "noise.wav" in err, err
    assert not at.metric


# --------------------------------------------------------------------------------------------
# Chinese
# --------------------------------------------------------------------------------------------


def test_chinese_from_the_browser_locale(svc):
    at = ok(new_app(locale="zh-CN").run())
    assert at.selectbox(key="lang").value == "zh"
    assert at.button(key="sync").label == zh("upload.sync")
    assert [u.label for u in at.file_uploader] == [zh("upload.video"), zh("upload.song")]
    assert zh("upload.need_both") in texts(at.caption)
    assert zh("upload.limit", mb=500) in texts(at.caption)


def test_language_switch_to_chinese(svc):
    at = ok(new_app().run())
    assert at.button(key="sync").label == en("upload.sync")
    switch = at.sidebar.selectbox[0]
    assert switch.key == "lang" and switch.options == ["English", "简体中文"]
    switch.set_value("zh")
    ok(at.run())
    assert at.button(key="sync").label == zh("upload.sync")
    assert texts(at.markdown)[0] == zh("upload.intro")
    assert [u.label for u in at.file_uploader] == [zh("upload.video"), zh("upload.song")]


def test_chinese_on_the_other_pages(svc):
    at = ok(new_app().run())
    at.session_state["lang"] = "zh"  # what the sidebar switch sets
    ok(at.switch_page(f"{PAGES}/tasks.py").run())
    assert texts(at.title) == [zh("tasks.title")] and texts(at.info) == [zh("tasks.none")]
    at.session_state["lang"] = "zh"
    ok(at.switch_page(f"{PAGES}/explore.py").run())
    assert texts(at.title) == [zh("explore.title")] and texts(at.markdown)[0] == zh("explore.intro")
    at.session_state["lang"] = "zh"
    ok(at.switch_page(f"{PAGES}/task.py").run())
    assert texts(at.title) == [zh("task.title")] and texts(at.info) == [zh("task.none")]


def test_chinese_error_message_for_a_failed_job(svc, failed_task):
    at = open_task(failed_task, lang="zh")
    assert texts(at.title) == [zh("task.title_failed")]
    (err,) = texts(at.error)
    assert err == f"**{zh('task.failed')}**: " + messages.ERRORS_ZH["song_not_found"], err
    assert zh("task.try", hint=messages.HINTS["song_not_found"][1]) in texts(at.caption)
    assert zh("task.another_song") in texts(at.header)
    assert at.button(key=f"another-go-{failed_task}").label == zh("task.another_song_go")


def test_chinese_results_and_unknown_id(svc, done_task):
    at = open_task(done_task, lang="zh")
    assert texts(at.header)[0] == zh("task.your_video")
    assert "- " + zh("fact.position_start", video="0:03") in texts(at.markdown), texts(at.markdown)
    assert any(c.startswith("modular：置信度") and "秒" in c for c in texts(at.caption)), texts(at.caption)
    assert not [c for c in texts(at.caption) if " s " in c or c.endswith(" s")], "seconds are 秒 in Chinese"
    at = open_task(str(uuid.uuid4()), lang="zh")
    assert texts(at.title) == [zh("error.title")]
    assert texts(at.warning) == [messages.ERRORS_ZH["not_found"]]

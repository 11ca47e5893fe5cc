"""The task system survives what happens to real servers: kill -9 mid-job, a normal stop with work
queued, jobs that run too long or keep dying, expiry, and two servers sharing one data dir.

Every test starts its own server(s) (``streamlit run app.py``) on its own data dir; the job
processes are found through /proc (``python -m beatsync.tasks.job ... <task id>``).
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests
import server_util as su
import songgen as sg
from server_util import CLEAN_NCC, Server, check, submit, submit_ok, upload_ok, wait_status

from beatsync import media

FAST_RECOVERY = {"BEATSYNC_STALE_S": 6, "BEATSYNC_SWEEP_S": 1}


@pytest.fixture
def servers(tmp_path, request):
    """Factory: ``servers(env, name=..., data_dir=...)`` -> a started `Server`; all closed at teardown."""
    made: list[Server] = []
    failed = request.session.testsfailed

    def make(env: dict, *, name: str = "server", data_dir=None, start: bool = True) -> Server:
        s = Server(data_dir or tmp_path / "data", env, name=name, log_dir=tmp_path)
        made.append(s)
        if start:
            s.start()
        return s

    try:
        yield make
    finally:
        su.print_logs_if_failed(request, failed, (s.log_hint()[-3000:] for s in made))
        for s in made:
            s.close()


def _upload_pair(s: Server, m: sg.ClassMedia) -> tuple[str, str]:
    return upload_ok(s, m.video_path)["file_id"], upload_ok(s, m.song_path)["file_id"]


def _assert_only_servers_left(data_dir, server_pids, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in su.processes_of(data_dir) if p not in server_pids]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], [(p, su.cmdline(p)) for p in left]


def _check_complete_output(s: Server, task_id: str, m: sg.ClassMedia, tmp_path, final: dict) -> None:
    """Both variants download as complete mp4s (picture + sound to the end, the song to the end)."""
    for eng in ("modular", "v2"):
        r = s.get(f"/api/download/{task_id}/{eng}", timeout=60)
        assert r.status_code == 200, (eng, r.status_code, r.text[:300])
        path = tmp_path / f"{task_id}_{eng}.mp4"
        path.write_bytes(r.content)
        info = media.probe(str(path))
        assert info.video is not None and info.audio is not None, info
        render = (final.get("variants") or {}).get(eng, {}).get("render") or {}
        assert info.video_duration_s >= m.music_len_s, (eng, info.video_duration_s)  # the whole music
        if "end_s" in render:
            expected = render["end_s"] - render["start_s"]
            assert info.video_duration_s == pytest.approx(expected, abs=0.2), (eng, info.video_duration_s, render)
        y = media.decode_audio(str(path), sr=8000, mono=True, info=info)
        assert len(y) / 8000 == pytest.approx(info.video_duration_s, abs=0.5), (eng, len(y) / 8000)
        late = m.music_len_s - 2.0
        heard = su.heard_song_times(path, m, (3.0, late))
        for t, (_song_t, ncc) in zip((3.0, late), heard, strict=True):
            assert ncc > CLEAN_NCC, f"{eng} at output {t} s: not the song (ncc {ncc:.2f})"
        assert (heard[1][0] - heard[0][0]) == pytest.approx(late - 3.0, abs=0.006), heard
        if render:
            assert heard[0][0] - 3.0 == pytest.approx(render["start_s"] - m.music_at_s, abs=0.006)


# ----------------------------------------------------------------------------- tests


def test_kill9_mid_job_then_restart_completes(servers, long_media, tmp_path):
    s = servers({"BEATSYNC_WORKERS": 1, **FAST_RECOVERY}, name="kill9")
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    st = wait_status(s, tid, "processing", timeout=60, poll_s=0.1, pred=lambda o: o["progress"] > 15)
    assert st["progress"] < 100 and st["attempts"] == 1, st
    family = su.job_family(tid)
    s.kill9()
    left = su.wait_gone(family, timeout=8.0)
    assert left == [], f"job processes survived the server's kill -9: {[(p, su.cmdline(p)) for p in left]}"
    assert su.job_processes(tid) == []

    s.restart()
    final = wait_status(s, tid, timeout=180)
    assert final["status"] == "success", final
    assert final["attempts"] == 2, final
    assert final["progress"] == 100 and final.get("error_code") is None
    _check_complete_output(s, tid, long_media, tmp_path, final)
    # nothing of the first run is left running, and no temporary file stays next to the outputs
    _assert_only_servers_left(s.data_dir, {s.pid})
    leftovers = [p for p in su.data_dir_paths_named(s.data_dir, "") if p.is_file()
                 and re.search(r"\.(tmp|part|partial)$|^\.|~$", p.name) and tid in str(p)]
    assert leftovers == [], leftovers


def test_pending_task_runs_after_a_normal_restart(servers, short_media):
    s = servers({"BEATSYNC_WORKERS": 0}, name="pending")
    dance, bgm = _upload_pair(s, short_media)
    tid = submit_ok(s, dance, bgm)
    time.sleep(1.0)
    assert su.status(s, tid)["status"] == "pending"
    s.terminate(timeout=20)
    assert not s.alive()
    s.restart({"BEATSYNC_WORKERS": 1})
    final = wait_status(s, tid, timeout=120)
    assert final["status"] == "success", final
    assert final["attempts"] == 1, final
    r = s.get(f"/api/download/{tid}/modular")
    assert r.status_code == 200 and len(r.content) > 1000


def test_time_limit(servers, long_media):
    s = servers({"BEATSYNC_WORKERS": 1, "BEATSYNC_TIME_LIMIT_S": 3, **FAST_RECOVERY}, name="timelimit")
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    wait_status(s, tid, "processing", timeout=60, poll_s=0.1)
    t0 = time.monotonic()
    family = su.job_family(tid)
    final = wait_status(s, tid, "failed", timeout=60, poll_s=0.2)
    took = time.monotonic() - t0
    assert final["error_code"] == "time_limit", final
    assert re.search(r"(?<![\d.])3(\.0+)?(?![\d.])", final["error"]), f"the limit is not in {final['error']!r}"
    assert took < 3 + 8, f"stopped {took:.1f} s after it started processing"
    assert final.get("modular_output") is None and final.get("v2_output") is None
    left = su.wait_gone(family, timeout=8.0)
    assert left == [], [(p, su.cmdline(p)) for p in left]
    assert su.job_processes(tid) == []
    _assert_only_servers_left(s.data_dir, {s.pid})
    check(s.get(f"/api/download/{tid}/modular"), 409, "not_ready", s)
    su.assert_alive(s, healthy=True)


def test_job_that_keeps_dying_ends_crashed(servers, long_media):
    s = servers({"BEATSYNC_WORKERS": 1, "BEATSYNC_MAX_ATTEMPTS": 2, **FAST_RECOVERY}, name="crash")
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    killed: list[int] = []
    deadline = time.monotonic() + 150
    final = None
    while time.monotonic() < deadline:
        for pid in su.job_processes(tid):
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        obj = su.status(s, tid)
        if obj["status"] in ("success", "failed"):
            final = obj
            break
        time.sleep(0.05)
    assert final is not None, f"task not finished; killed {killed}{s.log_hint()}"
    assert final["status"] == "failed", final
    assert final["error_code"] == "crashed", final
    assert len(killed) == 2, f"expected 2 runs (BEATSYNC_MAX_ATTEMPTS=2), killed {killed}"
    assert final["attempts"] == 2, final
    msg = final["error"]
    assert isinstance(msg, str) and len(msg) > 15 and "Traceback" not in msg, msg
    assert re.search(r"crash|died|stopped|killed|attempt|times|memory", msg, re.I), msg
    _assert_only_servers_left(s.data_dir, {s.pid})
    su.assert_alive(s, healthy=True)


def test_finished_task_expires(servers, short_media):
    s = servers({"BEATSYNC_WORKERS": 1, "BEATSYNC_TTL_S": 3, "BEATSYNC_SWEEP_S": 1}, name="ttl")
    dance, bgm = _upload_pair(s, short_media)
    tid = submit_ok(s, dance, bgm)
    final = wait_status(s, tid, timeout=120)
    assert final["status"] == "success", final
    t_done = time.monotonic()
    task_paths = su.data_dir_paths_named(s.data_dir, tid)
    assert task_paths, f"no file or folder named with {tid} under {s.data_dir}"
    upload_paths = su.data_dir_paths_named(s.data_dir, dance) + su.data_dir_paths_named(s.data_dir, bgm)
    r = None
    while time.monotonic() - t_done < 12:
        r = s.get(f"/api/status/{tid}")
        if r.status_code != 200:
            break
        time.sleep(0.25)
    assert r is not None and r.status_code == 404, (r.status_code, r.text[:300], s.log_hint())
    check(r, 404, ("expired", "not_found"), s)
    check(s.get(f"/api/download/{tid}/modular"), 404, ("expired", "not_found"), s)
    deadline = time.monotonic() + 5
    while any(p.exists() for p in task_paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in task_paths if p.exists()] == [], "the task's folder was not deleted"
    assert su.data_dir_paths_named(s.data_dir, tid) == []
    # its uploads, now unused and older than the TTL, go too
    deadline = time.monotonic() + 8
    while any(p.exists() for p in upload_paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in upload_paths if p.exists()] == [], "the unused uploads were not deleted"
    check(submit(s, dance, bgm), 404, "file_not_found", s)


def test_two_servers_share_one_data_dir(servers, short_media, tmp_path):
    env = {"BEATSYNC_WORKERS": 1, **FAST_RECOVERY}
    a = servers(env, name="a", data_dir=tmp_path / "shared")
    b = servers(env, name="b", data_dir=tmp_path / "shared")
    dance, bgm = _upload_pair(a, short_media)
    tids = []
    for i in range(6):
        tids.append(submit_ok((a, b)[i % 2], dance, bgm, {"engines": ["modular"]} if i % 3 == 0 else None))
    finals: dict[str, dict] = {}
    runs: dict[str, set[int]] = {tid: set() for tid in tids}  # job processes seen per task
    deadline = time.monotonic() + 240
    while len(finals) < len(tids) and time.monotonic() < deadline:
        for pid in su.processes_of(tmp_path / "shared"):
            cl = su.cmdline(pid)
            # a job process's own child between fork and exec (starting its ffmpeg) shows the job's
            # command line for a moment: only processes whose parent is not a job count
            if su.JOB_CMDLINE.search(cl) and not su.JOB_CMDLINE.search(su.cmdline(su.parent(pid) or 0)):
                for tid in tids:
                    if tid in cl:
                        runs[tid].add(pid)
        for i, tid in enumerate(tids):
            if tid not in finals:
                obj = su.status((b, a)[i % 2], tid)
                if obj["status"] in ("success", "failed"):
                    finals[tid] = obj
        time.sleep(0.1)
    assert len(finals) == len(tids), f"not finished: {sorted(set(tids) - set(finals))}"
    assert all(len(p) <= 1 for p in runs.values()), f"a task ran in more than one job process: {runs}"
    assert any(runs.values()), "no job process was seen"
    for tid, final in finals.items():
        assert final["status"] == "success", final
        assert final["attempts"] == 1, f"{tid} was run {final['attempts']} times"
        for s in (a, b):  # both servers see the same task, and serve its output
            assert su.status(s, tid)["status"] == "success"
        r = requests.get(b.url(f"/api/download/{tid}/modular"), timeout=30)
        assert r.status_code == 200 and len(r.content) > 1000
    _assert_only_servers_left(tmp_path / "shared", {a.pid, b.pid})
    for s in (a, b):
        code, h = s.health().status_code, s.health().json()
        assert code == 200 and h["queue"] == 0 and h["processing"] == 0, h

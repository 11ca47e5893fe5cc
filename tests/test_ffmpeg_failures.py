"""ffmpeg failures are classified: a signal-killed ffmpeg is retried like a crashed job, a real decode
or encode error gets its own code naming the user's file, and a crash says what is known.

Unit tests of `beatsync.tasks.supervisor.crash_reason`, `beatsync.tasks.oom.OomWatch` (on counter files
made here) and the crash messages; then a real server (one worker, 2 attempts): the ffmpeg child of a
running job is found in /proc and killed with SIGKILL during the render, during the decode, and on
every attempt; and a class video whose picture x264 cannot encode (20000x16 pixels) fails with
``encode_failed`` naming the file as uploaded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import mediagen
import pytest
import server_util as su
import songgen as sg
from server_util import Server, check, submit_ok, upload_ok, wait_status

from beatsync import media
from beatsync.messages import error_message, hint, task_error
from beatsync.tasks import oom
from beatsync.tasks.interfaces import CRASH_FILE, EXIT_RETRY
from beatsync.tasks.supervisor import crash_reason

# ----------------------------------------------------------------------------- what a crash says


class _Oom:
    def __init__(self, killed: bool):
        self._killed = killed

    def killed(self):
        return "/sys/fs/cgroup/memory.events" if self._killed else None


def test_crash_reason_says_what_is_known(tmp_path):
    assert crash_reason(-9, tmp_path) == {"reason": "signal", "signal": 9}
    assert crash_reason(-11, tmp_path, _Oom(True)) == {"reason": "signal", "signal": 11}  # the OOM killer sends 9
    assert crash_reason(-9, tmp_path, _Oom(False)) == {"reason": "signal", "signal": 9}
    assert crash_reason(-9, tmp_path, _Oom(True)) == {"reason": "signal", "signal": 9, "oom": True}
    assert crash_reason(1, tmp_path) == {"reason": "exit", "exit_code": 1}
    assert crash_reason(EXIT_RETRY, tmp_path) == {"reason": "exit", "exit_code": EXIT_RETRY}
    (tmp_path / CRASH_FILE).write_text(json.dumps({"reason": "ffmpeg_signal", "signal": 9, "step": "decode"}))
    assert crash_reason(EXIT_RETRY, tmp_path) == {"reason": "ffmpeg_signal", "signal": 9, "step": "decode"}
    assert crash_reason(EXIT_RETRY, tmp_path, _Oom(True))["oom"] is True


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_crash_messages_guess_nothing(lang):
    cases = [{"reason": "signal", "signal": 9}, {"reason": "signal", "signal": 11},
             {"reason": "ffmpeg_signal", "signal": 9, "step": "render"}, {"reason": "exit", "exit_code": 1},
             {"reason": "worker_lost"}]
    for why in cases:
        params = {"attempts": 3, **why}
        text = task_error("crashed", **params) if lang == "en" else error_message("crashed", "zh", params=params)
        assert "memory" not in text and "内存" not in text and "may be" not in text, text
        if "signal" in why:
            assert f"{why['signal']}" in text, text
        assert "3" in text, text
        assert hint("crashed", lang, params) and "memory" not in hint("crashed", lang, params)
    oomed = {"attempts": 3, "reason": "signal", "signal": 9, "oom": True}
    text = task_error("crashed", **oomed) if lang == "en" else error_message("crashed", "zh", params=oomed)
    assert ("out-of-memory" in text) if lang == "en" else ("内存不足" in text), text
    assert "shorter" in hint("crashed", "en", oomed)


def test_no_message_guesses_memory():
    src = Path(media.__file__).parents[1] / "messages.py"
    assert "short of memory" not in src.read_text() and "可能内存不足" not in src.read_text()


def test_oom_watch_reads_the_kernels_counters(tmp_path):
    """The counter files of this process's memory cgroups (the real /proc/self/cgroup, under a cgroup
    root made here): a count that goes up is an out-of-memory kill; without any cgroup counter, the
    machine-wide one (vmstat) is read."""
    root = tmp_path / "cgroup"
    files = oom._cgroup_files(os.getpid(), root)
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 1\noom_kill 4\n")
    if not files:  # no memory cgroup at all: the machine-wide count
        watch = oom.OomWatch(os.getpid(), root=root, vmstat=vmstat)
        assert watch.killed() is None
        vmstat.write_text("nr_free_pages 1\noom_kill 5\n")
        assert watch.killed() == str(vmstat)
        return
    top = files[-1]  # the root-most one (a v2 memory.events or a v1 memory.oom_control)
    top.parent.mkdir(parents=True, exist_ok=True)
    top.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    watch = oom.OomWatch(os.getpid(), root=root, vmstat=vmstat)
    assert str(top) in watch.before and str(vmstat) not in watch.before  # the cgroup's word is enough
    assert watch.killed() is None
    top.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    assert watch.killed() == str(top)


def test_oom_counters_of_this_machine_are_readable_or_absent():
    counts = oom.oom_counters([os.getpid()])
    assert all(isinstance(v, int) and v >= 0 for v in counts.values()), counts


# ----------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def srv(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("ffmpeg_fail")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 1, "BEATSYNC_MAX_ATTEMPTS": 2}, name="ffmpegfail",
               log_dir=base)
    failed = request.session.testsfailed
    try:
        s.start()
        yield s
    finally:
        su.print_logs_if_failed(request, failed, [s.log_hint()])
        s.close()


@pytest.fixture(scope="module")
def pair(srv, long_media):
    return (upload_ok(srv, long_media.video_path, name="Tuesday class.mp4")["file_id"],
            upload_ok(srv, long_media.song_path, name="the song.wav")["file_id"])


def _kind(cmd: str) -> str | None:
    """What a job's ffmpeg does, from its command line: the render reads the sound from its stdin."""
    if "pipe:0" in cmd:
        return "render"
    if "pipe:1" in cmd and "f32le" in cmd:
        return "decode"
    return None


def kill_ffmpeg(srv: Server, tid: str, kind: str, *, times: int, timeout: float = 150.0) -> tuple[list[str], dict]:
    """SIGKILL the ``kind`` ffmpeg (``render``/``decode``) of the task's job process, ``times`` times (a
    new one each time: one per attempt); returns the stages seen at the kills and the final status."""
    killed: set[int] = set()
    stages: list[str] = []
    deadline = time.monotonic() + timeout
    last_poll = 0.0
    while time.monotonic() < deadline:
        if len(killed) < times:
            for job in su.job_processes(tid):
                for pid in mediagen.ffmpeg_children(job):
                    if pid not in killed and _kind(su.cmdline(pid)) == kind and len(killed) < times:
                        os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
                        stages.append(su.status(srv, tid)["stage"])
        now = time.monotonic()
        if now - last_poll > 0.5 or len(killed) >= times:
            last_poll = now
            obj = su.status(srv, tid)
            if obj["status"] in ("success", "failed"):
                return stages, obj
        time.sleep(0.005 if len(killed) < times else 0.25)
    raise AssertionError(f"task {tid} not finished; killed {len(killed)}{srv.log_hint()}")


def _task_files(srv: Server, tid: str) -> list[Path]:
    return [p for p in (srv.data_dir / "tasks" / tid).rglob("*") if p.is_file()]


def _check_outputs(srv: Server, tid: str, final: dict, tmp_path: Path) -> None:
    """Both results download as complete mp4s; nothing partial is left in the task's folder."""
    for eng in ("modular", "v2"):
        r = srv.get(f"/api/download/{tid}/{eng}", timeout=60)
        assert r.status_code == 200, (eng, r.status_code, r.text[:300])
        path = tmp_path / f"{eng}.mp4"
        path.write_bytes(r.content)
        info = media.probe(path)
        render = final["variants"][eng]["render"]
        assert info.video is not None and info.audio is not None
        assert info.video_duration_s == pytest.approx(render["end_s"] - render["start_s"], abs=0.2)
        media.verify(path, info)
    leftovers = [p for p in _task_files(srv, tid) if re.search(r"partial|\.tmp$|^\.", p.name)]
    assert leftovers == [], leftovers
    assert not (srv.data_dir / "tasks" / tid / "out" / "1").exists(), "the killed attempt's folder is left"


@pytest.mark.parametrize("kind", ["render", "decode"])
def test_killed_ffmpeg_is_retried_and_the_task_succeeds(srv, pair, kind, tmp_path):
    tid = submit_ok(srv, *pair)
    stages, final = kill_ffmpeg(srv, tid, kind, times=1)
    assert len(stages) == 1, stages
    assert final["status"] == "success" and final["attempts"] == 2, final
    if kind == "render":
        assert stages[0].startswith("render") or stages[0].startswith("align") or stages[0] == "trim", stages
    else:
        assert stages[0] in ("probe", "decode"), stages
    _check_outputs(srv, tid, final, tmp_path)
    log = (srv.data_dir / "tasks" / tid / "job.log").read_text()
    assert "killed by signal 9" in log and "attempt 2" in log, log[-2000:]


def test_ffmpeg_killed_on_every_attempt_ends_crashed_saying_what_died(srv, pair):
    tid = submit_ok(srv, *pair)
    stages, final = kill_ffmpeg(srv, tid, "render", times=2)
    assert len(stages) == 2
    assert final["status"] == "failed" and final["error_code"] == "crashed" and final["attempts"] == 2, final
    p = final["error_params"]
    assert p["reason"] == "ffmpeg_signal" and p["signal"] == 9 and p["step"] == "render" and "oom" not in p, p
    assert "the video writer was killed by signal 9" in final["error"], final["error"]
    assert "memory" not in final["error"], final["error"]
    zh = check(srv.get(f"/api/status/{tid}?lang=zh"), 200, server=srv)
    assert "信号 9" in zh["error"] and "内存" not in zh["error"], zh["error"]
    assert not [p for p in _task_files(srv, tid) if p.suffix == ".mp4" and "/out/" in str(p)]


@pytest.fixture(scope="module")
def too_wide(tmp_path_factory) -> sg.ClassMedia:
    """A short class video whose picture x264 refuses (20000x16: wider than it encodes), with its song."""
    return sg.write_class_media(tmp_path_factory.mktemp("wide"), ext="avi", vcodec="mjpeg", size=(20000, 16),
                                fps=15.0, gop=None, **{k: v for k, v in su.SHORT.items()})


def test_encode_error_names_the_users_file(srv, too_wide):
    name = "my wide class.avi"
    dance = upload_ok(srv, too_wide.video_path, name=name)["file_id"]
    bgm = upload_ok(srv, too_wide.song_path, name="song.wav")["file_id"]
    tid = submit_ok(srv, dance, bgm)
    final = wait_status(srv, tid, timeout=120)
    assert final["status"] == "failed" and final["error_code"] == "encode_failed", final
    assert final["attempts"] == 1, final  # a real error is not retried
    assert name in final["error"] and "dance" not in final["error"] and "ffmpeg" not in final["error"].lower(), final
    assert final["error_params"]["name"] == name and "20000" in final["error_params"]["reason"], final
    zh = check(srv.get(f"/api/status/{tid}?lang=zh"), 200, server=srv)
    assert name in zh["error"] and "无法" in zh["error"], zh["error"]

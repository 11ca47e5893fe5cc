"""The scale-out backend (``BEATSYNC_BACKEND=celery``) with real processes only: a real redis-server,
Celery workers started with the ordinary command (``celery -A beatsync.tasks.celery_app worker``),
web servers (``streamlit run app.py``), real media and real jobs.

Each test builds its own deployment (`Deployment`): its own data dir and Redis key prefix (one
`celery_env` dict shared by all its servers and workers), on the session's Redis except the
Redis-outage test, which owns its redis-server. Task records (``worker``, ``history``: not part of
the public status object) are read straight from Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
import redis
import server_util as su
import songgen as sg
from server_util import (
    CLEAN_NCC,
    CeleryWorker,
    RedisServer,
    Server,
    check,
    submit,
    submit_ok,
    upload,
    upload_ok,
    wait_status,
)

from beatsync import media

#: quick recovery: a worker's death is noticed within a second or two
FAST = {"BEATSYNC_HEARTBEAT_S": 0.5, "BEATSYNC_STALE_S": 3, "BEATSYNC_SWEEP_S": 1}
HOST = socket.gethostname()


# ----------------------------------------------------------------------------- deployment


class Deployment:
    """Web servers and Celery workers of one deployment: one data dir, one env (Redis URL + prefix)."""

    def __init__(self, base: Path, redis_url: str, env: dict | None = None):
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.env = su.celery_env(redis_url, **(env or {}))
        self.prefix = self.env["BEATSYNC_REDIS_PREFIX"]
        self.servers: list[Server] = []
        self.workers: list[CeleryWorker] = []
        self._redis: redis.Redis | None = None

    # ---- processes
    def server(self, name: str = "web", *, wait: bool = True) -> Server:
        s = Server(self.data_dir, self.env, name=name, log_dir=self.base)
        self.servers.append(s)
        return s.start(wait=wait)

    def worker(self, name: str = "w", *, wait: bool = True) -> CeleryWorker:
        w = CeleryWorker(self.data_dir, self.env, log_path=self.base / f"{name}.log", name=name)
        self.workers.append(w)
        return w.wait_ready() if wait else w

    def start(self, servers: int = 1, workers: int = 1) -> tuple[list[Server], list[CeleryWorker]]:
        """Start servers and workers side by side; returns them once all answer."""
        ss = [self.server(f"web{i + 1}", wait=False) for i in range(servers)]
        ws = [self.worker(f"w{i + 1}", wait=False) for i in range(workers)]
        for s in ss:
            s.wait_ready()
        for w in ws:
            w.wait_ready()
        return ss, ws

    def worker_of(self, worker_id: str) -> CeleryWorker:
        """The `CeleryWorker` whose pid a record's ``worker`` (``host:pid:token/thread``) names."""
        host, pid, _token = worker_id.split("/")[0].split(":")
        assert host == HOST, worker_id
        found = [w for w in self.workers if w.pid == int(pid)]
        assert found, f"{worker_id} is none of the workers {[w.pid for w in self.workers]}"
        return found[0]

    # ---- the store, read directly
    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5,
                                               socket_connect_timeout=3)
        return self._redis

    def record(self, task_id: str) -> dict:
        raw = self.redis.get(f"{self.prefix}:task:{task_id}")
        assert raw is not None, f"no record of {task_id} in Redis"
        return json.loads(raw)

    def job_log(self, task_id: str) -> str:
        return (self.data_dir / "tasks" / task_id / "job.log").read_text(errors="replace")

    # ---- teardown
    def logs(self) -> str:
        return "".join([s.log_hint()[-2500:] for s in self.servers] + [w.log_hint()[-2500:] for w in self.workers])

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(timeout=15)
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.close()  # also kills anything left on the data dir (job processes, ffmpeg)
        for pid in su.processes_of(self.data_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                keys = list(self._redis.scan_iter(f"{self.prefix}:*", count=1000))
                if keys:
                    self._redis.delete(*keys)
            self._redis.close()


@pytest.fixture
def deploy(tmp_path, redis_url, request):
    """Factory: ``deploy(env=None, redis_url=None)`` -> a `Deployment` (nothing started); all torn down
    at the end, with the logs of its processes printed when the test failed."""
    made: list[Deployment] = []
    failed = request.session.testsfailed

    def make(env: dict | None = None, *, url: str | None = None) -> Deployment:
        d = Deployment(tmp_path / f"dep{len(made)}", url or redis_url, env)
        made.append(d)
        return d

    try:
        yield make
    finally:
        su.print_logs_if_failed(request, failed, (d.logs() for d in made))
        for d in made:
            d.close()


# ----------------------------------------------------------------------------- helpers


def _upload_pair(s: Server, m: sg.ClassMedia) -> tuple[str, str]:
    return upload_ok(s, m.video_path)["file_id"], upload_ok(s, m.song_path)["file_id"]


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2:].split(b" ")[1])


def _ancestors(pid: int) -> list[int]:
    out = []
    while (pid := _ppid(pid)) not in (None, 0):
        out.append(pid)
    return out


def _attempt_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("--- attempt")]


def _check_outputs(s: Server, task_id: str, m: sg.ClassMedia, tmp_path: Path, final: dict, times) -> None:
    """Both variants download (200, video/mp4) as complete mp4s with picture and sound, whose sound is
    the clean song (not the class's recording of it), played steadily at the right place, at ``times``
    (output seconds)."""
    for eng in ("modular", "v2"):
        r = s.get(f"/api/download/{task_id}/{eng}", timeout=60)
        assert r.status_code == 200, (eng, r.status_code, r.text[:300])
        assert r.headers.get("content-type", "").startswith("video/mp4"), r.headers
        path = tmp_path / f"{task_id}_{eng}.mp4"
        path.write_bytes(r.content)
        info = media.probe(str(path))
        assert info.video is not None and info.audio is not None, info
        render = (final.get("variants") or {}).get(eng, {}).get("render") or {}
        assert m.music_len_s <= info.video_duration_s <= m.video_s + 0.1, (eng, info.video_duration_s)
        if "end_s" in render:
            assert info.video_duration_s == pytest.approx(render["end_s"] - render["start_s"], abs=0.2), render
        y = media.decode_audio(str(path), sr=8000, mono=True, info=info)
        assert len(y) / 8000 == pytest.approx(info.video_duration_s, abs=0.5), (eng, len(y) / 8000)
        heard = su.heard_song_times(path, m, times)
        for t, (_song_t, ncc) in zip(times, heard, strict=True):
            assert ncc > CLEAN_NCC, f"{eng} at output {t} s: the clean song is not what is heard (ncc {ncc:.2f})"
        shifts = [song_t - t for t, (song_t, _) in zip(times, heard, strict=True)]
        assert max(shifts) - min(shifts) < 0.006, f"{eng}: song not played steadily {shifts}"
        if render.get("start_s") is not None:  # output t is dance time start + t; song time = dance - music_at
            assert shifts[0] == pytest.approx(render["start_s"] - m.music_at_s, abs=0.006), (shifts, render)


def _assert_clean_task_folder(d: Deployment, task_id: str) -> None:
    """Only the final attempt's files: its outputs and beat grid in out/<attempt>/, no folder, partial or
    temporary file of an interrupted run."""
    rec = d.record(task_id)
    folder = d.data_dir / "tasks" / task_id
    files = [*rec["outputs"].values(), rec["beatgrid"]]
    assert {str(Path(p).parent) for p in files} == {f"out/{rec['attempts']}"}, files
    assert [p.name for p in (folder / "out").iterdir()] == [str(rec["attempts"])], sorted((folder / "out").iterdir())
    out = folder / "out" / str(rec["attempts"])
    assert {p.name for p in out.iterdir()} == {Path(p).name for p in files}, sorted(out.iterdir())
    assert not (folder / "error.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["in", "job.log", "out", "result.json"], sorted(folder.iterdir())


def _wait_record(d: Deployment, task_id: str, pred, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    rec = None
    while time.monotonic() < deadline:
        rec = d.record(task_id)
        if pred(rec):
            return rec
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; record: {json.dumps(rec)[:1500]}{d.logs()}")


# ----------------------------------------------------------------------------- 1. happy path


def test_happy_path_on_celery(deploy, short_media, tmp_path):
    d = deploy(FAST)
    s = d.server()
    # submitted before any worker runs: it waits in the queue, and health says why
    dance, bgm = _upload_pair(s, short_media)
    tid = submit_ok(s, dance, bgm)
    r = s.health()
    h = su.body(r)
    assert r.status_code == 503 and h["status"] == "degraded", h
    assert h["backend"] == "celery" and h["workers"] == 0 and h["queue"] == 1, h
    assert any("worker" in p and "celery" in p for p in h["problems"]), h
    st = su.status(s, tid)
    assert st["status"] == "pending" and st["attempts"] == 0, st
    history: list[dict] = [st]

    w = d.worker()
    job_pid, chain = None, []
    deadline = time.monotonic() + 120
    final = None
    while time.monotonic() < deadline:
        obj = su.status(s, tid)
        history.append(obj)
        if obj["status"] == "processing" and job_pid is None:
            jobs = su.job_processes(tid)
            if jobs:
                job_pid, chain = jobs[0], _ancestors(jobs[0])
        if obj["status"] in ("success", "failed"):
            final = obj
            break
        time.sleep(0.05)
    assert final is not None, f"not finished: {history[-1]}{d.logs()}"
    assert final["status"] == "success", final

    statuses = [h["status"] for h in history]
    order = {"pending": 0, "processing": 1, "success": 2}
    ranks = [order[x] for x in statuses]
    assert ranks == sorted(ranks) and set(statuses) == set(order), statuses
    progress = [h["progress"] for h in history]
    assert all(0 <= p <= 100 for p in progress), progress
    assert all(b >= a for a, b in zip(progress, progress[1:], strict=False)), f"progress went down: {progress}"
    assert final["progress"] == 100 and final["attempts"] == 1 and final.get("error_code") is None, final
    assert final["download"]["modular"] and final["download"]["v2"], final

    # the job ran as a child of the Celery worker, never of the web server
    assert job_pid is not None, "the job process was never seen while processing"
    assert w.pid in chain, f"job {job_pid}: ancestors {chain}, worker {w.pid}, server {s.pid}"
    assert s.pid not in chain, chain
    rec = d.record(tid)
    assert [x["worker"].split("/")[0].rsplit(":", 1)[0] for x in rec["history"]] == [f"{HOST}:{w.pid}"], rec["history"]
    assert rec["history"][0]["outcome"] == "success", rec["history"]
    assert len(_attempt_lines(d.job_log(tid))) == 1

    _check_outputs(s, tid, short_media, tmp_path, final, (2.5, 5.0, 8.0))

    h = check(s.health(), 200, server=s)
    assert h["status"] == "ok" and h["backend"] == "celery", h
    assert h["workers"] == 1 and h["worker_threads"] == 1 and h["queue"] == 0 and h["processing"] == 0, h
    assert su.job_processes(tid) == []


# ----------------------------------------------------------------------------- 2. kill -9 of a worker


def test_kill9_worker_mid_job_other_worker_finishes(deploy, long_media, tmp_path):
    d = deploy(FAST)
    (s,), _ = d.start(servers=1, workers=2)
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    st = wait_status(s, tid, "processing", timeout=60, poll_s=0.1, pred=lambda o: o["progress"] > 15)
    assert st["progress"] < 100 and st["attempts"] == 1, st
    family = su.job_family(tid)
    rec = d.record(tid)
    holder = d.worker_of(rec["worker"])
    other = next(w for w in d.workers if w is not holder)
    assert holder.pid in _ancestors(min(su.job_processes(tid))), "the job is not the holder's child"

    holder.kill9()
    t_kill = time.monotonic()
    # watch both at once: the killed worker's job dying (parent-death watchdog) and the takeover
    t_gone = t_restart = None
    rec2 = None
    while time.monotonic() - t_kill < 20 and (t_gone is None or t_restart is None):
        if t_gone is None and not su.alive(family):
            t_gone = time.monotonic() - t_kill
        if t_restart is None:
            rec2 = d.record(tid)
            if rec2["status"] == "processing" and rec2["attempts"] == 2:
                t_restart = time.monotonic() - t_kill
        time.sleep(0.02)
    left = su.alive(family)
    assert left == [], f"the killed worker's job survived it: {[(p, su.cmdline(p)) for p in left]}"
    assert t_gone < 5.0, f"the killed worker's job lived {t_gone:.1f} s on"
    assert t_restart is not None, f"no takeover within 20 s: {json.dumps(rec2)[:1500]}{d.logs()}"
    assert d.worker_of(rec2["worker"]) is other, rec2["worker"]
    new_jobs = su.wait_job_process(tid, timeout=10)
    assert new_jobs and other.pid in _ancestors(new_jobs[0]), (new_jobs, other.pid)
    assert not set(new_jobs) & family
    print(f"\nkill -9 of the worker -> its job gone {t_gone:.2f} s, -> other worker started it again "
          f"{t_restart:.2f} s")

    final = wait_status(s, tid, timeout=180, poll_s=0.25)
    assert final["status"] == "success", final
    assert final["attempts"] == 2 and final["progress"] == 100 and final.get("error_code") is None, final
    rec = d.record(tid)
    hist = rec["history"]
    assert [x["attempt"] for x in hist] == [1, 2], hist
    assert d.worker_of(hist[0]["worker"]) is holder and d.worker_of(hist[1]["worker"]) is other, hist
    assert hist[1]["outcome"] == "success", hist
    assert len(_attempt_lines(d.job_log(tid))) == 2
    late = long_media.music_len_s - 2.0
    _check_outputs(s, tid, long_media, tmp_path, final, (3.0, 20.0, 40.0, late))
    _assert_clean_task_folder(d, tid)
    assert other.alive() and check(s.health(), 200, server=s)["workers"] == 1
    assert su.job_processes(tid) == []


# ----------------------------------------------------------------------------- 3. two servers, two workers, 20 jobs


def test_twenty_jobs_through_two_servers_and_two_workers(deploy, short_media):
    d = deploy({"BEATSYNC_HEARTBEAT_S": 1, "BEATSYNC_STALE_S": 10, "BEATSYNC_SWEEP_S": 2})
    (a, b), (w1, w2) = d.start(servers=2, workers=2)
    files = {a: _upload_pair(a, short_media), b: _upload_pair(b, short_media)}
    t0 = time.monotonic()
    tids, where = [], {}
    for i in range(20):
        srv = (a, b)[i % 2]
        # half the submissions use the other server's uploads (shared through Redis and the data dir)
        dance, bgm = files[(a, b)[(i // 2) % 2]]
        if i == 5:
            dance = files[a][0]
            bgm = files[b][1]  # one upload from each server
        tid = submit_ok(srv, dance, bgm, {"engines": ["modular"]})
        tids.append(tid)
        where[tid] = srv
    finals: dict[str, dict] = {}
    deadline = time.monotonic() + 150
    k = 0
    while len(finals) < len(tids) and time.monotonic() < deadline:
        for tid in tids:
            if tid in finals:
                continue
            obj = su.status((a, b)[k % 2], tid)  # alternately through both servers
            k += 1
            if obj["status"] in ("success", "failed"):
                finals[tid] = obj
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert len(finals) == len(tids), f"not finished after {took:.0f} s: {sorted(set(tids) - set(finals))}{d.logs()}"
    print(f"\n20 jobs on 2 workers: {took:.1f} s")

    done_by: dict[int, int] = {w1.pid: 0, w2.pid: 0}
    for tid in tids:
        final = finals[tid]
        assert final["status"] == "success", final
        assert final["attempts"] == 1, f"{tid} was run {final['attempts']} times"
        rec = d.record(tid)
        assert len(rec["history"]) == 1 and rec["history"][0]["outcome"] == "success", rec["history"]
        done_by[d.worker_of(rec["history"][0]["worker"]).pid] += 1
        runs = _attempt_lines(d.job_log(tid))
        assert len(runs) == 1, f"{tid} ran {len(runs)} times: {runs}"
        for srv in (a, b):  # both servers see the task and serve its output
            r = srv.get(f"/api/download/{tid}/modular")
            assert r.status_code == 200 and r.content[4:8] == b"ftyp" and len(r.content) > 1000, (r.status_code,)
            check(srv.get(f"/api/download/{tid}/v2"), 404, "no_output", srv)
    assert all(n > 0 for n in done_by.values()), f"jobs per worker: {done_by}"
    for srv in (a, b):
        h = check(srv.health(), 200, server=srv)
        assert h["workers"] == 2 and h["queue"] == 0 and h["processing"] == 0, h
    left = [p for p in su.processes_of(d.data_dir) if p not in {a.pid, b.pid, w1.pid, w2.pid}]
    assert left == [], [(p, su.cmdline(p)) for p in left]


# ----------------------------------------------------------------------------- 4. cancel


def test_cancel_running_job(deploy, long_media):
    d = deploy(FAST)
    (s,), (w,) = d.start(servers=1, workers=1)
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    wait_status(s, tid, "processing", timeout=60, poll_s=0.1, pred=lambda o: o["progress"] > 0)
    final = su.cancel_running(s, tid)
    assert final["attempts"] == 1, final
    check(s.post(f"/api/cancel/{tid}", headers=s.owner_headers()), 409, "already_finished", s)
    assert d.record(tid)["history"][-1]["outcome"] == "cancelled"
    # the worker is idle again
    assert w.alive()
    h = check(s.health(), 200, server=s)
    assert h["processing"] == 0 and h["queue"] == 0, h


# ----------------------------------------------------------------------------- 5. Redis unavailable


def _timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def test_redis_unavailable_then_back(deploy, short_media, tmp_path):
    rs = RedisServer(tmp_path / "own-redis").start()
    try:
        d = deploy(FAST, url=rs.url)
        (s,), (w,) = d.start(servers=1, workers=1)
        dance, bgm = _upload_pair(s, short_media)
        tid = submit_ok(s, dance, bgm)
        assert wait_status(s, tid, timeout=60)["status"] == "success"
        uploads_before = sorted(p.name for p in (d.data_dir / "uploads").iterdir())

        rs.kill9()
        calls = {
            "status": lambda: s.get(f"/api/status/{tid}"),
            "process": lambda: submit(s, dance, bgm),
            "upload": lambda: upload(s, short_media.song_path),
            "cancel": lambda: s.post(f"/api/cancel/{tid}", headers=s.owner_headers()),
            "download": lambda: s.get(f"/api/download/{tid}/modular"),
        }
        for what, call in calls.items():
            r, took = _timed(call)
            obj = check(r, 503, "store_unavailable", s)
            assert "Redis" in obj["error"] or "task store" in obj["error"], (what, obj)
            assert r.headers.get("retry-after") == "30", (what, r.headers)
            assert took < 5.0, f"{what} took {took:.1f} s with Redis down"
        assert sorted(p.name for p in (d.data_dir / "uploads").iterdir()) == uploads_before, "a refused upload left files"
        r, took = _timed(s.health)
        assert r.status_code == 503 and took < 5.0, (r.status_code, took, r.text[:300])
        h = su.body(r)
        assert h["status"] == "degraded" and h["backend"] == "celery", h
        assert h["problems"] and ("Redis" in h["problems"][0] or "task store" in h["problems"][0]), h
        assert s.alive() and w.alive(), s.log_hint()

        # Redis is back (empty: no persistence) on the same port: the same server and worker carry on
        rs.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = s.health()
            if r.status_code == 200:
                break
            time.sleep(0.25)
        h = check(r, 200, server=s)
        assert h["workers"] == 1, h
        check(s.get(f"/api/status/{tid}"), 404, "not_found", s)  # a fresh store
        dance2, bgm2 = _upload_pair(s, short_media)
        tid2 = submit_ok(s, dance2, bgm2, {"engines": ["modular"]})
        final = wait_status(s, tid2, timeout=60)
        assert final["status"] == "success" and final["attempts"] == 1, final
        assert s.alive() and w.alive()
    finally:
        rs.stop()


# ----------------------------------------------------------------------------- 6. warm shutdown


def test_worker_sigterm_mid_job_requeues_without_counting(deploy, long_media, tmp_path):
    d = deploy(FAST)
    (s,), _ = d.start(servers=1, workers=2)
    dance, bgm = _upload_pair(s, long_media)
    tid = submit_ok(s, dance, bgm)
    wait_status(s, tid, "processing", timeout=60, poll_s=0.1, pred=lambda o: o["progress"] > 15)
    family = su.job_family(tid)
    holder = d.worker_of(d.record(tid)["worker"])
    other = next(w for w in d.workers if w is not holder)

    t0 = time.monotonic()
    rc = holder.stop(timeout=20)  # SIGTERM: Celery's warm shutdown
    took = time.monotonic() - t0
    assert rc == 0, f"warm shutdown exit code {rc}{holder.log_hint()}"
    assert took < 10, f"warm shutdown took {took:.1f} s"
    left = su.wait_gone(family, timeout=5.0)
    assert left == [], [(p, su.cmdline(p)) for p in left]

    rec = _wait_record(d, tid, lambda r: len(r["history"]) == 2 and r["status"] == "processing", 20,
                       "the other worker runs the task again")
    print(f"\nSIGTERM -> worker exited {took:.2f} s, -> other worker started it {time.monotonic() - t0:.2f} s")
    assert d.worker_of(rec["worker"]) is other and rec["attempts"] == 1, rec
    final = wait_status(s, tid, timeout=180)
    assert final["status"] == "success", final
    assert final["attempts"] == 1, final  # the interrupted run does not count
    hist = d.record(tid)["history"]
    assert len(hist) == 2 and hist[0]["outcome"] == "interrupted" and hist[1]["outcome"] == "success", hist
    assert d.worker_of(hist[0]["worker"]) is holder and d.worker_of(hist[1]["worker"]) is other, hist
    assert len(_attempt_lines(d.job_log(tid))) == 2
    _check_outputs(s, tid, long_media, tmp_path, final, (3.0, 35.0, long_media.music_len_s - 2.0))
    _assert_clean_task_folder(d, tid)
    # the stopped worker acknowledged its message (kombu's Redis transport keeps unacknowledged ones in
    # "<prefix>:celery:unacked"): no second delivery of it is waiting for the visibility timeout
    assert d.redis.hlen(f"{d.prefix}:celery:unacked") == 0
    h = check(s.health(), 200, server=s)
    assert h["workers"] == 1, f"the stopped worker still counts: {h}"

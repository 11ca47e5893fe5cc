"""The task-system contract, run against both backends (the ``h`` fixture, parametrised ``local`` and
``celery``), with real processes and no mocks:

* ``local``: `TaskStore` on a real diskcache, `Executor` worker threads in this process (or
  ``python -m beatsync worker`` processes where a worker has to be killed);
* ``celery``: `RedisTaskStore` on a real ``redis-server`` (the ``redis_url`` fixture) and real
  ``celery -A beatsync.tasks.celery_app worker`` processes, each test on its own key prefix.

The job is a stand-in that follows the job protocol without audio (tests/fake_job.py): what it
does comes from the task's ``behaviour``; every run appends its attempt to ``runs.txt``. The whole
stack with real jobs and a real server is in test_api_server.py and test_task_recovery.py.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

# (``server_util`` is imported where it is used: it pulls in scipy, which the processes spawned by
# test_each_task_is_claimed_exactly_once_across_processes, importing this module, do not need)
from beatsync.errors import BeatSyncError
from beatsync.owner import token_hash
from beatsync.tasks import (
    FAILED,
    PENDING,
    PROCESSING,
    SUCCESS,
    Executor,
    Settings,
    TaskStore,
    check_id,
    new_id,
    open_store,
)
from beatsync.tasks.redis_store import RedisTaskStore

FAKE_JOB = str(Path(__file__).resolve().with_name("fake_job.py"))
JOB_COMMAND = f"{sys.executable} {FAKE_JOB}"
#: short periods, so that takeovers and sweeps happen within a second or two
FAST = {"heartbeat_s": 0.25, "stale_s": 2.0, "sweep_s": 0.3, "poll_s": 0.05}
#: the settings a worker process reads from its environment
ENV_OF = {"workers": "BEATSYNC_WORKERS", "time_limit_s": "BEATSYNC_TIME_LIMIT_S", "ttl_s": "BEATSYNC_TTL_S",
          "max_attempts": "BEATSYNC_MAX_ATTEMPTS", "heartbeat_s": "BEATSYNC_HEARTBEAT_S",
          "stale_s": "BEATSYNC_STALE_S", "sweep_s": "BEATSYNC_SWEEP_S"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def pid_of(worker: str) -> int:
    """The process id in a worker id (``host:pid:token/thread``)."""
    return int(worker.split("/")[0].split(":")[1])


# ----------------------------------------------------------------------------- the harness


class Harness:
    """One backend on a fresh data dir (and, for Celery, a fresh key prefix on the shared Redis): its
    store, tasks with a fake-job behaviour, workers to start, stop and kill, and waiting for states."""

    def __init__(self, backend: str, tmp_path: Path, redis_url: str | None = None):
        self.backend = backend
        self.tmp = tmp_path
        self.data_dir = (tmp_path / "data").resolve()
        self.env = {"BEATSYNC_BACKEND": "local"}  # worker processes' environment (the job inherits it)
        if self.celery:
            from server_util import celery_env

            self.env = celery_env(redis_url)
        self.env["BEATSYNC_JOB_COMMAND"] = JOB_COMMAND
        self.store = open_store(self.settings())
        self.workers: list = []  # Executor | CeleryWorker | Worker
        self.logs: list[Path] = []

    @property
    def celery(self) -> bool:
        return self.backend == "celery"

    def settings(self, **kw) -> Settings:
        return Settings.from_env(self.env, data_dir=self.data_dir, **{**FAST, **kw})

    # ---- tasks
    def add(self, *, queue_max: int = 100, **behaviour) -> str:
        tid = new_id()
        (self.store.task_dir(tid) / "out").mkdir(parents=True)
        self.store.create({"task_id": tid, "inputs": {}, "options": {}, "behaviour": behaviour}, queue_max=queue_max)
        return tid

    def runs(self, tid: str) -> list[int]:
        """The attempt of every run of the task's job so far (from its ``runs.txt``)."""
        try:
            lines = (self.store.task_dir(tid) / "runs.txt").read_text().split("\n")
        except FileNotFoundError:
            return []
        return [int(line.split()[0]) for line in lines if line.strip()]

    def has_child(self, tid: str) -> bool:
        """The job (``child=True``) has started its child and written its pid."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.store.task_dir(tid) / "child.pid").read_text()) > 0
        return False

    def broker_queue(self) -> list[str]:
        """Celery: the task ids of the messages waiting in the broker's queue, in delivery order (kombu's
        Redis transport: a list per priority step, ``<queue>`` and ``<queue>\\x06\\x16<step>``, pushed on
        the left and popped on the right, the lower step first)."""
        queue = f"{self.store.prefix}:celery:{self.store.prefix}"
        ids = []
        for key in [queue, *(f"{queue}\x06\x16{step}" for step in range(1, 10))]:
            ids += [json.loads(m)["headers"]["id"] for m in reversed(self.store.r.lrange(key, 0, -1))]
        return ids

    def wait(self, tid: str, statuses=(SUCCESS, FAILED), timeout: float = 30.0, pred=None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.store.get(tid)
            if rec is not None and rec["status"] in statuses and (pred is None or pred(rec)):
                return rec
            time.sleep(0.03)
        raise AssertionError(f"task {tid} did not reach {statuses}: {self.store.get(tid)}{self.log_tails()}")

    # ---- workers
    def start_workers(self, n: int = 1, *, threads: int = 1, processes: bool = False, **settings) -> list:
        """``n`` workers of ``threads`` slots each: Celery worker processes, or (local) one `Executor`
        in this process, or with ``processes`` ``python -m beatsync worker`` processes (to kill -9)."""
        from server_util import CeleryWorker, Worker

        s = self.settings(workers=threads, **settings)
        env = {**self.env, **{var: str(getattr(s, f)) for f, var in ENV_OF.items()}}
        made = []
        if self.celery or processes:
            for _ in range(n):
                i = len(self.logs)
                log = self.tmp / f"worker{i}.log"
                self.logs.append(log)
                if self.celery:
                    w = CeleryWorker(self.data_dir, env, log_path=log, name=f"w{i}", concurrency=threads)
                else:
                    w = Worker(self.data_dir, env, log_path=log, threads=threads)
                made.append(w)
            self.workers += made
            for w in made:
                if isinstance(w, CeleryWorker):
                    w.wait_ready()
            return made
        assert n == 1, "two executors in one process take each other for dead (same pid): use processes=True"
        ex = Executor(self.store, s, job_argv=lambda tid, attempt: [
            sys.executable, FAKE_JOB, "--data-dir", str(self.data_dir), "--attempt", str(attempt), tid],
            job_env={**os.environ, **self.env})
        self.workers.append(ex)
        return [ex.start()]

    def stop(self, *workers, timeout: float = 30.0) -> None:
        """A clean shutdown: `Executor.stop`, or SIGTERM to the worker processes (all at once)."""
        procs = [w for w in workers if not isinstance(w, Executor)]
        for w in procs:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            if isinstance(w, Executor):
                w.stop()
        for w in procs:
            with contextlib.suppress(Exception):
                w.proc.wait(timeout)
            w.stop(timeout=5)  # reaps it (SIGKILL to its group if it did not stop)
        for w in workers:
            self.workers.remove(w)

    def kill9(self, w) -> None:
        """SIGKILL a worker process only (its job is left running, as after a machine's sudden death)."""
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)
        w.stop()  # (forgets the process)
        self.workers.remove(w)

    def log_tails(self) -> str:
        from server_util import tail

        return "".join(f"\n---- {p.name} ----\n{tail(p, 3000)}" for p in self.logs)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    # ---- teardown
    def close(self) -> None:
        from server_util import cmdline

        self.stop(*self.workers, timeout=15)
        for d in self.store.tasks_root.iterdir():  # jobs (and their sleep children) left by killed workers
            pids = []
            with contextlib.suppress(OSError, ValueError):
                pids += [int(line.split()[1]) for line in (d / "runs.txt").read_text().split("\n") if line.strip()]
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((d / "child.pid").read_text()))
            for pid in pids:
                if alive(pid) and (FAKE_JOB in cmdline(pid) or cmdline(pid).startswith("sleep")):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.celery:
            with contextlib.suppress(Exception):
                keys = list(self.store.r.scan_iter(f"{self.store.prefix}:*"))
                if keys:
                    self.store.r.delete(*keys)
        self.store.close()


@pytest.fixture(params=["local", "celery"])
def h(request, tmp_path):
    """The backend under test (see `Harness`); ``@pytest.mark.parametrize("h", ["celery"], indirect=True)``
    for a backend's own tests."""
    url = request.getfixturevalue("redis_url") if request.param == "celery" else None
    harness = Harness(request.param, tmp_path, url)
    try:
        yield harness
    finally:
        harness.close()


# ----------------------------------------------------------------------------- store


def test_ids_are_checked_never_used_raw():
    assert check_id(new_id())
    for bad in ("../etc/passwd", "", None, 5, "ABC", new_id().upper(), new_id() + "/x", "0" * 36):
        with pytest.raises(BeatSyncError) as e:
            check_id(bad)
        assert e.value.code == "bad_id"


def test_queue_is_fifo_bounded_and_cancel_frees_a_place(h):
    ids = [h.add(queue_max=3) for _ in range(3)]
    with pytest.raises(BeatSyncError) as e:
        h.add(queue_max=3)
    assert e.value.code == "busy" and "try again" in e.value.message
    assert h.store.queue_length() == 3
    h.store.request_cancel(ids[1])
    assert h.store.get(ids[1])["status"] == FAILED and h.store.get(ids[1])["error_code"] == "cancelled"
    assert h.store.queue_length() == 2
    ids.append(h.add(queue_max=3))  # the cancelled task's place is free again
    if h.celery:  # the queue is the broker's: one message per task, in submission order
        assert h.broker_queue() == ids
        claimed = [t for t in ids if h.store.claim_task(t, "w") is not None]
        assert h.store.claim_task(ids[0], "w2") is None  # taken already
    else:
        claimed = [h.store.claim("w")["task_id"] for _ in range(3)]
        assert h.store.claim("w") is None
    assert claimed == [ids[0], ids[2], ids[3]] and h.store.queue_length() == 0
    assert set(h.store.running()) == set(claimed)
    # a task put back (its worker stopped) goes ahead of newer submissions
    later = h.add()
    h.store.requeue(ids[3], 1, count_attempt=False)
    assert h.store.queue_length() == 2
    if h.celery:  # (no worker consumed the first messages: a worker drops those, the tasks are not pending)
        assert h.broker_queue() == [ids[3], *ids, later]
    else:
        assert [h.store.claim("w")["task_id"] for _ in range(2)] == [ids[3], later]


def test_attempts_guard_every_write(h):
    tid = h.add()
    rec = h.store.claim_task(tid, "w1") if h.celery else h.store.claim("w1")
    assert rec["status"] == PROCESSING and rec["attempts"] == 1 and tid in h.store.running()
    assert h.store.report_progress(tid, 1, 40, "work", "x")
    assert h.store.report_progress(tid, 1, 10, "work", "y")  # accepted, but progress never goes down
    assert h.store.get(tid)["progress"] == 40
    assert h.store.requeue(tid, 1)["status"] == PENDING
    assert h.store.queue_length() == 1 and tid not in h.store.running()
    if h.celery:  # re-queued = sent to the broker again
        assert h.broker_queue() == [tid, tid]
    assert not h.store.report_progress(tid, 1, 50, "work", "stale writer")  # the old attempt lost the task
    assert h.store.finish(tid, 1, SUCCESS) is None
    assert h.store.requeue(tid, 1) is None
    rec = h.store.claim_task(tid, "w2") if h.celery else h.store.claim("w2")
    assert rec["attempts"] == 2 and rec["progress"] == 40  # progress kept across the restart
    for stale in (h.store.finish(tid, 1, FAILED), h.store.requeue(tid, 1),
                  h.store.report_progress(tid, 1, 90, "work", "stale")):
        assert not stale  # the first attempt's writes are refused while the second runs
    assert h.store.get(tid)["progress"] == 40 and h.store.get(tid)["attempts"] == 2
    assert h.store.finish(tid, 2, SUCCESS, outputs={})["status"] == SUCCESS
    assert h.store.finish(tid, 2, FAILED) is None  # a finished task stays finished
    assert h.store.finish(tid, None, FAILED) is None
    assert h.store.requeue(tid, 2) is None
    assert tid not in h.store.running() and h.store.get(tid)["progress"] == 100
    assert [x["outcome"] for x in h.store.get(tid)["history"]] == ["interrupted", SUCCESS]


def test_expire_deletes_files_and_leaves_a_marker(h):
    tid, waiting = h.add(), h.add()
    rec = h.store.claim_task(tid, "w") if h.celery else h.store.claim("w")
    assert rec["task_id"] == tid
    h.store.finish(tid, 1, FAILED, error="x", error_code="x")
    assert h.store.finished_before(time.time() + 1) == [tid] and h.store.finished_before(time.time() - 60) == []
    h.store.expire(tid)
    assert h.store.get(tid) is None and h.store.is_gone(tid) and not h.store.task_dir(tid).exists()
    assert h.store.finished_before(time.time() + 1) == []
    h.store.expire(waiting)  # only finished tasks expire
    assert h.store.get(waiting)["status"] == PENDING and not h.store.is_gone(waiting)
    assert h.store.task_dir(waiting).is_dir()


def test_tasks_are_listed_by_owner_newest_first_until_they_expire(h):
    a, b = token_hash("a" * 43), token_hash("b" * 43)
    ids = []
    for owner in (a, b, a):
        tid = new_id()
        (h.store.task_dir(tid) / "out").mkdir(parents=True)
        h.store.create({"task_id": tid, "inputs": {}, "options": {}, "owner_hash": owner}, queue_max=100)
        ids.append(tid)
        time.sleep(0.01)
    assert h.store.owned(a) == [ids[2], ids[0]] and h.store.owned(b) == [ids[1]]
    assert h.store.owned(a, limit=1) == [ids[2]] and h.store.owned(token_hash("c" * 43)) == []
    h.store.request_cancel(ids[2])  # (a pending task ends at once)
    h.store.expire(ids[2])
    assert h.store.owned(a) == [ids[0]]


def _claim_all(backend: str, data_dir: str, url: str, prefix: str, ids: list[str], worker: str, go, out) -> None:
    if backend == "celery":  # every process tries every id (as duplicate deliveries would)
        store = RedisTaskStore(data_dir, url, prefix=prefix)
        ids = random.Random(worker).sample(ids, len(ids))
        go.wait()
        got = []
        for t in ids:
            if store.claim_task(t, worker) is not None:
                got.append(t)
                store.finish(t, 1, SUCCESS)
                time.sleep(0.002)  # (lets the others in even on a busy machine)
    else:  # every process pulls from the one queue
        store = TaskStore(data_dir)
        go.wait()
        got = []
        while (rec := store.claim(worker)) is not None:
            got.append(rec["task_id"])
            store.finish(rec["task_id"], rec["attempts"], SUCCESS)
            time.sleep(0.002)
    out.put(got)


def test_each_task_is_claimed_exactly_once_across_processes(h):
    ids = [h.add(queue_max=1000) for _ in range(300)]
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Barrier(4)
    url, prefix = (h.env["BEATSYNC_REDIS_URL"], h.env["BEATSYNC_REDIS_PREFIX"]) if h.celery else ("", "")
    procs = [ctx.Process(target=_claim_all, args=(h.backend, str(h.data_dir), url, prefix, ids, f"p{i}", go, out))
             for i in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    flat = [t for g in got for t in g]
    assert sorted(flat) == sorted(ids)  # every task once, none twice
    assert sum(1 for g in got if g) >= 2  # the processes really competed
    assert all(h.store.get(t)["attempts"] == 1 and h.store.get(t)["status"] == SUCCESS for t in ids)
    assert h.store.queue_length() == 0 and h.store.running() == {}


# ----------------------------------------------------------------------------- workers


def test_workers_run_report_progress_and_conclude(h):
    ok = h.add(steps=4)
    bad = h.add(outcome="error")
    h.start_workers(1)
    seen = []
    deadline = time.monotonic() + 30
    while h.store.get(ok)["status"] not in (SUCCESS, FAILED) and time.monotonic() < deadline:
        seen.append(h.store.get(ok)["progress"])
        time.sleep(0.01)
    rec = h.wait(ok)
    assert rec["status"] == SUCCESS and rec["outputs"] == {"modular": "out/1/result.mp4"} and rec["progress"] == 100
    assert seen == sorted(seen) and any(0 < p < 100 for p in seen)
    rec = h.wait(bad)
    assert rec["status"] == FAILED and rec["error_code"] == "song_not_found" and rec["error"] == "It went wrong."
    assert h.runs(ok) == [1] and h.runs(bad) == [1]
    assert h.store.running() == {} and h.store.queue_length() == 0


def test_one_worker_takes_tasks_in_submission_order_and_skips_cancelled(h):
    a, b, c = h.add(steps=1), h.add(steps=1), h.add(steps=1)
    h.store.request_cancel(b)
    h.start_workers(1)
    ra, rc = h.wait(a), h.wait(c)
    assert ra["status"] == rc["status"] == SUCCESS
    assert ra["history"][0]["started"] < rc["history"][0]["started"]
    assert h.store.get(b)["error_code"] == "cancelled" and h.runs(b) == []


def test_time_limit_and_cancel_kill_the_job_and_its_children(h):
    slow = h.add(steps=100, step_s=0.1, child=True)
    victim = h.add(steps=100, step_s=0.1, child=True)
    h.start_workers(1, threads=2, time_limit_s=3.0)
    h.wait(victim, statuses=(PROCESSING,), pred=lambda r: h.has_child(victim))
    h.store.request_cancel(victim)  # (well within the time limit, even on a loaded machine)
    rec = h.wait(victim, timeout=5)
    assert rec["error_code"] == "cancelled" and "cancelled" in rec["error"]
    rec = h.wait(slow, timeout=10)
    assert rec["status"] == FAILED and rec["error_code"] == "time_limit" and "limit" in rec["error"]
    for tid in (slow, victim):
        job = int((h.store.task_dir(tid) / "runs.txt").read_text().split()[1])
        child = int((h.store.task_dir(tid) / "child.pid").read_text())
        assert wait_dead(job), "the job process survived"
        assert wait_dead(child), "the job's child process (its ffmpeg) survived"
        assert h.runs(tid) == [1]


def test_a_crashing_job_runs_again_then_fails_after_max_attempts(h):
    flaky = h.add(outcome="crash_first")
    doomed = h.add(outcome="crash")
    h.start_workers(1, max_attempts=2)
    rec = h.wait(flaky)
    assert rec["status"] == SUCCESS and rec["attempts"] == 2 and h.runs(flaky) == [1, 2]
    rec = h.wait(doomed)
    assert rec["status"] == FAILED and rec["error_code"] == "crashed" and "2 times" in rec["error"]
    assert h.runs(doomed) == [1, 2]
    # what is known (the job process was killed by signal 9) and nothing guessed: no memory without the
    # kernel's word (its out-of-memory kill count did not move)
    assert rec["error_params"]["reason"] == "signal" and rec["error_params"]["signal"] == 9, rec
    assert "killed by signal 9" in rec["error"] and "memory" not in rec["error"], rec["error"]


def test_a_killed_ffmpeg_runs_the_job_again_and_the_crash_says_what_died(h):
    """A job whose ffmpeg was killed by a signal (crash.json + EXIT_RETRY) is retried like a crashed
    job, within the attempt limit; when every attempt is killed, the error says what died and how,
    and guesses nothing about memory."""
    flaky = h.add(outcome="ffmpeg_killed_first")
    doomed = h.add(outcome="ffmpeg_killed")
    h.start_workers(1, max_attempts=2)
    rec = h.wait(flaky)
    assert rec["status"] == SUCCESS and rec["attempts"] == 2 and h.runs(flaky) == [1, 2]
    rec = h.wait(doomed)
    assert rec["status"] == FAILED and rec["error_code"] == "crashed" and h.runs(doomed) == [1, 2]
    assert rec["error_params"] == {"attempts": 2, "reason": "ffmpeg_signal", "signal": 9, "step": "render"}, rec
    assert "the video writer was killed by signal 9" in rec["error"], rec["error"]
    assert "memory" not in rec["error"], rec["error"]


def test_shutdown_requeues_without_counting_and_a_new_worker_finishes(h):
    tid = h.add(steps=40, step_s=0.05, child=True)
    [w] = h.start_workers(1)
    h.wait(tid, statuses=(PROCESSING,), pred=lambda r: h.has_child(tid))
    time.sleep(0.2)
    h.stop(w)
    rec = h.store.get(tid)
    assert rec["status"] == PENDING and rec["attempts"] == 0 and h.store.queue_length() == 1, rec
    assert h.store.running() == {}
    assert not alive(int((h.store.task_dir(tid) / "child.pid").read_text()))
    if h.celery:  # the first message was acknowledged; the task went back to the broker once
        assert h.broker_queue() == [tid]
    h.start_workers(1)
    rec = h.wait(tid)
    assert rec["status"] == SUCCESS and rec["attempts"] == 1
    assert h.runs(tid) == [1, 1]  # two runs, both the first attempt
    assert [x["outcome"] for x in rec["history"]] == ["interrupted", SUCCESS]


def test_cancel_just_before_a_clean_shutdown_ends_cancelled(h):
    """A cancel that the worker has not acted on yet when it is stopped: the task ends cancelled; it is
    neither queued again (Celery: its message was revoked, so it would wait forever) nor run again."""
    tid = h.add(steps=100, step_s=0.1)
    workers = h.start_workers(2, processes=True)
    rec = h.wait(tid, statuses=(PROCESSING,), pred=lambda r: h.runs(tid))
    holder = next(w for w in workers if w.proc.pid == pid_of(rec["worker"]))
    h.store.request_cancel(tid)
    h.stop(holder)
    rec = h.wait(tid, timeout=10)
    assert rec["status"] == FAILED and rec["error_code"] == "cancelled", rec
    assert h.store.queue_length() == 0 and h.store.running() == {}
    time.sleep(1.0)  # the other worker is idle: it must not run it again
    assert h.runs(tid) == [1]


def test_a_dead_workers_task_is_taken_over_after_its_heartbeat_stops(h):
    """A task left 'processing' by a worker on another machine (no pid to check) is detected by its
    stale heartbeat and run again by another worker."""
    tid = h.add()
    lost = "elsewhere:123:abcd/0"
    assert (h.store.claim_task(tid, lost) if h.celery else h.store.claim(lost)) is not None
    h.start_workers(1)  # (Celery: its message finds the task held by a live-looking worker, and is dropped)
    rec = h.wait(tid, timeout=15)
    assert rec["status"] == SUCCESS and rec["attempts"] == 2 and h.runs(tid) == [2]
    assert [x["outcome"] for x in rec["history"]] == ["interrupted", SUCCESS]
    assert rec["history"][0]["worker"] == lost


def test_a_killed_workers_task_is_taken_over_by_another_worker(h):
    """kill -9 of the worker process running a job: another worker sees its process gone, and runs the
    task again (counted as an attempt)."""
    tid = h.add(steps=20, step_s=0.1)
    workers = h.start_workers(2, processes=True)
    rec = h.wait(tid, statuses=(PROCESSING,), timeout=30, pred=lambda r: h.runs(tid))
    holder = next(w for w in workers if w.proc.pid == pid_of(rec["worker"]))
    h.kill9(holder)
    rec = h.wait(tid, timeout=30)
    assert rec["status"] == SUCCESS and rec["attempts"] == 2, rec
    assert h.runs(tid) == [1, 2]
    assert [x["outcome"] for x in rec["history"]] == ["interrupted", SUCCESS]
    assert pid_of(rec["history"][1]["worker"]) != holder.proc.pid
    assert h.store.running() == {} and h.store.queue_length() == 0


def test_ttl_sweep_removes_finished_tasks_uploads_and_stray_folders(h):
    tid = h.add()
    fid = new_id()
    h.store.upload_dir(fid).mkdir(parents=True)
    h.store.add_upload({"file_id": fid, "created": time.time(), "file": "data.mp4"})
    stray, young = h.store.tasks_root / new_id(), h.store.tasks_root / new_id()
    stray.mkdir()
    young.mkdir()  # a submission in progress: its record is not written yet
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    h.start_workers(1, ttl_s=0.5)
    deadline = time.monotonic() + 15
    while (not h.store.is_gone(tid) or h.store.task_dir(tid).exists() or h.store.get_upload(fid) is not None
           or h.store.upload_dir(fid).exists() or stray.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert h.store.get(tid) is None and h.store.is_gone(tid) and not h.store.task_dir(tid).exists(), h.log_tails()
    assert h.store.get_upload(fid) is None and not h.store.upload_dir(fid).exists()
    assert not stray.exists() and young.is_dir()


# ----------------------------------------------------------------------------- celery only


@pytest.mark.parametrize("h", ["celery"], indirect=True)
def test_a_duplicate_delivery_is_dropped(h):
    """At-least-once delivery: the same task id sent again, while it runs (another worker gets it) and
    after it finished, is dropped; the job ran once."""
    tid = h.add(steps=20, step_s=0.1)
    h.start_workers(2)
    h.wait(tid, statuses=(PROCESSING,), pred=lambda r: h.runs(tid))
    h.store.broker.send(tid)  # the idle worker takes it at once
    deadline = time.monotonic() + 10
    while h.log_text().count("'dropped'") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert h.log_text().count("'dropped'") == 1 and h.store.get(tid)["status"] == PROCESSING, h.log_tails()
    rec = h.wait(tid)
    h.store.broker.send(tid)
    deadline = time.monotonic() + 10
    while (h.broker_queue() or h.log_text().count("'dropped'") < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert h.broker_queue() == []
    assert h.log_text().count("'dropped'") == 2, h.log_tails()
    assert rec["status"] == SUCCESS and rec["attempts"] == 1 and h.runs(tid) == [1]
    assert h.store.get(tid) == rec  # the duplicates changed nothing


@pytest.mark.parametrize("h", ["celery"], indirect=True)
def test_resend_lost_sends_a_task_whose_message_was_never_sent(h):
    """A task stored while the broker was unreachable (or the web server died before sending it) is
    sent by a worker's maintenance: `resend_lost`."""
    s = h.settings()
    unsent = RedisTaskStore(h.data_dir, s.redis_url, prefix=s.redis_prefix, broker=None)
    try:
        tid = new_id()
        (unsent.task_dir(tid) / "out").mkdir(parents=True)
        unsent.create({"task_id": tid, "inputs": {}, "options": {}, "behaviour": {}}, queue_max=10)
    finally:
        unsent.close()
    assert h.store.get(tid)["status"] == PENDING and h.store.get(tid)["dispatched"] is None
    assert h.broker_queue() == [] and h.store.queue_length() == 1
    assert h.store.resend_lost(60) == 0  # too young: its sender may still be about to send it
    time.sleep(0.05)
    assert h.store.resend_lost(0) == 1
    assert h.broker_queue() == [tid] and h.store.get(tid)["dispatched"]
    assert h.store.resend_lost(0) == 0  # sent now
    h.start_workers(1)
    rec = h.wait(tid)
    assert rec["status"] == SUCCESS and rec["attempts"] == 1 and h.runs(tid) == [1]


# ----------------------------------------------------------------------------- batches


def _batch(h: Harness, n: int, *, queue_max: int = 100, **behaviour) -> tuple[str, list[str]]:
    """A batch of ``n`` tasks stored with `Store.create_batch` (as `BeatSync.submit_batch` does)."""
    batch_id, ids = new_id(), [new_id() for _ in range(n)]
    for tid in ids:
        (h.store.task_dir(tid) / "out").mkdir(parents=True)
    records = [{"task_id": tid, "inputs": {}, "options": {}, "behaviour": behaviour, "batch_id": batch_id}
               for tid in ids]
    batch = {"batch_id": batch_id, "task_ids": ids, "created": time.time(), "owner_hash": None, "song": "song.wav"}
    stored = h.store.create_batch(batch, records, queue_max=queue_max)
    assert [r["task_id"] for r in stored] == ids and {r["status"] for r in stored} == {PENDING}
    return batch_id, ids


def test_a_batch_is_queued_all_or_none_in_its_order(h):
    first = h.add(queue_max=4)
    batch_id, ids = _batch(h, 3, queue_max=4)
    assert h.store.queue_length() == 4
    got = h.store.get_batch(batch_id)
    assert got["task_ids"] == ids and got["song"] == "song.wav"
    assert all(h.store.get(t)["batch_id"] == batch_id for t in ids)
    # no room for a whole batch: nothing of it is stored, whatever room there is for part of it
    h.store.request_cancel(ids[1])
    assert h.store.queue_length() == 3
    refused_batch, refused = new_id(), [new_id(), new_id()]
    with pytest.raises(BeatSyncError) as e:
        h.store.create_batch({"batch_id": refused_batch, "task_ids": refused, "created": time.time(),
                              "owner_hash": None, "song": "s"},
                             [{"task_id": t, "inputs": {}, "options": {}} for t in refused], queue_max=4)
    assert e.value.code == "busy" and e.value.params == {"queued": 3, "asked": 2}, e.value.params
    assert "no room for the 2 class videos" in e.value.message
    assert h.store.queue_length() == 3 and h.store.get_batch(refused_batch) is None
    assert all(h.store.get(t) is None for t in refused)
    if h.celery:  # one message per task, in submission order (the refused ones never sent)
        assert h.broker_queue() == [first, *ids]
    else:
        assert [h.store.claim("w")["task_id"] for _ in range(3)] == [first, ids[0], ids[2]]
    assert h.store.get_batch(new_id()) is None


def test_a_batch_expires_with_the_last_of_its_tasks(h):
    """The store forgets a batch only once none of its tasks is left; the maintenance pass does it after
    the TTL, leaving the same marker as an expired task's."""
    batch_id, ids = _batch(h, 2)
    for tid in ids:
        rec = h.store.claim_task(tid, "w") if h.celery else h.store.claim("w")
        h.store.finish(rec["task_id"], 1, SUCCESS, outputs={})
    assert h.store.batches_before(time.time() + 1) == [batch_id] and h.store.batches_before(time.time() - 60) == []
    assert h.store.expire_batch(batch_id) is False  # its tasks are still there
    h.store.expire(ids[0])
    assert h.store.expire_batch(batch_id) is False and h.store.get_batch(batch_id) is not None
    h.store.expire(ids[1])
    assert h.store.expire_batch(batch_id) is True
    assert h.store.get_batch(batch_id) is None and h.store.is_gone(batch_id)
    assert h.store.batches_before(time.time() + 1) == []
    # the maintenance pass of a worker: tasks and then their batch go after the TTL
    batch_id, ids = _batch(h, 2)
    h.start_workers(1, ttl_s=0.5)
    deadline = time.monotonic() + 20
    while not h.store.is_gone(batch_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert h.store.get_batch(batch_id) is None and h.store.is_gone(batch_id), h.log_tails()
    assert all(h.store.get(t) is None and h.store.is_gone(t) for t in ids)

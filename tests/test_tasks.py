"""Task store and executor on a real diskcache, with real processes (the job is a stand-in that
follows the job protocol without audio: tests/fake_job.py). The whole stack with real jobs and a
real server is in test_api_server.py and test_task_recovery.py."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pytest

from beatsync.errors import BeatSyncError
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
)

FAKE_JOB = str(Path(__file__).with_name("fake_job.py"))


def fake_argv(store: TaskStore):
    return lambda task_id, attempt: [sys.executable, FAKE_JOB, "--data-dir", str(store.root), "--attempt", str(attempt),
                                     task_id]


def settings(tmp_path, **kw) -> Settings:
    base = {"data_dir": tmp_path, "workers": 1, "heartbeat_s": 0.2, "stale_s": 1.0, "sweep_s": 0.3, "poll_s": 0.05}
    return Settings.from_env({}, **{**base, **kw})


def add_task(store: TaskStore, *, queue_max: int = 100, **behaviour) -> str:
    tid = new_id()
    (store.task_dir(tid) / "out").mkdir(parents=True)
    store.create({"task_id": tid, "inputs": {}, "options": {}, "behaviour": behaviour}, queue_max=queue_max)
    return tid


def wait_for(store: TaskStore, tid: str, statuses=(SUCCESS, FAILED), timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = store.get(tid)
        if rec is not None and rec["status"] in statuses:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"task {tid} did not reach {statuses}: {store.get(tid)}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- store


def test_ids_are_checked_never_used_raw():
    assert check_id(new_id())
    for bad in ("../etc/passwd", "", None, 5, "ABC", new_id().upper(), new_id() + "/x", "0" * 36):
        with pytest.raises(BeatSyncError) as e:
            check_id(bad)
        assert e.value.code == "bad_id"


def test_queue_is_fifo_bounded_and_cancel_frees_a_place(tmp_path):
    store = TaskStore(tmp_path)
    ids = [add_task(store, queue_max=3) for _ in range(3)]
    with pytest.raises(BeatSyncError) as e:
        add_task(store, queue_max=3)
    assert e.value.code == "busy" and "try again" in e.value.message
    assert store.queue_length() == 3
    store.request_cancel(ids[1])
    assert store.get(ids[1])["status"] == FAILED and store.get(ids[1])["error_code"] == "cancelled"
    assert store.queue_length() == 2
    add_task(store, queue_max=3)  # the cancelled task's place is free again
    claimed = [store.claim("w")["task_id"] for _ in range(3)]
    assert claimed[:2] == [ids[0], ids[2]] and store.claim("w") is None and store.queue_length() == 0


def test_attempts_guard_every_write(tmp_path):
    store = TaskStore(tmp_path)
    tid = add_task(store)
    rec = store.claim("w1")
    assert rec["status"] == PROCESSING and rec["attempts"] == 1 and tid in store.running()
    assert store.report_progress(tid, 1, 40, "work", "x")
    assert store.report_progress(tid, 1, 10, "work", "y")  # accepted, but progress never goes down
    assert store.get(tid)["progress"] == 40
    assert store.requeue(tid, 1, message="interrupted")["status"] == PENDING
    assert not store.report_progress(tid, 1, 50, "work", "stale writer")  # the old attempt lost the task
    assert store.finish(tid, 1, SUCCESS) is None
    rec = store.claim("w2")
    assert rec["attempts"] == 2 and rec["progress"] == 40  # progress kept across the restart
    assert store.finish(tid, 2, SUCCESS, outputs={})["status"] == SUCCESS
    assert store.finish(tid, 2, FAILED) is None  # a finished task stays finished
    assert tid not in store.running() and store.get(tid)["progress"] == 100


def test_expire_deletes_files_and_leaves_a_marker(tmp_path):
    store = TaskStore(tmp_path)
    tid = add_task(store)
    store.claim("w")
    store.finish(tid, 1, FAILED, error="x", error_code="x")
    assert store.finished_before(time.time() + 1) == [tid]
    store.expire(tid)
    assert store.get(tid) is None and store.is_gone(tid) and not store.task_dir(tid).exists()


def _claim_all(data_dir: str, worker: str, out) -> None:
    store = TaskStore(data_dir)
    got = []
    while (rec := store.claim(worker)) is not None:
        got.append(rec["task_id"])
        store.finish(rec["task_id"], rec["attempts"], SUCCESS)
    out.put(got)


def test_each_task_is_claimed_exactly_once_across_processes(tmp_path):
    store = TaskStore(tmp_path)
    ids = [add_task(store, queue_max=1000) for _ in range(300)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(tmp_path), f"p{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    flat = [t for g in got for t in g]
    assert sorted(flat) == sorted(ids)  # every task once, none twice
    assert sum(1 for g in got if g) >= 2  # the processes really competed
    assert all(store.get(t)["attempts"] == 1 for t in ids)


# ----------------------------------------------------------------------------- executor


def test_executor_runs_reports_progress_and_concludes(tmp_path):
    s = settings(tmp_path)
    store = TaskStore(tmp_path)
    ok = add_task(store, steps=4)
    bad = add_task(store, outcome="error")
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        seen = []
        deadline = time.monotonic() + 30
        while store.get(ok)["status"] not in (SUCCESS, FAILED) and time.monotonic() < deadline:
            seen.append(store.get(ok)["progress"])
            time.sleep(0.01)
        rec = wait_for(store, ok)
        assert rec["status"] == SUCCESS and rec["outputs"] == {"modular": "out/result.mp4"}
        assert seen == sorted(seen) and any(0 < p < 100 for p in seen)
        rec = wait_for(store, bad)
        assert rec["status"] == FAILED and rec["error_code"] == "song_not_found" and rec["error"] == "It went wrong."
    finally:
        ex.stop()


def test_time_limit_and_cancel_kill_the_job_and_its_children(tmp_path):
    s = settings(tmp_path, time_limit_s=1.5, workers=2)
    store = TaskStore(tmp_path)
    slow = add_task(store, steps=100, step_s=0.1, child=True)
    victim = add_task(store, steps=100, step_s=0.1, child=True)
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        wait_for(store, victim, statuses=(PROCESSING,))
        time.sleep(0.5)
        store.request_cancel(victim)
        rec = wait_for(store, victim, timeout=5)
        assert rec["error_code"] == "cancelled" and "cancelled" in rec["error"]
        rec = wait_for(store, slow, timeout=10)
        assert rec["status"] == FAILED and rec["error_code"] == "time_limit" and "limit" in rec["error"]
        for tid in (slow, victim):
            pid = int((store.task_dir(tid) / "child.pid").read_text())
            deadline = time.monotonic() + 3
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(pid), "the job's child process (its ffmpeg) survived"
    finally:
        ex.stop()


def test_a_crashing_job_runs_again_then_fails_after_max_attempts(tmp_path):
    s = settings(tmp_path, max_attempts=2)
    store = TaskStore(tmp_path)
    flaky = add_task(store, outcome="crash_first")
    doomed = add_task(store, outcome="crash")
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        rec = wait_for(store, flaky)
        assert rec["status"] == SUCCESS and rec["attempts"] == 2
        rec = wait_for(store, doomed)
        assert rec["status"] == FAILED and rec["error_code"] == "crashed" and "2 times" in rec["error"]
        runs = (store.task_dir(doomed) / "runs.txt").read_text().split("\n")
        assert len([r for r in runs if r]) == 2
    finally:
        ex.stop()


def test_shutdown_requeues_without_counting_and_a_new_executor_finishes(tmp_path):
    s = settings(tmp_path)
    store = TaskStore(tmp_path)
    tid = add_task(store, steps=40, step_s=0.05, child=True)
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    wait_for(store, tid, statuses=(PROCESSING,))
    time.sleep(0.3)
    ex.stop()
    rec = store.get(tid)
    assert rec["status"] == PENDING and rec["attempts"] == 0 and store.queue_length() == 1
    assert not alive(int((store.task_dir(tid) / "child.pid").read_text()))
    ex2 = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        rec = wait_for(store, tid)
        assert rec["status"] == SUCCESS and rec["attempts"] == 1
    finally:
        ex2.stop()


def test_a_dead_workers_task_is_taken_over_after_its_heartbeat_stops(tmp_path):
    """A task left 'processing' by a worker on another machine (no pid to check) is detected by its
    stale heartbeat and run again by another executor."""
    s = settings(tmp_path)
    store = TaskStore(tmp_path)
    tid = add_task(store)
    store.claim("elsewhere:123:abcd/0")  # claimed by a worker that then vanished
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        rec = wait_for(store, tid, timeout=15)
        assert rec["status"] == SUCCESS and rec["attempts"] == 2
        assert [h["outcome"] for h in rec["history"]] == ["interrupted", SUCCESS]
    finally:
        ex.stop()


def test_ttl_sweep_removes_finished_tasks_uploads_and_stray_folders(tmp_path):
    s = settings(tmp_path, ttl_s=0.5)
    store = TaskStore(tmp_path)
    tid = add_task(store)
    fid = new_id()
    store.upload_dir(fid).mkdir(parents=True)
    store.add_upload({"file_id": fid, "created": time.time(), "file": "data.mp4"})
    stray = store.tasks_root / new_id()
    stray.mkdir()
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    ex = Executor(store, s, job_argv=fake_argv(store)).start()
    try:
        wait_for(store, tid)
        deadline = time.monotonic() + 10
        while (store.get(tid) is not None or store.get_upload(fid) is not None or stray.exists()) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get(tid) is None and store.is_gone(tid) and not store.task_dir(tid).exists()
        assert store.get_upload(fid) is None and not store.upload_dir(fid).exists()
        assert not stray.exists()
    finally:
        ex.stop()

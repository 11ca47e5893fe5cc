"""Running one claimed task as a child process, and the maintenance of a store: shared by both
backends (the embedded `Executor`'s worker threads, and the Celery workers of `celery_app`).

A job runs in its own process (its own session, so its ffmpeg children are in its process group):
a time limit, a cancellation or a shutdown kills the whole group, a job that runs out of memory
takes down only itself, and the worker's threads never compete with the numerics for the GIL.
`Supervisor` watches it: heartbeats into the store, watches for cancellation and the time limit,
and turns the child's exit into the task's final state.

The child protocol (see `beatsync.job`): it is started as ``<job command> --data-dir D --attempt N
TASK_ID``, reports progress through the store, and before exiting writes ``result.json`` (exit 0)
or ``error.json`` (exit 2: ``{"error", "error_code", ...}``) into the task folder; exit 3 (with
``crash.json`` when its ffmpeg was killed by a signal) or death by a signal runs it again. A crashed
task's error says what is known (`crash_reason`: the signal, which part died; out of memory only on
the kernel's word, `beatsync.tasks.oom`).

`Maintenance` (one per worker process) registers the process as alive, takes over tasks whose
worker stopped heartbeating (a killed server or worker process): they run again, up to
``max_attempts`` runs, then fail; re-sends queued tasks whose queue message was lost; and deletes
finished tasks, uploads and stray folders after the TTL (and a batch's record with the last of its
tasks), and the entries of the data directory's caches (`beatsync.cachedir`: the songs jobs share)
unused for as long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from beatsync import cachedir
from beatsync.contract import FAILED, PROCESSING, SUCCESS, Stage
from beatsync.errors import BeatSyncError
from beatsync.messages import stage_text, task_error
from beatsync.tasks.interfaces import (
    CRASH_FILE,
    ERROR_FILE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RETRY,
    LOG_FILE,
    RESULT_FILE,
    STORE_UNAVAILABLE,
    Store,
)
from beatsync.tasks.oom import OomWatch
from beatsync.tasks.settings import Settings
from beatsync.tasks.store import cancelled_fields

log = logging.getLogger("beatsync.tasks")

JobArgv = Callable[[str, int], list[str]]  # (task_id, attempt) -> argv of the job process
_STRAY_GRACE_S = 3600.0  # a folder without a record older than this was left by a crash
_LOST_MESSAGE_S = 60.0  # a queued task whose queue message was never sent is re-sent after this long
_CGROUP_AGAIN_S = 2.0  # the job's cgroups are read again this long after its start (a memory-capped scope)


#: jobs are batch work, below the server's priority: pages and status polls stay fast while every
#: core is busy with jobs. Linux's SCHED_IDLE lets any normal thread (the web server's) preempt a
#: job at once; elsewhere a higher nice value. Set from here right after the spawn, so that it
#: covers the job's start-up (its imports take a second of CPU); its ffmpeg children inherit it.
JOB_NICE = 10


def _stage(stage: Stage) -> dict:
    """A record's stage fields for ``stage`` (its code, its English text)."""
    return {"stage": stage.value, "message": stage_text(stage)}


def lower_priority(pid: int) -> None:
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, JOB_NICE)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job process and everything in its process group (ffmpeg), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
    proc.wait()


def job_argv(settings: Settings) -> JobArgv:
    """The job process's command line: ``settings.job_command`` (``python -m beatsync.job`` unless
    configured, e.g. wrapped in a memory-capped scope) + ``--data-dir D --attempt N TASK_ID``."""
    base = list(settings.job_command) or [sys.executable, "-m", "beatsync.job"]
    return lambda task_id, attempt: [*base, "--data-dir", str(settings.data_dir), "--attempt", str(attempt), task_id]


def job_env(settings: Settings, concurrency: int) -> dict[str, str]:
    """A job's environment: the store it reports to (the worker's backend, whatever the worker's own
    environment says), and numeric libraries get one job's share of the cores, so that
    ``concurrency`` jobs at once do not oversubscribe the machine."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, concurrency)))
    return {**os.environ, **{v: threads for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
            "BEATSYNC_BACKEND": settings.backend, "BEATSYNC_REDIS_URL": settings.redis_url,
            "BEATSYNC_REDIS_PREFIX": settings.redis_prefix}


class Supervisor:
    """Runs claimed attempts as child processes and concludes them (any number of threads at once)."""

    def __init__(self, store: Store, settings: Settings, *, job_argv: JobArgv, job_env: dict[str, str] | None,
                 stopping: threading.Event):
        self.store = store
        self.settings = settings
        self.job_argv = job_argv
        self.job_env = job_env
        self.stopping = stopping  # set when this worker shuts down: running jobs go back to the queue
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def is_running(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._running

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._running.values())
        for p in procs:
            kill_group(p)

    def run(self, rec: dict, worker: str) -> str:
        """Run the attempt ``rec`` (just claimed by ``worker``) to its end; returns the outcome."""
        task_id, attempt = rec["task_id"], rec["attempts"]
        proc = None
        try:
            folder = self.store.task_dir(task_id)
            for name in (RESULT_FILE, ERROR_FILE, CRASH_FILE):
                (folder / name).unlink(missing_ok=True)
            # each attempt writes into out/<attempt>/ (a run presumed dead that still lives for a moment
            # cannot touch it); the partial files of interrupted runs go
            shutil.rmtree(folder / "out", ignore_errors=True)
            (folder / "out" / str(attempt)).mkdir(parents=True, exist_ok=True)
            with open(folder / LOG_FILE, "ab") as logf:
                logf.write(f"--- attempt {attempt} by {worker} at {time.ctime()}\n".encode())
                logf.flush()
                proc = subprocess.Popen(self.job_argv(task_id, attempt), stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                        env=self.job_env)
            lower_priority(proc.pid)
            oom = OomWatch(proc.pid)  # the kernel's out-of-memory kill counts, to tell a crash's cause
            with self._lock:
                self._running[task_id] = proc
            try:
                outcome = self._supervise(proc, task_id, attempt, worker, oom)
            finally:
                with self._lock:
                    self._running.pop(task_id, None)
            self._until_stored(lambda: self._conclude(task_id, attempt, outcome, proc.returncode, folder, oom))
            return outcome
        except Exception as e:
            if proc is not None and proc.poll() is None:
                kill_group(proc)  # never leave a job running unwatched
            if isinstance(e, BeatSyncError) and e.code == STORE_UNAVAILABLE:
                # the store stayed out of reach (or this worker is stopping): the record still says this
                # attempt runs; once its heartbeat is stale, a worker's maintenance runs it again
                log.warning("task %s attempt %d: %s; left for takeover", task_id, attempt, e.message)
                return "store_unavailable"
            # the supervisor itself failed: the task must not stay "processing" forever
            log.exception("running task %s failed", task_id)
            with contextlib.suppress(Exception):
                self.store.finish(task_id, attempt, FAILED, error_code="internal", error=task_error("internal"),
                                  **_stage(Stage.FAILED))
            return "internal"

    def _until_stored(self, write: Callable[[], None]) -> None:
        """Run a store write, retrying while the store is out of reach (a Redis restart) unless this
        worker is stopping; backs off up to 10 s between tries."""
        delay = 0.5
        while True:
            try:
                return write()
            except BeatSyncError as e:
                if e.code != STORE_UNAVAILABLE or self.stopping.is_set():
                    raise
                log.warning("task store unavailable (%s); trying again in %.1f s", e.message, delay)
                self.stopping.wait(delay)
                delay = min(10.0, delay * 2)

    def _supervise(self, proc: subprocess.Popen, task_id: str, attempt: int, worker: str,
                   oom: OomWatch | None = None) -> str:
        s = self.settings
        t0 = time.monotonic()
        last_hb = last_check = t0
        outage = False
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                return "shutdown" if self.stopping.is_set() and rc < 0 else "exited"  # killed by kill_all()
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if oom is not None and now - t0 >= _CGROUP_AGAIN_S:
                oom.add(proc.pid)
                oom = None
            if self.stopping.is_set():
                kill_group(proc)
                return "shutdown"
            if now - t0 > s.time_limit_s:
                kill_group(proc)
                return "time_limit"
            try:
                if now - last_hb >= s.heartbeat_s or outage:
                    self.store.heartbeat(task_id, worker)
                    last_hb = now
                if now - last_check >= 0.5:
                    last_check = now
                    rec = self.store.get(task_id)
                    if rec is None or rec["status"] != PROCESSING or rec["attempts"] != attempt:
                        kill_group(proc)  # another worker took it over (we were presumed dead), or it expired
                        return "lost"
                    if rec.get("cancel_requested"):
                        kill_group(proc)
                        return "cancelled"
            except BeatSyncError as e:  # the store is out of reach for a moment: the job goes on,
                if e.code != STORE_UNAVAILABLE:  # watched (time limit), and heartbeats resume when it is back
                    raise
                if not outage:
                    log.warning("task %s: %s; the job goes on", task_id, e.message)
                outage = True
                continue
            if outage:
                log.info("task %s: the task store is reachable again", task_id)
            outage = False

    def _conclude(self, task_id: str, attempt: int, outcome: str, rc: int | None, folder: Path,
                  oom: OomWatch | None = None) -> None:
        store, s = self.store, self.settings
        if outcome == "lost":
            return
        if outcome == "shutdown":
            self._requeue(task_id, attempt, count_attempt=False, stage=Stage.RESTARTED)
            return
        if outcome == "cancelled":
            self.cancelled(task_id, attempt)
            return
        if outcome == "time_limit":
            params = {"limit_s": s.time_limit_s}
            store.finish(task_id, attempt, FAILED, error_code="time_limit", error=task_error("time_limit", **params),
                         error_params=params, **_stage(Stage.TIME_LIMIT))
            return
        if rc == EXIT_OK:
            try:
                result = json.loads((folder / RESULT_FILE).read_text())
                missing = [p for p in result.get("outputs", {}).values() if not (folder / p).is_file()]
            except (OSError, ValueError) as e:
                result, missing = None, [str(e)]
            if result is not None and not missing:  # (the result's own fields are none of the task system's)
                store.finish(task_id, attempt, SUCCESS, **{**_stage(Stage.DONE), **result})
                return
            store.finish(task_id, attempt, FAILED, error_code="internal", error=task_error("results_missing"),
                         **_stage(Stage.FAILED))
            return
        if rc == EXIT_ERROR:
            try:
                err = json.loads((folder / ERROR_FILE).read_text())
            except (OSError, ValueError):
                err = {}
            store.finish(task_id, attempt, FAILED, error=err.get("error") or task_error("failed"),
                         error_code=err.get("error_code", "internal"), error_params=err.get("error_params") or {},
                         **_stage(Stage.FAILED))
            return
        # killed by a signal (out of memory, kill -9), a part of it killed (ffmpeg: EXIT_RETRY with CRASH_FILE),
        # or an exit without a report: run it again, a bounded number of times
        self.retry_or_fail(task_id, attempt, crash_reason(rc, folder, oom))

    def _requeue(self, task_id: str, attempt: int, **kw) -> None:
        """Put the task back in the queue, or end it as cancelled when that was asked for meanwhile."""
        if self.store.requeue(task_id, attempt, **kw) is None:
            rec = self.store.get(task_id)
            if rec is not None and rec.get("cancel_requested"):
                self.cancelled(task_id, attempt)

    def cancelled(self, task_id: str, attempt: int | None) -> None:
        self.store.finish(task_id, attempt, FAILED, **cancelled_fields())

    def retry_or_fail(self, task_id: str, attempt: int, why: dict) -> None:
        """An attempt ended without a report (its process or its worker died; ``why``: `crash_reason`
        or ``{"reason": "worker_lost"}``): queue the task again, or end it as ``crashed`` when it has
        had ``max_attempts`` runs."""
        s = self.settings
        rec = self.store.get(task_id)
        if rec is None:
            return
        if rec.get("cancel_requested"):
            self.cancelled(task_id, attempt)
        elif attempt >= s.max_attempts:
            params = {"attempts": attempt, **why}
            self.store.finish(task_id, attempt, FAILED, error_code="crashed", error=task_error("crashed", **params),
                              error_params=params, **_stage(Stage.FAILED))
        else:
            log.warning("task %s attempt %d: %s; running it again", task_id, attempt, why)
            self._requeue(task_id, attempt, stage=Stage.RETRY,
                          stage_params={"attempt": attempt + 1, "max": s.max_attempts})


def crash_reason(rc: int | None, folder: Path, oom: OomWatch | None = None) -> dict:
    """Why an attempt ended without a report, as a crashed task's ``error_params``: what is known and
    nothing more. ``{"reason": "signal", "signal": n}`` (the job process was killed), ``{"reason":
    "ffmpeg_signal", "signal", "step"}`` (its decoder or video writer was: the job's `CRASH_FILE`), or
    ``{"reason": "exit", "exit_code"}``; with ``"oom": True`` only for a SIGKILL while the kernel
    counted an out-of-memory kill in the job's cgroups (`OomWatch`)."""
    why: dict
    if rc is not None and rc < 0:
        why = {"reason": "signal", "signal": -rc}
    else:
        why = {"reason": "exit", "exit_code": rc}
        if rc == EXIT_RETRY:
            try:
                crash = json.loads((folder / CRASH_FILE).read_text())
            except (OSError, ValueError):
                crash = None
            if isinstance(crash, dict) and crash.get("reason") == "ffmpeg_signal":
                why = {"reason": "ffmpeg_signal", "signal": crash.get("signal"),
                       **({"step": crash["step"]} if crash.get("step") else {})}
    if why.get("signal") == signal.SIGKILL and oom is not None and oom.killed():
        why["oom"] = True
    return why


def worker_dead(worker: str, *, host: str, node_id: str) -> bool:
    """Fast path: ``worker`` (``host:pid:token/...``) ran on this host and its process is gone, or it is
    a previous life of this process (same pid, another token)."""
    try:
        w_host, pid_s, token = worker.split("/")[0].split(":")
        pid = int(pid_s)
    except ValueError:
        return False
    if w_host != host:
        return False
    if pid == os.getpid():
        return f"{w_host}:{pid}:{token}" != node_id
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Maintenance:
    """The periodic duties of one worker process (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings, supervisor: Supervisor, *, node_id: str, host: str,
                 threads: int):
        self.store = store
        self.settings = settings
        self.supervisor = supervisor
        self.node_id = node_id
        self.host = host
        self.threads = threads

    def register(self) -> None:
        s = self.settings
        self.store.register_worker(self.node_id, {"host": self.host, "pid": os.getpid(), "threads": self.threads},
                                   forget_after_s=max(s.stale_s, 3 * s.sweep_s) * 4)

    def unregister(self) -> None:
        with contextlib.suppress(Exception):
            self.store.unregister_worker(self.node_id)

    def holder_dead(self, task_id: str, worker: str, now: float | None = None) -> bool:
        """The worker holding a running task stopped: no heartbeat for ``stale_s``, or its process is gone."""
        now = time.time() if now is None else now
        hb = self.store.last_heartbeat(task_id)
        stale = hb is None or now - hb[0] > self.settings.stale_s
        return stale or worker_dead(worker, host=self.host, node_id=self.node_id)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.sweep_s):
            try:
                self.register()
                self.once()
            except BeatSyncError as e:  # the store is out of reach: the next pass will do it
                log.warning("maintenance pass skipped: %s", e.message)
            except Exception:
                log.exception("maintenance pass failed")

    def once(self) -> None:
        s, store = self.settings, self.store
        now = time.time()
        for task_id, info in store.running().items():
            if not self.supervisor.is_running(task_id) and self.holder_dead(task_id, info["worker"], now):
                self.supervisor.retry_or_fail(task_id, info["attempt"], {"reason": "worker_lost"})
        store.resend_lost(_LOST_MESSAGE_S)
        for task_id in store.finished_before(now - s.ttl_s):
            store.expire(task_id)
        for batch_id in store.batches_before(now - s.ttl_s):  # (gone with the last of its tasks)
            store.expire_batch(batch_id)
        for file_id in store.uploads_before(now - s.ttl_s):
            store.remove_upload(file_id)
        cachedir.expire_all(store.root, before=now - s.ttl_s)  # (the songs the jobs shared, `beatsync.songcache`)
        self._remove_strays(now)

    def _remove_strays(self, now: float) -> None:
        """Folders with no record (an upload or submission cut short by a crash)."""
        grace = min(_STRAY_GRACE_S, max(60.0, self.settings.ttl_s))
        for root, known in ((self.store.tasks_root, self.store.get), (self.store.uploads_root, self.store.get_upload)):
            for d in root.iterdir():
                try:
                    young = now - d.stat().st_mtime < grace
                except OSError:
                    continue
                if not young and known(d.name) is None:
                    shutil.rmtree(d, ignore_errors=True)

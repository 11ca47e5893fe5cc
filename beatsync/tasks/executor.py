"""Executor: worker threads that take tasks from the store's queue and run each in a child process.

A job runs in its own process (its own session, so its ffmpeg children are in its process group):
a time limit, a cancellation or a shutdown kills the whole group, a job that runs out of memory
takes down only itself, and the web server's threads never compete with the numerics for the GIL.
The worker thread supervises it: heartbeats into the store, watches for cancellation and the time
limit, and turns the child's exit into the task's final state.

The child protocol (see `beatsync.job`): it is started with the task id and attempt number,
reports progress through the store, and before exiting writes ``result.json`` (exit 0) or
``error.json`` (exit 2: ``{"error", "error_code", ...}``) into the task folder.

A maintenance thread per executor registers the process as alive, takes over tasks whose
worker stopped heartbeating (a killed server or worker process): they run again, up to
``max_attempts`` runs, then fail, and deletes finished tasks, uploads and stray folders after
the TTL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from beatsync.tasks.settings import Settings
from beatsync.tasks.store import FAILED, PROCESSING, SUCCESS, TaskStore

log = logging.getLogger("beatsync.tasks")

JobArgv = Callable[[str, int], list[str]]  # (task_id, attempt) -> argv of the job process
EXIT_OK, EXIT_ERROR = 0, 2
RESULT_FILE, ERROR_FILE, LOG_FILE = "result.json", "error.json", "job.log"
_STRAY_GRACE_S = 3600.0  # a folder without a record older than this was left by a crash


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


#: jobs are batch work, below the server's priority: pages and status polls stay fast while every
#: core is busy with jobs. Linux's SCHED_IDLE lets any normal thread (the web server's) preempt a
#: job at once; elsewhere a higher nice value. Set from here right after the spawn, so that it
#: covers the job's start-up (its imports take a second of CPU); its ffmpeg children inherit it.
JOB_NICE = 10


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


class Executor:
    """Worker threads for one process; any number of executors (in any processes) can share a store."""

    def __init__(self, store: TaskStore, settings: Settings, *, job_argv: JobArgv, threads: int | None = None,
                 job_env: dict[str, str] | None = None):
        self.store = store
        self.job_env = job_env
        self.settings = settings
        self.job_argv = job_argv
        self.threads = settings.workers if threads is None else threads
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Executor:
        if self._threads:
            return self
        self._register()
        self._maintain_once()  # take over what a previous run of this server left behind
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(f"{self.id}/{i}",), name=f"beatsync-worker-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._maintain, name="beatsync-maintenance", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("executor %s started with %d worker thread(s) on %s", self.id, self.threads, self.store.root)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop taking tasks; running jobs are killed and put back at the front of the queue."""
        self._stop.set()
        self.wake()
        with self._lock:
            procs = list(self._running.values())
        for p in procs:
            kill_group(p)
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        with contextlib.suppress(Exception):
            self.store.unregister_worker(self.id)

    def wake(self) -> None:
        """A task was queued by this process: an idle worker takes it now instead of at its next poll."""
        with self._wake:
            self._wake.notify()

    # ------------------------------------------------------------------ workers

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                rec = self.store.claim(worker)
            except Exception:
                log.exception("claiming a task failed")
                rec = None
            if rec is None:
                with self._wake:
                    self._wake.wait(self.settings.poll_s)
                continue
            try:
                self._run(rec, worker)
            except Exception:  # the supervisor itself failed: the task must not stay "processing" forever
                log.exception("running task %s failed", rec["task_id"])
                self.store.finish(rec["task_id"], rec["attempts"], FAILED, error_code="internal",
                                  error="Something went wrong inside BeatSync while running this job.")

    def _run(self, rec: dict, worker: str) -> None:
        task_id, attempt = rec["task_id"], rec["attempts"]
        folder = self.store.task_dir(task_id)
        for name in (RESULT_FILE, ERROR_FILE):
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / "out", ignore_errors=True)  # partial files of an interrupted run
        (folder / "out").mkdir(parents=True, exist_ok=True)
        with open(folder / LOG_FILE, "ab") as logf:
            logf.write(f"--- attempt {attempt} by {worker} at {time.ctime()}\n".encode())
            logf.flush()
            proc = subprocess.Popen(self.job_argv(task_id, attempt), stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    env=self.job_env)
        lower_priority(proc.pid)
        with self._lock:
            self._running[task_id] = proc
        try:
            outcome = self._supervise(proc, task_id, attempt, worker)
        finally:
            with self._lock:
                self._running.pop(task_id, None)
        self._conclude(task_id, attempt, outcome, proc.returncode, folder)

    def _supervise(self, proc: subprocess.Popen, task_id: str, attempt: int, worker: str) -> str:
        s = self.settings
        t0 = time.monotonic()
        last_hb = last_check = t0
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                return "shutdown" if self._stop.is_set() and rc < 0 else "exited"  # killed by stop()
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self._stop.is_set():
                kill_group(proc)
                return "shutdown"
            if now - t0 > s.time_limit_s:
                kill_group(proc)
                return "time_limit"
            if now - last_hb >= s.heartbeat_s:
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

    def _conclude(self, task_id: str, attempt: int, outcome: str, rc: int | None, folder: Path) -> None:
        store, s = self.store, self.settings
        if outcome == "lost":
            return
        if outcome == "shutdown":
            store.requeue(task_id, attempt, count_attempt=False, message="Waiting: the server restarted",
                          stage="restarted")
            return
        if outcome == "cancelled":
            store.finish(task_id, attempt, FAILED, error="The job was cancelled.", error_code="cancelled",
                         message="Cancelled", stage="cancelled")
            return
        if outcome == "time_limit":
            store.finish(task_id, attempt, FAILED, error_code="time_limit", stage="time_limit",
                         message="Stopped: time limit",
                         error=f"The job took longer than the {_minutes(s.time_limit_s)} limit and was stopped. "
                               "A shorter or smaller video usually helps.",
                         error_params={"limit_s": s.time_limit_s})
            return
        if rc == EXIT_OK:
            try:
                result = json.loads((folder / RESULT_FILE).read_text())
                missing = [p for p in result.get("outputs", {}).values() if not (folder / p).is_file()]
            except (OSError, ValueError) as e:
                result, missing = None, [str(e)]
            if result is not None and not missing:
                store.finish(task_id, attempt, SUCCESS, **result)
                return
            store.finish(task_id, attempt, FAILED, error_code="internal", stage="failed", message="Failed",
                         error="The job finished but its result files are missing.")
            return
        if rc == EXIT_ERROR:
            try:
                err = json.loads((folder / ERROR_FILE).read_text())
            except (OSError, ValueError):
                err = {}
            store.finish(task_id, attempt, FAILED, stage="failed", message="Failed",
                         error=err.get("error") or "The job failed.", error_code=err.get("error_code", "internal"),
                         error_params=err.get("error_params") or {})
            return
        # killed by a signal (out of memory, kill -9) or an exit without a report: run it again, a bounded number of times
        self._retry_or_fail(task_id, attempt, f"the job process ended unexpectedly (exit {rc})")

    def _retry_or_fail(self, task_id: str, attempt: int, why: str) -> None:
        s = self.settings
        rec = self.store.get(task_id)
        if rec is None:
            return
        if rec.get("cancel_requested"):
            self.store.finish(task_id, attempt, FAILED, error="The job was cancelled.", error_code="cancelled",
                              message="Cancelled", stage="cancelled")
        elif attempt >= s.max_attempts:
            self.store.finish(task_id, attempt, FAILED, error_code="crashed", stage="failed", message="Failed",
                              error=f"The job stopped unexpectedly {attempt} times ({why}); the server may be "
                                    "short of memory. Try a shorter or lower-resolution video.",
                              error_params={"attempts": attempt})
        else:
            log.warning("task %s attempt %d: %s; running it again", task_id, attempt, why)
            self.store.requeue(task_id, attempt, message=f"Interrupted ({why}); running it again "
                                                         f"(attempt {attempt + 1} of {s.max_attempts})",
                               stage="retry", stage_params={"attempt": attempt + 1, "max": s.max_attempts})

    # ------------------------------------------------------------------ maintenance

    def _register(self) -> None:
        self.store.register_worker(self.id, {"host": self.host, "pid": os.getpid(), "threads": self.threads},
                                   forget_after_s=max(self.settings.stale_s, 3 * self.settings.sweep_s) * 4)

    def _maintain(self) -> None:
        while not self._stop.wait(self.settings.sweep_s):
            try:
                self._register()
                self._maintain_once()
            except Exception:
                log.exception("maintenance pass failed")

    def _worker_dead(self, worker: str) -> bool:
        """Fast path: a worker on this host whose process is gone (or is a previous life of ours)."""
        try:
            host, pid_s, token = worker.split("/")[0].split(":")
            pid = int(pid_s)
        except ValueError:
            return False
        if host != self.host:
            return False
        if pid == os.getpid():
            return f"{host}:{pid}:{token}" != self.id
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _maintain_once(self) -> None:
        s, store = self.settings, self.store
        now = time.time()
        for task_id, info in store.running().items():
            with self._lock:
                if task_id in self._running:
                    continue
            hb = store.last_heartbeat(task_id)
            stale = hb is None or now - hb[0] > s.stale_s
            if stale or self._worker_dead(info["worker"]):
                self._retry_or_fail(task_id, info["attempt"], "its worker stopped responding")
        for task_id in store.finished_before(now - s.ttl_s):
            store.expire(task_id)
        for file_id in store.uploads_before(now - s.ttl_s):
            store.remove_upload(file_id)
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

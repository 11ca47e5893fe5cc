"""Executor: the embedded backend's worker threads, which take tasks from the store's queue and run
each in a child process (`supervisor.Supervisor`), plus the maintenance thread of this process
(`supervisor.Maintenance`). Any number of executors, in any processes, can share one data dir.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading

from beatsync.tasks.settings import Settings
from beatsync.tasks.store import TaskStore
from beatsync.tasks.supervisor import JobArgv, Maintenance, Supervisor

log = logging.getLogger("beatsync.tasks")


class Executor:
    """Worker threads for one process; any number of executors (in any processes) can share a store."""

    def __init__(self, store: TaskStore, settings: Settings, *, job_argv: JobArgv, threads: int | None = None,
                 job_env: dict[str, str] | None = None):
        self.store = store
        self.settings = settings
        self.threads = settings.workers if threads is None else threads
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.supervisor = Supervisor(store, settings, job_argv=job_argv, job_env=job_env, stopping=self._stop)
        self.maintenance = Maintenance(store, settings, self.supervisor, node_id=self.id, host=self.host,
                                       threads=self.threads)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Executor:
        if self._threads:
            return self
        self.maintenance.register()
        self.maintenance.once()  # take over what a previous run of this server left behind
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(f"{self.id}/{i}",), name=f"beatsync-worker-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self.maintenance.run_forever, args=(self._stop,), name="beatsync-maintenance",
                             daemon=True)
        t.start()
        self._threads.append(t)
        log.info("executor %s started with %d worker thread(s) on %s", self.id, self.threads, self.store.root)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop taking tasks; running jobs are killed and put back at the front of the queue."""
        self._stop.set()
        self.wake()
        self.supervisor.kill_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        self.maintenance.unregister()

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
            self.supervisor.run(rec, worker)

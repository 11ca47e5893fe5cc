"""The scale-out backend's workers: Celery, with Redis as the broker and as the shared task store.

Start any number of workers, on any machines that mount the same data directory::

    BEATSYNC_BACKEND=celery BEATSYNC_REDIS_URL=redis://redis-host:6379/0 BEATSYNC_DATA_DIR=/shared/beatsync \\
        celery -A beatsync.tasks.celery_app worker --loglevel INFO

The web servers (``BEATSYNC_BACKEND=celery`` too) store each task in Redis (`RedisTaskStore`) and
send its id here; they never run jobs. A worker runs a task exactly as the embedded backend does
(`supervisor.Supervisor`: the same job process, heartbeats, time limit, cancellation), and each
worker process runs the same maintenance (`supervisor.Maintenance`: stale takeover, TTL cleanup).

Delivery is at-least-once and a run is idempotent:

* messages are acknowledged late (after the task ends) and a worker takes one at a time, so a
  worker that dies mid-job leaves its message unacknowledged; Redis hands it out again after the
  visibility timeout, which is longer than any job may run (`Settings.visibility_timeout_s`);
* sooner than that, the other workers see the dead worker's heartbeat stop (or its pid gone, on
  the same host) and queue the task again; whichever message comes second finds the task no
  longer pending (`RedisTaskStore.claim_task`) and is dropped, so a task runs once at a time;
* every attempt starts from an empty output folder, and outputs are written under temporary names
  and renamed, so a rerun after a crash never sees half a file; a task whose runs keep dying ends
  ``failed`` (``crashed``) after ``BEATSYNC_MAX_ATTEMPTS`` runs;
* cancelling revokes the message (workers drop it) and flags the record (a running job is killed);
* a warm shutdown (SIGTERM) kills the running jobs and queues them again without counting an attempt.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from celery import Celery, signals
from celery.exceptions import Reject

from beatsync.contract import PROCESSING
from beatsync.errors import BeatSyncError
from beatsync.tasks.interfaces import STORE_UNAVAILABLE
from beatsync.tasks.redis_store import RedisTaskStore
from beatsync.tasks.settings import Settings
from beatsync.tasks.supervisor import Maintenance, Supervisor, job_argv, job_env

log = logging.getLogger("beatsync.tasks")

TASK_NAME = "beatsync.run_task"
#: Redis priorities (0 is served first): a task put back in the queue (its worker died or stopped)
#: has waited already, so it goes ahead of new submissions, as in the embedded backend
PRIORITY_FRONT, PRIORITY_NEW = 0, 5
REJECT_PAUSE_S = 2.0  # a worker that cannot reach the store waits this long before handing a task back


def make_app(settings: Settings) -> Celery:
    """The Celery app for one deployment (its Redis URL and key prefix)."""
    celery = Celery("beatsync", broker=settings.redis_url, set_as_current=False)
    celery.conf.update(
        task_default_queue=settings.redis_prefix,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s,
                                  "global_keyprefix": f"{settings.redis_prefix}:celery:"},
        broker_connection_retry_on_startup=True,
        task_acks_late=True,  # acknowledged when the task ends: a dead worker's job is delivered again
        task_reject_on_worker_lost=True,  # with a process pool (--pool prefork): a killed child's task is requeued
        worker_prefetch_multiplier=1,  # one job at a time per slot; nothing waits behind a long job
        worker_concurrency=max(1, settings.workers),
        # a task only supervises its job process (which does the work), so threads are enough
        worker_pool="threads",
        task_ignore_result=True,  # the status lives in the task store, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        task_time_limit=settings.time_limit_s + 300,  # backstop; the supervisor stops the job at time_limit_s
        worker_cancel_long_running_tasks_on_connection_loss=False,  # the store keeps a task from running twice
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # stdout stays stdout (the CLI's last line is its JSON result)
    )
    celery.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True)(_run_task)
    return celery


class CeleryBroker:
    """`redis_store.Broker` for the web servers: sends task ids to the workers' queue (its Celery app is
    configured from the service's settings on first use)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._app: Celery | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Celery:
        with self._lock:
            if self._app is None:
                self._app = make_app(self.settings)
            return self._app

    def send(self, task_id: str, *, front: bool = False) -> None:
        self.app.send_task(TASK_NAME, args=[task_id], task_id=task_id, queue=self.settings.redis_prefix,
                           priority=PRIORITY_FRONT if front else PRIORITY_NEW)

    def revoke(self, task_id: str) -> None:
        self.app.control.revoke(task_id)


def open_redis_store(settings: Settings) -> RedisTaskStore:
    return RedisTaskStore(settings.data_dir, settings.redis_url, prefix=settings.redis_prefix,
                          broker=CeleryBroker(settings))


class WorkerNode:
    """One Celery worker process: its store, the job supervisor, and the maintenance thread."""

    def __init__(self, settings: Settings, concurrency: int):
        self.settings = settings
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.store = open_redis_store(settings)
        self.stopping = threading.Event()
        self.supervisor = Supervisor(self.store, settings, job_argv=job_argv(settings),
                                     job_env=job_env(settings, concurrency), stopping=self.stopping)
        self.maintenance = Maintenance(self.store, settings, self.supervisor, node_id=self.id, host=self.host,
                                       threads=concurrency)
        self._maintainer: threading.Thread | None = None

    def start_maintenance(self) -> None:
        if self._maintainer is None:
            self.maintenance.register()
            self.maintenance.once()  # take over what a previous life of this worker left behind
            self._maintainer = threading.Thread(target=self.maintenance.run_forever, args=(self.stopping,),
                                                name="beatsync-maintenance", daemon=True)
            self._maintainer.start()
            log.info("beatsync worker %s: %s on %s (queue %r)", self.id, self.settings.redis_url,
                     self.settings.data_dir, self.settings.redis_prefix)

    def run(self, task_id: str) -> str:
        """Run one delivered task id: claim it, or drop the message when the task is no longer pending."""
        worker = f"{self.id}/{threading.current_thread().name}"
        rec = self.store.claim_task(task_id, worker)
        if rec is not None:
            return self.supervisor.run(rec, worker)
        cur = self.store.get(task_id)
        if (cur is not None and cur["status"] == PROCESSING and not self.supervisor.is_running(task_id)
                and self.maintenance.holder_dead(task_id, cur.get("worker") or "")):
            # delivered again because its worker died (late ack): count that run, queue it once more
            self.supervisor.retry_or_fail(task_id, cur["attempts"], {"reason": "worker_lost"})
            return "requeued"
        return "dropped"  # finished, cancelled, expired, or running elsewhere (a duplicate message)


_node: WorkerNode | None = None
_node_lock = threading.Lock()


def node(concurrency: int | None = None) -> WorkerNode:
    global _node
    with _node_lock:
        if _node is None:
            _node = WorkerNode(settings, concurrency or max(1, settings.workers))
        return _node


def _run_task(self, task_id: str) -> str:
    try:
        return node().run(task_id)
    except BeatSyncError as e:
        if e.code != STORE_UNAVAILABLE:
            raise
        # Redis is out of reach, so the task could not even be claimed: back to the queue (when the
        # broker is down too, the message stays unacknowledged and comes back after the visibility timeout)
        log.warning("task %s: %s; putting it back in the queue", task_id, e.message)
        time.sleep(REJECT_PAUSE_S)
        raise Reject(e.message, requeue=True) from None


@signals.worker_init.connect
def _on_worker_init(sender=None, **_):
    concurrency = getattr(sender, "concurrency", None)
    node(concurrency if isinstance(concurrency, int) and concurrency > 0 else None)


@signals.worker_ready.connect
def _on_worker_ready(**_):
    node().start_maintenance()


@signals.worker_shutting_down.connect
def _on_shutting_down(**_):
    # from the signal handler: only flag it; each supervisor kills its job and queues the task again
    if _node is not None:
        _node.stopping.set()


@signals.worker_shutdown.connect
def _on_shutdown(**_):
    if _node is not None:
        _node.maintenance.unregister()


settings = Settings.from_env(backend="celery")
app = make_app(settings)

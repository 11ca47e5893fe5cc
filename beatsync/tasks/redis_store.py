"""Task store on Redis: the scale-out backend's shared task records, registries and upload index,
the same interface as the embedded `TaskStore` (diskcache), so the service, the API and the pages
do not know which one they talk to.

Every state change is one Redis transaction (WATCH/MULTI on the task's key), so exactly one worker
claims a pending task, and a worker only writes to a task while it still holds that task's current
attempt. The queue itself is the broker's (Celery on the same Redis): `create` and `requeue` hand
the task id to the ``broker`` after the record is stored; the ``pending`` index here only counts
and orders the waiting tasks (the queue bound and "n jobs waiting"). A task whose message could
not be sent (the broker was unreachable, or the web server died in between) is re-sent by a
worker's maintenance pass (`resend_lost`).

Keys (``<prefix>`` is ``BEATSYNC_REDIS_PREFIX``)::

    <prefix>:task:<id>     the task record (JSON)
    <prefix>:hb:<id>       the running attempt's last heartbeat [time, worker]
    <prefix>:gone:<id>     marker of an expired task (kept 7 days)
    <prefix>:pending       sorted set of waiting task ids (score: creation time; 0 for re-queued)
    <prefix>:started       hash task id -> {"worker", "attempt"} of running tasks
    <prefix>:finished      sorted set task id -> finished time (for the TTL)
    <prefix>:upload:<id>   an upload's metadata; <prefix>:uploads: sorted set id -> created time
    <prefix>:batch:<id>    a batch (its task ids, JSON); <prefix>:batches: sorted set id -> created time
    <prefix>:workers       hash worker process id -> {"host", "pid", "threads", "seen"}

Files (inputs, outputs, uploads) live under ``data_dir``, a directory every node mounts; records
hold paths relative to it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

from beatsync.contract import FAILED, FINISHED, PENDING, PROCESSING, Stage
from beatsync.errors import BeatSyncError
from beatsync.messages import stage_text, task_error
from beatsync.tasks.interfaces import STORE_UNAVAILABLE
from beatsync.tasks.store import (
    busy,
    cancelled_fields,
    check_id,
    holds,
    mark_claimed,
    mark_finished,
    mark_progress,
    mark_requeued,
    new_record,
    requeue_refused,
)

log = logging.getLogger("beatsync.tasks")

GONE_KEEP_S = 7 * 86400


class Broker(Protocol):
    """Where a queued task id goes so that a worker runs it (Celery, in `celery_app`)."""

    def send(self, task_id: str, *, front: bool = False) -> None: ...  # front: ahead of new tasks
    def revoke(self, task_id: str) -> None: ...


def unavailable() -> BeatSyncError:
    return BeatSyncError(STORE_UNAVAILABLE, task_error(STORE_UNAVAILABLE))


def _guarded(fn):
    """Redis connection problems become one clear, specific error instead of a stack trace."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            log.warning("redis unavailable: %s", e)
            raise unavailable() from None
    return wrapper


class RedisTaskStore:
    """Task records in Redis, files under ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike, url: str, *, prefix: str = "beatsync",
                 broker: Broker | None = None):
        self.root = Path(data_dir)
        self.tasks_root = self.root / "tasks"
        self.uploads_root = self.root / "uploads"
        for d in (self.root, self.tasks_root, self.uploads_root):
            d.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.broker = broker
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3, socket_timeout=5,
                                      health_check_interval=30, retry_on_timeout=False)

    def close(self) -> None:
        self.r.close()

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ------------------------------------------------------------------ paths

    def task_dir(self, task_id: str) -> Path:
        return self.tasks_root / check_id(task_id)

    def upload_dir(self, file_id: str) -> Path:
        return self.uploads_root / check_id(file_id, what="file")

    # ------------------------------------------------------------------ records

    @_guarded
    def get(self, task_id: str) -> dict | None:
        raw = self.r.get(self._k("task", task_id))
        return None if raw is None else json.loads(raw)

    @_guarded
    def is_gone(self, task_id: str) -> bool:
        return bool(self.r.exists(self._k("gone", task_id)))

    @_guarded
    def queue_length(self) -> int:
        return int(self.r.zcard(self._k("pending")))

    @_guarded
    def running(self) -> dict:
        return {tid: json.loads(v) for tid, v in self.r.hgetall(self._k("started")).items()}

    def _transact(self, task_id: str, body: Callable, *extra_watch: str):
        """Run ``body(pipe, rec)`` with the task's key watched (retried when another client changed it);
        ``body`` reads through ``pipe`` before ``pipe.multi()`` and queues its writes after it."""
        key = self._k("task", task_id)
        out = {}

        def tx(pipe):
            raw = pipe.get(key)
            out["value"] = body(pipe, None if raw is None else json.loads(raw))

        self.r.transaction(tx, key, *extra_watch)
        return out.get("value")

    def _put(self, pipe, rec: dict) -> None:
        pipe.set(self._k("task", rec["task_id"]), json.dumps(rec))

    def create(self, record: dict, *, queue_max: int) -> dict:
        """Store a new pending task and send it to the workers; ``busy`` when the queue is full."""
        return self._create([record], queue_max=queue_max)[0]

    def create_batch(self, batch: dict, records: list[dict], *, queue_max: int) -> list[dict]:
        """Store a batch and its new pending tasks in one transaction, all of them or none (``busy`` when
        the queue has no room for every one), then send them to the workers in their order."""
        return self._create(records, queue_max=queue_max, batch=batch)

    @_guarded
    def _create(self, records: list[dict], *, queue_max: int, batch: dict | None = None) -> list[dict]:
        now = time.time()
        records = [{**new_record(r, now), "dispatched": None} for r in records]
        pending = self._k("pending")

        def tx(pipe):
            n = pipe.zcard(pending)
            if n + len(records) > queue_max:
                raise busy(n, len(records))
            pipe.multi()
            for record in records:
                self._put(pipe, record)
                if record.get("owner_hash"):
                    pipe.zadd(self._k("owner", record["owner_hash"]), {record["task_id"]: record["created"]})
            pipe.zadd(pending, {r["task_id"]: now + i * 1e-6 for i, r in enumerate(records)})  # (in their order)
            if batch is not None:
                pipe.set(self._k("batch", batch["batch_id"]), json.dumps(batch))
                pipe.zadd(self._k("batches"), {batch["batch_id"]: batch["created"]})

        self.r.transaction(tx, pending)
        try:
            for record in records:
                self._send(record["task_id"])
        except BeatSyncError:  # the submitter is told; no task may run behind their back
            for record in records:
                with contextlib.suppress(BeatSyncError):
                    self.finish(record["task_id"], None, FAILED, error_code=STORE_UNAVAILABLE,
                                stage=Stage.FAILED.value, message=stage_text(Stage.FAILED), error=unavailable().message)
            raise
        return records

    def _send(self, task_id: str, *, front: bool = False) -> None:
        """Hand a pending task to the broker and note when (a task never sent is re-sent by `resend_lost`).
        ``front``: a task that already waited (interrupted, or its message was lost) goes ahead of new ones."""
        if self.broker is None:
            return
        try:
            self.broker.send(task_id, front=front)
        except Exception as e:  # the record stays pending: a worker's maintenance re-sends it
            log.warning("could not queue task %s: %s", task_id, e)
            raise unavailable() from None
        # the message is out: if this note is lost, `resend_lost` sends a second message, which is dropped
        with contextlib.suppress(BeatSyncError):
            self.update(task_id, lambda r: (r["status"] == PENDING) and r.update(dispatched=time.time()))

    @_guarded
    def update(self, task_id: str, fn: Callable[[dict], bool | None]) -> dict | None:
        """Apply ``fn(record)`` atomically; the change is stored unless ``fn`` returns False."""
        def body(pipe, rec):
            if rec is None or fn(rec) is False:
                return rec
            rec["updated"] = time.time()
            pipe.multi()
            self._put(pipe, rec)
            return rec

        return self._transact(task_id, body)

    @_guarded
    def claim_task(self, task_id: str, worker: str) -> dict | None:
        """Mark a pending task ``processing`` by ``worker``; None when it is not pending (already taken,
        finished, cancelled or expired): exactly one claimer however often its message was delivered."""
        now = time.time()

        def body(pipe, rec):
            if rec is None or rec["status"] != PENDING:
                return None
            mark_claimed(rec, worker, now)
            pipe.multi()
            self._put(pipe, rec)
            pipe.zrem(self._k("pending"), task_id)
            pipe.set(self._k("hb", task_id), json.dumps([now, worker]))
            pipe.hset(self._k("started"), task_id, json.dumps({"worker": worker, "attempt": rec["attempts"]}))
            return rec

        return self._transact(task_id, body)

    def report_progress(self, task_id: str, attempt: int, pct: float, stage: str, message: str) -> bool:
        """Progress of a running attempt (never goes down); False when the attempt no longer holds the task."""
        def apply(rec):
            if not holds(rec, attempt):
                return False
            mark_progress(rec, pct, stage, message)

        return holds(self.update(task_id, apply), attempt)

    @_guarded
    def heartbeat(self, task_id: str, worker: str) -> None:
        self.r.set(self._k("hb", task_id), json.dumps([time.time(), worker]))

    @_guarded
    def last_heartbeat(self, task_id: str) -> tuple[float, str] | None:
        raw = self.r.get(self._k("hb", task_id))
        return None if raw is None else tuple(json.loads(raw))

    @_guarded
    def finish(self, task_id: str, attempt: int | None, status: str, **fields) -> dict | None:
        """End a task as ``success`` or ``failed``. With ``attempt``, only if that attempt still holds it."""
        assert status in FINISHED
        now = time.time()

        def body(pipe, rec):
            if rec is None or rec["status"] in FINISHED:
                return None
            if attempt is not None and not holds(rec, attempt):
                return None
            mark_finished(rec, status, fields, now)
            pipe.multi()
            self._put(pipe, rec)
            pipe.zrem(self._k("pending"), task_id)
            pipe.delete(self._k("hb", task_id))
            pipe.hdel(self._k("started"), task_id)
            pipe.zadd(self._k("finished"), {task_id: now})
            return rec

        return self._transact(task_id, body)

    @_guarded
    def requeue(self, task_id: str, attempt: int, *, count_attempt: bool = True, stage: str = Stage.QUEUED,
                stage_params: dict | None = None) -> dict | None:
        """Put a running attempt's task back in the queue (its worker died or shut down).

        ``count_attempt=False`` (a clean shutdown) does not count the interrupted run as an attempt.
        None when the attempt no longer holds the task, or its cancellation was requested (the caller
        then ends it as cancelled).
        """
        now = time.time()

        def body(pipe, rec):
            if requeue_refused(rec, attempt):
                return None
            mark_requeued(rec, now, count_attempt=count_attempt, stage=stage, stage_params=stage_params)
            rec["dispatched"] = None
            pipe.multi()
            self._put(pipe, rec)
            pipe.zadd(self._k("pending"), {task_id: 0})
            pipe.delete(self._k("hb", task_id))
            pipe.hdel(self._k("started"), task_id)
            return rec

        rec = self._transact(task_id, body)
        if rec is not None:
            with contextlib.suppress(BeatSyncError):  # else it stays pending, undispatched: re-sent by maintenance
                self._send(task_id, front=True)
        return rec

    @_guarded
    def resend_lost(self, older_than_s: float) -> int:
        """Send again the pending tasks that were never handed to the broker (it was unreachable, or the
        sender died in between) and have waited ``older_than_s``; returns how many."""
        now, n = time.time(), 0
        for task_id in self.r.zrange(self._k("pending"), 0, -1):
            rec = self.get(task_id)
            if rec is None:
                self.r.zrem(self._k("pending"), task_id)
            elif rec["status"] == PENDING and not rec.get("dispatched") and now - rec["updated"] > older_than_s:
                log.warning("re-sending task %s, whose queue message was never sent", task_id)
                self._send(task_id, front=True)
                n += 1
        return n

    @_guarded
    def request_cancel(self, task_id: str) -> dict | None:
        """Cancel: a pending task ends at once; a running one is flagged for its worker to stop. The
        broker is told too (revoke), so that no worker starts it from a message still in flight."""
        rec = self.get(task_id)
        if rec is None:
            return None
        if self.broker is not None and rec["status"] not in FINISHED:
            try:
                self.broker.revoke(task_id)
            except Exception as e:  # the record is what workers obey; revoke only saves them a lookup
                log.warning("could not revoke task %s: %s", task_id, e)
        if rec["status"] == PENDING:
            done = self.finish(task_id, None, FAILED, **cancelled_fields())
            if done is not None:
                return done
        return self.update(task_id, lambda r: (r["status"] == PROCESSING) and r.update(cancel_requested=True))

    @_guarded
    def expire(self, task_id: str) -> None:
        """Forget a task and delete its folder (leaves a marker so its id reads as expired, not unknown)."""
        def body(pipe, rec):
            if rec is not None and rec["status"] not in FINISHED:
                return False
            pipe.multi()
            pipe.delete(self._k("task", task_id), self._k("hb", task_id))
            pipe.zrem(self._k("finished"), task_id)
            if rec is not None and rec.get("owner_hash"):
                pipe.zrem(self._k("owner", rec["owner_hash"]), task_id)
            pipe.set(self._k("gone", task_id), time.time(), ex=GONE_KEEP_S)
            return True

        if self._transact(task_id, body):
            shutil.rmtree(self.task_dir(task_id), ignore_errors=True)

    @_guarded
    def owned(self, owner_hash: str, *, limit: int = 200) -> list[str]:
        """The ids of the tasks made with the owner token whose hash is ``owner_hash``, newest first."""
        return list(self.r.zrevrange(self._k("owner", owner_hash), 0, limit - 1))

    @_guarded
    def finished_before(self, t: float) -> list[str]:
        return list(self.r.zrangebyscore(self._k("finished"), "-inf", f"({t}"))

    # ------------------------------------------------------------------ batches

    @_guarded
    def get_batch(self, batch_id: str) -> dict | None:
        raw = self.r.get(self._k("batch", batch_id))
        return None if raw is None else json.loads(raw)

    @_guarded
    def batches_before(self, t: float) -> list[str]:
        return list(self.r.zrangebyscore(self._k("batches"), "-inf", f"({t}"))

    @_guarded
    def expire_batch(self, batch_id: str) -> bool:
        """Forget a batch once none of its tasks has a record any more (they expired); True when it
        did (leaves a marker, as `expire` does, so its id reads as expired). Tasks only ever go away,
        so no transaction is needed for the check."""
        batch = self.get_batch(batch_id)
        if batch is not None and batch["task_ids"] and self.r.exists(*(self._k("task", t) for t in batch["task_ids"])):
            return False
        pipe = self.r.pipeline()
        pipe.delete(self._k("batch", batch_id))
        pipe.zrem(self._k("batches"), batch_id)
        if batch is not None:
            pipe.set(self._k("gone", batch_id), time.time(), ex=GONE_KEEP_S)
        pipe.execute()
        return batch is not None

    # ------------------------------------------------------------------ uploads

    @_guarded
    def add_upload(self, meta: dict) -> None:
        pipe = self.r.pipeline()
        pipe.set(self._k("upload", meta["file_id"]), json.dumps(meta))
        pipe.zadd(self._k("uploads"), {meta["file_id"]: meta["created"]})
        pipe.execute()

    @_guarded
    def get_upload(self, file_id: str) -> dict | None:
        raw = self.r.get(self._k("upload", file_id))
        return None if raw is None else json.loads(raw)

    @_guarded
    def remove_upload(self, file_id: str) -> None:
        pipe = self.r.pipeline()
        pipe.delete(self._k("upload", file_id))
        pipe.zrem(self._k("uploads"), file_id)
        pipe.execute()
        shutil.rmtree(self.upload_dir(file_id), ignore_errors=True)

    @_guarded
    def uploads_before(self, t: float) -> list[str]:
        return list(self.r.zrangebyscore(self._k("uploads"), "-inf", f"({t}"))

    # ------------------------------------------------------------------ workers

    @_guarded
    def register_worker(self, worker: str, info: dict, *, forget_after_s: float) -> None:
        now = time.time()
        key = self._k("workers")
        self.r.hset(key, worker, json.dumps({**info, "seen": now}))
        old = [w for w, raw in self.r.hgetall(key).items() if now - json.loads(raw)["seen"] > forget_after_s]
        if old:
            self.r.hdel(key, *old)

    @_guarded
    def unregister_worker(self, worker: str) -> None:
        self.r.hdel(self._k("workers"), worker)

    @_guarded
    def workers(self, *, seen_within_s: float) -> dict:
        now = time.time()
        reg = {w: json.loads(raw) for w, raw in self.r.hgetall(self._k("workers")).items()}
        return {w: i for w, i in reg.items() if now - i["seen"] <= seen_within_s}

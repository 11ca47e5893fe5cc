"""Task store on diskcache: task records, the FIFO queue and the registries of running and
finished tasks, shared by every thread and process that opens the same data directory.

Every state change is one diskcache transaction (an SQLite write transaction, so it is atomic
across processes): a pending task is pulled from the queue and marked ``processing`` by exactly
one worker; a worker only writes to a task while it still holds that task's current attempt, so a
worker that was presumed dead cannot overwrite the run that replaced it. The cache never evicts
(``eviction_policy="none"``): records leave only through `expire`. A batch (several class videos
submitted with one song) is a record of its own, stored with its tasks in the same transaction
(`create_batch`: all of them or none), and forgotten once the last of its tasks has expired
(`expire_batch`).

Layout of the data directory::

    store/                     the diskcache (SQLite + large values)
    uploads/<file_id>/data.ext an uploaded file (user-supplied names are kept as data, never as paths)
    tasks/<task_id>/in/        the job's inputs (hard links to the uploads)
    tasks/<task_id>/out/<n>/   the outputs of attempt n (only the last attempt's are kept)
    cache/songs/<key>/         a song decoded and analysed once for every job that has it (`beatsync.songcache`)

A record is plain JSON-able data (`beatsync.contract.TaskRecord` describes it); the store reads and
writes only its scheduling fields (status, progress, stage, message, attempts, ...) and passes the
rest through as it was given. Its statuses and stage codes are the contract's; the words of its
messages come from `beatsync.messages`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import diskcache

from beatsync.contract import FAILED, FINISHED, PENDING, PROCESSING, SUCCESS, Stage
from beatsync.errors import BeatSyncError
from beatsync.messages import stage_text, task_error

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")  # whole string: fullmatch
_QUEUE = "queue"
_QLEN = ("queue_len",)
_STARTED = ("registry", "started")  # task_id -> {"worker", "attempt"}
_FINISHED = ("registry", "finished")  # task_id -> finished time
_UPLOADS = ("registry", "uploads")  # file_id -> created time
_WORKERS = ("registry", "workers")  # worker process id -> {"host", "pid", "threads", "seen"}
_BATCHES = ("registry", "batches")  # batch_id -> created time


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(value: object, *, what: str = "task") -> str:
    """The id if it is a canonical uuid4 string, else `BeatSyncError` ``bad_id`` (never a path)."""
    if not isinstance(value, str) or not _UUID4.fullmatch(value):
        shown = repr(str(value)[:60])
        raise BeatSyncError("bad_id", task_error("bad_id", value=shown, what=what), what=what)
    return value


def _task_key(task_id: str) -> tuple:
    return ("task", task_id)


def _hb_key(task_id: str) -> tuple:
    return ("heartbeat", task_id)


def _gone_key(task_id: str) -> tuple:
    return ("gone", task_id)


def _upload_key(file_id: str) -> tuple:
    return ("upload", file_id)


def _owner_key(owner_hash: str) -> tuple:
    return ("owner", owner_hash)  # task_id -> created time: the tasks an owner token made


def _batch_key(batch_id: str) -> tuple:
    return ("batch", batch_id)


# ---------------------------------------------------------------------- record transitions
# The state changes of a task record, shared by both stores (each applies them inside its own
# transaction): pending -> processing (claim) -> success | failed, or back to pending (requeue).


def new_record(fields: dict, now: float) -> dict:
    return {**fields, "status": PENDING, "progress": 0.0, "stage": Stage.QUEUED.value,
            "message": stage_text(Stage.QUEUED), "created": now, "updated": now, "attempts": 0, "history": []}


def busy(queued: int, asked: int = 1) -> BeatSyncError:
    """The queue (``queued`` waiting) has no room for ``asked`` more tasks (a batch's, all or none)."""
    if asked > 1:
        return BeatSyncError("busy", task_error("busy_batch", queued=queued, asked=asked), queued=queued,
                             asked=asked)
    return BeatSyncError("busy", task_error("busy", queued=queued), queued=queued)


def cancelled_fields() -> dict:
    """What a cancelled task's record gets."""
    return {"error": task_error("cancelled"), "error_code": "cancelled", "stage": Stage.CANCELLED.value,
            "message": stage_text(Stage.CANCELLED)}


def holds(rec: dict | None, attempt: int) -> bool:
    """True while ``attempt`` is the task's running attempt (only then may its worker write)."""
    return rec is not None and rec["status"] == PROCESSING and rec["attempts"] == attempt


def mark_claimed(rec: dict, worker: str, now: float) -> None:
    rec.update(status=PROCESSING, attempts=rec["attempts"] + 1, worker=worker, started=now, updated=now,
               stage=Stage.START.value, message=stage_text(Stage.START), stage_params={})
    rec["history"].append({"attempt": rec["attempts"], "worker": worker, "started": now})


def mark_progress(rec: dict, pct: float, stage: str, message: str) -> None:
    """Progress never goes down."""
    rec["progress"] = max(float(rec["progress"]), min(100.0, float(pct)))
    rec["stage"], rec["message"] = str(stage), message


def mark_finished(rec: dict, status: str, fields: dict, now: float) -> None:
    rec.update(fields)
    rec.update(status=status, finished=now, updated=now)
    if status == SUCCESS:
        rec["progress"] = 100.0
    if rec["history"] and "ended" not in rec["history"][-1]:
        rec["history"][-1].update(ended=now, outcome=fields.get("error_code", status))


def mark_requeued(rec: dict, now: float, *, count_attempt: bool, stage: str, stage_params: dict | None) -> None:
    if rec["history"]:
        rec["history"][-1].update(ended=now, outcome="interrupted")
    if not count_attempt:
        rec["attempts"] -= 1
    params = stage_params or {}
    rec.update(status=PENDING, worker=None, updated=now, stage=str(stage), message=stage_text(stage, **params),
               stage_params=params)


def requeue_refused(rec: dict | None, attempt: int) -> bool:
    """A requeue is refused when the attempt no longer holds the task, or a cancel was asked for
    (a cancelled task ends, it never waits again; the caller ends it)."""
    return not holds(rec, attempt) or bool(rec.get("cancel_requested"))


class TaskStore:
    """Task records and queue in a diskcache under ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)
        self.tasks_root = self.root / "tasks"
        self.uploads_root = self.root / "uploads"
        for d in (self.root, self.tasks_root, self.uploads_root):
            d.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(str(self.root / "store"), timeout=60, eviction_policy="none",
                                     size_limit=2**62, cull_limit=0, statistics=0)

    def close(self) -> None:
        self.cache.close()

    # ------------------------------------------------------------------ paths

    def task_dir(self, task_id: str) -> Path:
        return self.tasks_root / check_id(task_id)

    def upload_dir(self, file_id: str) -> Path:
        return self.uploads_root / check_id(file_id, what="file")

    # ------------------------------------------------------------------ records

    def get(self, task_id: str) -> dict | None:
        return self.cache.get(_task_key(task_id), retry=True)

    def is_gone(self, task_id: str) -> bool:
        """True when the task (or batch) existed and expired (so a client can be told so)."""
        return self.cache.get(_gone_key(task_id), retry=True) is not None

    def queue_length(self) -> int:
        return int(self.cache.get(_QLEN, 0, retry=True))

    def running(self) -> dict:
        return dict(self.cache.get(_STARTED, {}, retry=True))

    def _registry_set(self, key: tuple, item: str, value) -> None:
        reg = self.cache.get(key, {})
        reg[item] = value
        self.cache.set(key, reg)

    def _registry_del(self, key: tuple, item: str) -> None:
        reg = self.cache.get(key, {})
        if reg.pop(item, None) is not None:
            self.cache.set(key, reg)

    def create(self, record: dict, *, queue_max: int) -> dict:
        """Store a new pending task and put it at the back of the queue; ``busy`` when the queue is full."""
        return self._create([record], queue_max=queue_max)[0]

    def create_batch(self, batch: dict, records: list[dict], *, queue_max: int) -> list[dict]:
        """Store a batch and its new pending tasks, queued in their order, in one transaction: all of
        them or none (``busy`` when the queue has no room for every one)."""
        return self._create(records, queue_max=queue_max, batch=batch)

    def _create(self, records: list[dict], *, queue_max: int, batch: dict | None = None) -> list[dict]:
        now = time.time()
        records = [new_record(r, now) for r in records]
        with self.cache.transact(retry=True):
            n = self.cache.get(_QLEN, 0)
            if n + len(records) > queue_max:
                raise busy(n, len(records))
            for record in records:
                record["queue_key"] = self.cache.push(record["task_id"], prefix=_QUEUE)
                self.cache.set(_task_key(record["task_id"]), record)
                if record.get("owner_hash"):
                    self._registry_set(_owner_key(record["owner_hash"]), record["task_id"], record["created"])
            self.cache.set(_QLEN, n + len(records))
            if batch is not None:
                self.cache.set(_batch_key(batch["batch_id"]), batch)
                self._registry_set(_BATCHES, batch["batch_id"], batch["created"])
        return records

    def owned(self, owner_hash: str, *, limit: int = 200) -> list[str]:
        """The ids of the tasks made with the owner token whose hash is ``owner_hash``, newest first."""
        reg = self.cache.get(_owner_key(owner_hash), {}, retry=True)
        return [tid for tid, _ in sorted(reg.items(), key=lambda kv: -kv[1])][:limit]

    def update(self, task_id: str, fn: Callable[[dict], bool | None]) -> dict | None:
        """Apply ``fn(record)`` atomically; the change is stored unless ``fn`` returns False."""
        with self.cache.transact(retry=True):
            rec = self.cache.get(_task_key(task_id))
            if rec is None:
                return None
            if fn(rec) is False:
                return rec
            rec["updated"] = time.time()
            self.cache.set(_task_key(task_id), rec)
        return rec

    def claim(self, worker: str) -> dict | None:
        """Pull the oldest pending task and mark it ``processing`` by ``worker`` (exactly one claimer)."""
        now = time.time()
        with self.cache.transact(retry=True):
            while True:
                key, task_id = self.cache.pull(prefix=_QUEUE)
                if key is None:
                    return None
                self.cache.set(_QLEN, max(0, self.cache.get(_QLEN, 0) - 1))
                rec = self.cache.get(_task_key(task_id))
                if rec is None or rec["status"] != PENDING:
                    continue  # cancelled or expired while queued
                mark_claimed(rec, worker, now)
                rec["queue_key"] = None
                self.cache.set(_task_key(task_id), rec)
                self.cache.set(_hb_key(task_id), (now, worker))
                self._registry_set(_STARTED, task_id, {"worker": worker, "attempt": rec["attempts"]})
                return rec

    def report_progress(self, task_id: str, attempt: int, pct: float, stage: str, message: str) -> bool:
        """Progress of a running attempt (never goes down); False when the attempt no longer holds the task."""
        def apply(rec):
            if not holds(rec, attempt):
                return False
            mark_progress(rec, pct, stage, message)

        return holds(self.update(task_id, apply), attempt)

    def heartbeat(self, task_id: str, worker: str) -> None:
        self.cache.set(_hb_key(task_id), (time.time(), worker), retry=True)

    def last_heartbeat(self, task_id: str) -> tuple[float, str] | None:
        return self.cache.get(_hb_key(task_id), retry=True)

    def finish(self, task_id: str, attempt: int | None, status: str, **fields) -> dict | None:
        """End a task as ``success`` or ``failed``. With ``attempt``, only if that attempt still holds it.

        Returns the final record, or None when the task was not in a state this call may end.
        """
        assert status in FINISHED
        now = time.time()
        with self.cache.transact(retry=True):
            rec = self.cache.get(_task_key(task_id))
            if rec is None or rec["status"] in FINISHED:
                return None
            if attempt is not None and not holds(rec, attempt):
                return None
            if rec["status"] == PENDING and rec.get("queue_key"):
                if self.cache.delete(rec["queue_key"]):
                    self.cache.set(_QLEN, max(0, self.cache.get(_QLEN, 0) - 1))
                rec["queue_key"] = None
            mark_finished(rec, status, fields, now)
            self.cache.set(_task_key(task_id), rec)
            self.cache.delete(_hb_key(task_id))
            self._registry_del(_STARTED, task_id)
            self._registry_set(_FINISHED, task_id, now)
        return rec

    def requeue(self, task_id: str, attempt: int, *, count_attempt: bool = True, stage: str = Stage.QUEUED,
                stage_params: dict | None = None) -> dict | None:
        """Put a running attempt's task back at the front of the queue (its worker died or shut down).

        ``count_attempt=False`` (a clean shutdown) does not count the interrupted run as an attempt.
        None when the attempt no longer holds the task, or its cancellation was requested (the caller
        then ends it as cancelled).
        """
        now = time.time()
        with self.cache.transact(retry=True):
            rec = self.cache.get(_task_key(task_id))
            if requeue_refused(rec, attempt):
                return None
            mark_requeued(rec, now, count_attempt=count_attempt, stage=stage, stage_params=stage_params)
            rec["queue_key"] = self.cache.push(task_id, prefix=_QUEUE, side="front")
            self.cache.set(_QLEN, self.cache.get(_QLEN, 0) + 1)
            self.cache.set(_task_key(task_id), rec)
            self.cache.delete(_hb_key(task_id))
            self._registry_del(_STARTED, task_id)
        return rec

    def request_cancel(self, task_id: str) -> dict | None:
        """Cancel: a pending task ends at once; a running one is flagged for its worker to stop."""
        rec = self.get(task_id)
        if rec is None:
            return None
        if rec["status"] == PENDING:
            done = self.finish(task_id, None, FAILED, **cancelled_fields())
            if done is not None:
                return done
        return self.update(task_id, lambda r: (r["status"] == PROCESSING) and r.update(cancel_requested=True))

    def expire(self, task_id: str) -> None:
        """Forget a task and delete its folder (leaves a marker so its id reads as expired, not unknown)."""
        with self.cache.transact(retry=True):
            rec = self.cache.get(_task_key(task_id))
            if rec is not None and rec["status"] not in FINISHED:
                return
            self.cache.delete(_task_key(task_id))
            self.cache.delete(_hb_key(task_id))
            self._registry_del(_FINISHED, task_id)
            if rec is not None and rec.get("owner_hash"):
                self._registry_del(_owner_key(rec["owner_hash"]), task_id)
            self.cache.set(_gone_key(task_id), time.time(), expire=7 * 86400)
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)

    # ------------------------------------------------------------------ batches

    def get_batch(self, batch_id: str) -> dict | None:
        return self.cache.get(_batch_key(batch_id), retry=True)

    def batches_before(self, t: float) -> list[str]:
        return [bid for bid, ct in self.cache.get(_BATCHES, {}, retry=True).items() if ct < t]

    def expire_batch(self, batch_id: str) -> bool:
        """Forget a batch once none of its tasks has a record any more (they expired); True when it
        did (leaves a marker, as `expire` does, so its id reads as expired)."""
        with self.cache.transact(retry=True):
            batch = self.cache.get(_batch_key(batch_id))
            if batch is not None and any(self.cache.get(_task_key(t)) is not None for t in batch["task_ids"]):
                return False
            self.cache.delete(_batch_key(batch_id))
            self._registry_del(_BATCHES, batch_id)
            if batch is not None:
                self.cache.set(_gone_key(batch_id), time.time(), expire=7 * 86400)
        return batch is not None

    def resend_lost(self, older_than_s: float) -> int:
        """Nothing to do: here the queue lives in the same transaction as the records, so a pending task
        is always queued (the Redis store's broker can lose one between the two)."""
        return 0

    def finished_before(self, t: float) -> list[str]:
        return [tid for tid, ft in self.cache.get(_FINISHED, {}, retry=True).items() if ft < t]

    # ------------------------------------------------------------------ uploads

    def add_upload(self, meta: dict) -> None:
        with self.cache.transact(retry=True):
            self.cache.set(_upload_key(meta["file_id"]), meta)
            self._registry_set(_UPLOADS, meta["file_id"], meta["created"])

    def get_upload(self, file_id: str) -> dict | None:
        return self.cache.get(_upload_key(file_id), retry=True)

    def remove_upload(self, file_id: str) -> None:
        with self.cache.transact(retry=True):
            self.cache.delete(_upload_key(file_id))
            self._registry_del(_UPLOADS, file_id)
        shutil.rmtree(self.upload_dir(file_id), ignore_errors=True)

    def uploads_before(self, t: float) -> list[str]:
        return [fid for fid, ct in self.cache.get(_UPLOADS, {}, retry=True).items() if ct < t]

    # ------------------------------------------------------------------ workers

    def register_worker(self, worker: str, info: dict, *, forget_after_s: float) -> None:
        now = time.time()
        with self.cache.transact(retry=True):
            reg = self.cache.get(_WORKERS, {})
            reg[worker] = {**info, "seen": now}
            for w in [w for w, i in reg.items() if now - i["seen"] > forget_after_s]:
                del reg[w]
            self.cache.set(_WORKERS, reg)

    def unregister_worker(self, worker: str) -> None:
        with self.cache.transact(retry=True):
            self._registry_del(_WORKERS, worker)

    def workers(self, *, seen_within_s: float) -> dict:
        now = time.time()
        return {w: i for w, i in self.cache.get(_WORKERS, {}, retry=True).items() if now - i["seen"] <= seen_within_s}

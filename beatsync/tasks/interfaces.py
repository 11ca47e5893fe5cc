"""The interfaces the job service (`beatsync.service`) and the workers rely on.

`TaskStore` (diskcache) and `Executor` (worker threads) implement them for the embedded default;
the scale-out backend implements the same `Store` with `RedisTaskStore`, and runs tasks in Celery
workers (`celery_app`) instead of a `Runner` in the web server, so the UI, the API and the CLI
change nothing. The service gets them from the package (`beatsync.tasks`): ``open_store(settings)``,
``open_runner(store, settings, threads=n)`` (this process's worker threads) and
``worker_command(settings)`` (how to start a worker process, for health reports); it needs nothing
of their insides. The records they carry are plain data (`beatsync.contract.TaskRecord`).

The job process's protocol (`beatsync.job`): a worker starts ``<job command> --data-dir D --attempt N
TASK_ID``; the job reports progress through the store and, before it exits, writes `RESULT_FILE`
(exit `EXIT_OK`: the fields its successful record gets, with ``outputs`` as paths inside the task
folder that must exist) or `ERROR_FILE` (exit `EXIT_ERROR`: ``{"error", "error_code",
"error_params"}``) into the task folder; `EXIT_RETRY` (or no report at all) runs it again, like a
job process that died. When a part of the job was killed by a signal (its decoder or video writer,
e.g. by the kernel's out-of-memory killer), the job writes `CRASH_FILE` (``{"reason":
"ffmpeg_signal", "signal", "step"}``) before `EXIT_RETRY`, so that the task's record says what died.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

EXIT_OK, EXIT_ERROR, EXIT_RETRY = 0, 2, 3
RESULT_FILE, ERROR_FILE, LOG_FILE, CRASH_FILE = "result.json", "error.json", "job.log", "crash.json"
STORE_UNAVAILABLE = "store_unavailable"  # the error code of a store that cannot be reached (Redis down)


class Store(Protocol):
    """Task records, the queue and uploads, shared by every process of one deployment."""

    root: Path  # the data directory (disk checks)
    tasks_root: Path
    uploads_root: Path

    def task_dir(self, task_id: str) -> Path: ...  # the task's folder (inputs, outputs), on storage all nodes see
    def upload_dir(self, file_id: str) -> Path: ...

    def create(self, record: dict, *, queue_max: int) -> dict: ...  # pending + queued; BeatSyncError "busy"
    def get(self, task_id: str) -> dict | None: ...
    def is_gone(self, task_id: str) -> bool: ...  # existed and expired (a task or a batch)
    # a batch (several class videos, one song): its record and its tasks, all or none ("busy": no room for all)
    def create_batch(self, batch: dict, records: list[dict], *, queue_max: int) -> list[dict]: ...
    def get_batch(self, batch_id: str) -> dict | None: ...
    def update(self, task_id: str, fn) -> dict | None: ...  # atomic read-modify-write
    def request_cancel(self, task_id: str) -> dict | None: ...
    def queue_length(self) -> int: ...
    def running(self) -> dict: ...  # task_id -> {"worker", "attempt"}
    def owned(self, owner_hash: str, *, limit: int = 200) -> list[str]: ...  # an owner token's tasks, newest first

    def add_upload(self, meta: dict) -> None: ...
    def get_upload(self, file_id: str) -> dict | None: ...

    def workers(self, *, seen_within_s: float) -> dict: ...  # live worker processes, for health

    # the workers' side (`supervisor.Supervisor`, `supervisor.Maintenance`, `beatsync.job`)
    def report_progress(self, task_id: str, attempt: int, pct: float, stage: str, message: str) -> bool: ...
    def heartbeat(self, task_id: str, worker: str) -> None: ...
    def last_heartbeat(self, task_id: str) -> tuple[float, str] | None: ...
    def finish(self, task_id: str, attempt: int | None, status: str, **fields) -> dict | None: ...
    def requeue(self, task_id: str, attempt: int, *, count_attempt: bool = True, stage: str = "queued",
                stage_params: dict | None = None) -> dict | None: ...
    def resend_lost(self, older_than_s: float) -> int: ...
    def expire(self, task_id: str) -> None: ...
    def finished_before(self, t: float) -> list[str]: ...
    def batches_before(self, t: float) -> list[str]: ...  # created before t
    def expire_batch(self, batch_id: str) -> bool: ...  # only once none of its tasks is left
    def uploads_before(self, t: float) -> list[str]: ...
    def remove_upload(self, file_id: str) -> None: ...
    def register_worker(self, worker: str, info: dict, *, forget_after_s: float) -> None: ...
    def unregister_worker(self, worker: str) -> None: ...


class Runner(Protocol):
    """Whatever runs the queued tasks of this process (worker threads; nothing in a web-only node)."""

    id: str

    def start(self) -> Runner: ...
    def stop(self, timeout: float = 15.0) -> None: ...
    def wake(self) -> None: ...  # a task was just queued

"""The two small interfaces the job service (`beatsync.service`) relies on.

`TaskStore` (diskcache) and `Executor` (worker threads) implement them for the embedded default;
a scale-out backend (Celery workers, Redis as the shared store) implements the same ones, and the
UI, the API and the CLI change nothing. The status contract they carry is DESIGN.md's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Store(Protocol):
    """Task records, the queue and uploads, shared by every process of one deployment."""

    root: Path  # the data directory (disk checks)

    def task_dir(self, task_id: str) -> Path: ...  # the task's folder (inputs, outputs), on storage all nodes see
    def upload_dir(self, file_id: str) -> Path: ...

    def create(self, record: dict, *, queue_max: int) -> dict: ...  # pending + queued; BeatSyncError "busy"
    def get(self, task_id: str) -> dict | None: ...
    def is_gone(self, task_id: str) -> bool: ...  # existed and expired
    def update(self, task_id: str, fn) -> dict | None: ...  # atomic read-modify-write
    def request_cancel(self, task_id: str) -> dict | None: ...
    def queue_length(self) -> int: ...
    def running(self) -> dict: ...  # task_id -> {"worker", "attempt"}

    def add_upload(self, meta: dict) -> None: ...
    def get_upload(self, file_id: str) -> dict | None: ...

    def workers(self, *, seen_within_s: float) -> dict: ...  # live worker processes, for health


class Runner(Protocol):
    """Whatever runs the queued tasks of this process (worker threads; nothing in a web-only node)."""

    id: str

    def start(self) -> Runner: ...
    def stop(self, timeout: float = 15.0) -> None: ...
    def wake(self) -> None: ...  # a task was just queued

"""Task system: a store of task records and a queue (diskcache), and an executor (worker threads,
one child process per job). Knows nothing of audio: what a job does is `beatsync.job`'s business.

The interfaces other layers use are `interfaces.Store` (records, queue, registries; `TaskStore`
here) and `interfaces.Runner` (start/stop/wake; `Executor` here); a Celery + Redis backend can
provide the same ones.
"""

from beatsync.tasks.executor import Executor
from beatsync.tasks.interfaces import Runner, Store
from beatsync.tasks.settings import Settings, default_data_dir
from beatsync.tasks.store import FAILED, FINISHED, PENDING, PROCESSING, SUCCESS, TaskStore, check_id, new_id

__all__ = ["FAILED", "FINISHED", "PENDING", "PROCESSING", "SUCCESS", "Executor", "Runner", "Settings", "Store", "TaskStore",
           "check_id", "default_data_dir", "new_id"]

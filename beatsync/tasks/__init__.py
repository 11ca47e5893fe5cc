"""Task system: a store of task records and a queue, and the workers that run them. Knows nothing of
audio: what a job does is `beatsync.job`'s business.

Two backends behind the same interfaces (`interfaces.Store`, `interfaces.Runner`), chosen by
``BEATSYNC_BACKEND``:

* ``local`` (the default, no service needed): `TaskStore` on diskcache, and an `Executor` of
  worker threads in the web server (or in ``python -m beatsync worker`` processes);
* ``celery`` (scale-out): `RedisTaskStore` shared by any number of web servers, which never run
  jobs, and Celery workers (``celery -A beatsync.tasks.celery_app worker``).
"""

from beatsync.tasks.executor import Executor
from beatsync.tasks.interfaces import Runner, Store
from beatsync.tasks.settings import Settings, default_data_dir
from beatsync.tasks.store import FAILED, FINISHED, PENDING, PROCESSING, SUCCESS, TaskStore, check_id, new_id


def open_store(settings: Settings) -> Store:
    """The task store of the configured backend."""
    if settings.backend == "celery":
        from beatsync.tasks.celery_app import open_redis_store

        return open_redis_store(settings)
    return TaskStore(settings.data_dir)


__all__ = ["FAILED", "FINISHED", "PENDING", "PROCESSING", "SUCCESS", "Executor", "Runner", "Settings", "Store", "TaskStore",
           "check_id", "default_data_dir", "new_id", "open_store"]

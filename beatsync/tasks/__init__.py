"""Task system: a store of task records and a queue, and the workers that run them. Knows nothing of
audio: what a job does is `beatsync.job`'s business, and a record's content beyond its scheduling
fields is `beatsync.contract`'s.

Two backends behind the same interfaces (`interfaces.Store`, `interfaces.Runner`), chosen by
``BEATSYNC_BACKEND``:

* ``local`` (the default, no service needed): `TaskStore` on diskcache, and an `Executor` of
  worker threads in the web server (or in ``python -m beatsync worker`` processes);
* ``celery`` (scale-out): `RedisTaskStore` shared by any number of web servers, which never run
  jobs, and Celery workers (``celery -A beatsync.tasks.celery_app worker``).

What the service uses: `open_store`, `open_runner`, `worker_command` (see `interfaces`).
"""

from beatsync.contract import FAILED, FINISHED, PENDING, PROCESSING, SUCCESS
from beatsync.tasks.executor import Executor
from beatsync.tasks.interfaces import Runner, Store
from beatsync.tasks.settings import CELERY_WORKER_COMMAND, Settings, default_data_dir
from beatsync.tasks.store import TaskStore, check_id, new_id
from beatsync.tasks.supervisor import job_argv, job_env

LOCAL_WORKER_COMMAND = "python -m beatsync worker"


def open_store(settings: Settings) -> Store:
    """The task store of the configured backend."""
    if settings.backend == "celery":
        from beatsync.tasks.celery_app import open_redis_store

        return open_redis_store(settings)
    return TaskStore(settings.data_dir)


def open_runner(store: Store, settings: Settings, *, threads: int) -> Runner | None:
    """This process's worker threads on ``store`` (started), running each job as ``settings.job_command``
    in a process of its own; None with the Celery backend, whose jobs run in Celery workers only."""
    if settings.backend != "local" or threads < 1:
        return None
    return Executor(store, settings, job_argv=job_argv(settings), threads=threads,
                    job_env=job_env(settings, threads)).start()


def worker_command(settings: Settings) -> str:
    """The command that starts a worker process for the configured backend."""
    return CELERY_WORKER_COMMAND if settings.backend == "celery" else LOCAL_WORKER_COMMAND


__all__ = ["FAILED", "FINISHED", "PENDING", "PROCESSING", "SUCCESS", "Executor", "Runner", "Settings", "Store",
           "TaskStore", "check_id", "default_data_dir", "new_id", "open_runner", "open_store", "worker_command"]

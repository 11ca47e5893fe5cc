"""Task-system settings, read from ``BEATSYNC_*`` environment variables (see docs/API.md)."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from beatsync.errors import ParameterError


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/beatsync`` (``~/.local/share/beatsync``); the temp dir when home is not writable.

    Streamlit Community Cloud gives the app a writable home; a container with a read-only home
    still gets a working (if not persistent) store.
    """
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    candidate = Path(base) / "beatsync"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        probe = candidate / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return candidate
    except OSError:
        return Path(tempfile.gettempdir()) / "beatsync"


BACKENDS = ("local", "celery")
CELERY_WORKER_COMMAND = "celery -A beatsync.tasks.celery_app worker"  # how the Celery backend's workers start


def _command(value: str) -> tuple[str, ...]:
    """A command given as a JSON list (``["nice", "python", "-m", "beatsync.job"]``) or a shell-like string."""
    value = value.strip()
    parts = json.loads(value) if value.startswith("[") else shlex.split(value)
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(value)
    return tuple(parts)


def _origins(value: str) -> tuple[str, ...]:
    """Comma-separated origins (``https://example.org``, ``http://host:8501``), normalised to lowercase
    without a trailing slash."""
    out = []
    for part in value.split(","):
        part = part.strip().rstrip("/").lower()
        if part:
            if "://" not in part:
                raise ValueError(part)
            out.append(part)
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    workers: int = 1  # worker threads in the web server process; a 1-2 core host runs one job at a time
    queue_max: int = 32  # pending tasks accepted before submissions are refused as busy
    time_limit_s: float = 1200.0  # a running job is stopped after this long
    ttl_s: float = 86400.0  # finished tasks, their files and unused uploads live this long
    max_upload_bytes: int = 1024 * 2**20
    min_free_bytes: int = 500 * 2**20  # refuse uploads/jobs that would leave less free disk than this
    quota_bytes: int = 0  # total size of the data directory; 0 = no quota beyond free space
    max_attempts: int = 3  # runs of a job whose process died (kill -9, out of memory)
    heartbeat_s: float = 2.0  # how often a worker says its job is alive
    stale_s: float = 30.0  # a running task without a heartbeat for this long is taken over
    sweep_s: float = 10.0  # period of the maintenance pass (stale tasks, expiry)
    poll_s: float = 0.5  # how often an idle worker looks at the queue (submissions in-process wake it at once)
    backend: str = "local"  # "local": diskcache + worker threads; "celery": Redis store + Celery workers
    redis_url: str = "redis://127.0.0.1:6379/0"  # celery backend: the broker and the shared task store
    redis_prefix: str = "beatsync"  # celery backend: namespace of the keys and the queue (one per deployment)
    job_command: tuple[str, ...] = ()  # the job process's command; () = python -m beatsync.job
    body_timeout_s: float = 60.0  # the API gives up on a request body after this long without a byte (408)
    api_key: str = field(default="", repr=False)  # when set, the API's routes require it (X-API-Key)
    allowed_origins: tuple[str, ...] = ()  # origins besides the server's own that may send state-changing requests

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> Settings:
        """Settings from ``BEATSYNC_*`` variables; ``overrides`` (field names) win over the environment."""
        env = os.environ if env is None else env
        spec = {  # field -> (variable, converter)
            "workers": ("BEATSYNC_WORKERS", int),
            "queue_max": ("BEATSYNC_QUEUE_MAX", int),
            "time_limit_s": ("BEATSYNC_TIME_LIMIT_S", float),
            "ttl_s": ("BEATSYNC_TTL_S", float),
            "max_upload_bytes": ("BEATSYNC_MAX_UPLOAD_MB", lambda v: int(float(v) * 2**20)),
            "min_free_bytes": ("BEATSYNC_MIN_FREE_MB", lambda v: int(float(v) * 2**20)),
            "quota_bytes": ("BEATSYNC_QUOTA_MB", lambda v: int(float(v) * 2**20)),
            "max_attempts": ("BEATSYNC_MAX_ATTEMPTS", int),
            "heartbeat_s": ("BEATSYNC_HEARTBEAT_S", float),
            "stale_s": ("BEATSYNC_STALE_S", float),
            "sweep_s": ("BEATSYNC_SWEEP_S", float),
            "backend": ("BEATSYNC_BACKEND", lambda v: v.strip().lower()),
            "redis_url": ("BEATSYNC_REDIS_URL", str.strip),
            "redis_prefix": ("BEATSYNC_REDIS_PREFIX", str.strip),
            "job_command": ("BEATSYNC_JOB_COMMAND", _command),
            "body_timeout_s": ("BEATSYNC_BODY_TIMEOUT_S", float),
            "api_key": ("BEATSYNC_API_KEY", str.strip),
            "allowed_origins": ("BEATSYNC_ALLOWED_ORIGINS", _origins),
        }
        values: dict = {}
        for name, (var, conv) in spec.items():
            raw = env.get(var)
            if raw not in (None, ""):
                try:
                    values[name] = conv(raw)
                except ValueError:
                    what = {"job_command": "a command", "allowed_origins": "origins such as https://example.org"}
                    shown = "(hidden)" if name == "api_key" else repr(raw)
                    raise ParameterError(f"{var}={shown} is not valid ({what.get(name, 'a number')} "
                                         "expected).") from None
        data_dir = env.get("BEATSYNC_DATA_DIR")
        values["data_dir"] = Path(data_dir).expanduser() if data_dir else None
        values.update(overrides)
        if values.get("data_dir") is None:
            values["data_dir"] = default_data_dir()
        values["data_dir"] = Path(values["data_dir"]).resolve()
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int | float) and v < 0:
                raise ParameterError(f"{f.name} must not be negative (got {v}).")
        if not 0 < self.body_timeout_s < float("inf"):
            raise ParameterError("body_timeout_s must be a positive number of seconds.")
        if self.max_attempts < 1 or self.queue_max < 1:
            raise ParameterError("max_attempts and queue_max must be at least 1.")
        if self.stale_s <= self.heartbeat_s * 2:
            raise ParameterError("stale_s must be more than twice heartbeat_s.")
        if self.backend not in BACKENDS:
            raise ParameterError(f"BEATSYNC_BACKEND must be one of {', '.join(BACKENDS)} (got {self.backend!r}).")
        if self.backend == "celery" and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ParameterError(f"BEATSYNC_REDIS_URL must be a redis:// URL (got {self.redis_url!r}).")
        if not self.redis_prefix or not all(c.isalnum() or c in "-_." for c in self.redis_prefix):
            raise ParameterError("BEATSYNC_REDIS_PREFIX may only contain letters, digits, '-', '_' and '.'.")

    @property
    def visibility_timeout_s(self) -> float:
        """How long the broker waits before handing an unacknowledged job to another worker: longer than
        the longest job may run, so that a running job is never delivered twice."""
        return max(3600.0, self.time_limit_s + 900.0)

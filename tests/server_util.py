"""Real BeatSync servers for the API and task-system tests: start, stop, kill -9, restart, HTTP helpers.

A `Server` runs ``python -m streamlit run app.py`` (the web UI and the JSON API under ``/api/``)
on a free port with its own ``BEATSYNC_DATA_DIR``; its stdout and stderr go to a log file whose
tail is attached to assertion messages. `Worker` runs ``python -m beatsync worker`` on a data dir.
Every process started here is registered and ended at exit (by pid / its own process group).

Media: `short_pair` (about 12 s of class video, a job takes a few seconds) and `long_pair`
(about 75 s, for tests that interrupt a running job), made once per session with
`songgen.write_class_media`; `class_takes`: several short class videos of one song (a batch).
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import songgen as sg

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
JOB_MODULE = "beatsync.job"
#: the job process's command line: ``python -m beatsync.job ...`` (or ``-m beatsync.tasks.job``)
JOB_CMDLINE = re.compile(r"(^|\s)-m\s+beatsync(\.tasks)?\.job(\s|$)")

# media pairs: dance time at which the song starts, how long it plays
SHORT = {"video_s": 12.0, "song_s": 10.0, "music_at_s": 2.5, "music_len_s": 8.0, "seed": 61}
LONG = {"video_s": 75.0, "song_s": 72.0, "music_at_s": 2.5, "music_len_s": 71.0, "seed": 62}
SMALL_PICTURE = {"size": (128, 96), "fps": 15.0, "gop": 15}
#: normalised correlation of a 1-s window of an output's sound with the clean song: the clean song
#: re-encoded gives 0.97-1.0, the class's own recording of it (reverb, talking, noise) 0.78-0.87
CLEAN_NCC = 0.95

#: the owner token of "the test client": every `Server` uses it (`Server.owner`), so a job may be
#: submitted on one server with uploads made through another, as one client of a deployment would
CLIENT_OWNER = secrets.token_urlsafe(32)  # (as beatsync.owner.new_token; the benchmarks import this module
#                                            without the repository on their path)

_live: list[subprocess.Popen] = []
_media_cache: dict[str, sg.ClassMedia] = {}


def _cleanup_all() -> None:
    for p in list(_live):
        _stop_process(p, grace_s=5.0)


atexit.register(_cleanup_all)


def _stop_process(p: subprocess.Popen, *, grace_s: float, sig: int = signal.SIGTERM) -> int | None:
    """Send ``sig`` to ``p`` (then SIGKILL to its process group after ``grace_s``); returns the exit code."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout=10)
    if p in _live:
        _live.remove(p)
    return p.returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n_chars: int = 6000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"(no log: {e})"
    return data[-n_chars:].decode("utf-8", "replace")


def _env(data_dir: Path, overrides: dict | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["BEATSYNC_DATA_DIR"] = str(data_dir)
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


class Server:
    """One ``streamlit run app.py`` process with its own data dir (shared with `restart`)."""

    def __init__(self, data_dir: Path, env: dict | None = None, *, name: str = "server",
                 log_dir: Path | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env_overrides = dict(env or {})
        self.name = name
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self.starts = 0
        #: the owner token the test client uses for everything it uploads and submits (what a client
        #: keeps: `upload`, `submit` and `cancel_running` send it; control requests made by hand add
        #: ``headers=server.owner_headers()``)
        self.owner = CLIENT_OWNER

    def owner_headers(self, token: str | None = None) -> dict:
        return {"X-BeatSync-Owner": token or self.owner}

    # ---- lifecycle
    def start(self, env: dict | None = None, *, wait: bool = True) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if env:
            self.env_overrides.update(env)
        self.port = free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=_env(self.data_dir, self.env_overrides),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _live.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before answering"
                                     f"{self.log_hint()}")
            try:
                r = requests.get(self.url("/api/health"), timeout=2)
                if r.status_code in (200, 503) and r.headers.get("content-type", "").startswith(
                        "application/json"):
                    return
                last = f"{r.status_code} {r.text[:200]!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.25)
        raise AssertionError(f"{self.name}: /api/health did not answer within {timeout:.0f} s "
                             f"(last: {last}){self.log_hint()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the server process only (not its children: they must notice on their own)."""
        assert self.alive(), f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _live.remove(self.proc)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL (process group) if it does not stop within ``timeout``."""
        if self.proc is None:
            return None
        return _stop_process(self.proc, grace_s=timeout)

    def restart(self, env: dict | None = None) -> Server:
        """Stop (if running) and start again on the same data dir (a new port)."""
        if self.alive():
            self.terminate()
        return self.start(env)

    def close(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, grace_s=10.0)
        servers = {p.pid for p in _live}  # another server on the same data dir closes itself
        for pid in processes_of(self.data_dir):  # job children / ffmpeg left behind by a failure
            if pid in servers:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    # ---- HTTP
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.get(self.url(path), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return requests.post(self.url(path), **kw)

    def raw_request(self, method: str, raw_path: str, body: bytes | None = None,
                    headers: dict | None = None) -> tuple[int, dict, bytes]:
        """A request whose path is sent byte for byte (no dot-segment normalisation)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, raw_path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def log_hint(self) -> str:
        if self.log_path is None:
            return ""
        return f"\n---- {self.name} log tail ({self.log_path}) ----\n{tail(self.log_path)}"

    def health(self) -> requests.Response:
        return self.get("/api/health", timeout=10)


class RedisServer:
    """A real ``redis-server`` (Debian package) on a free loopback port, its files in ``folder``;
    no persistence (the tests that restart it want a clean server)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (Debian: apt-get install redis-server)"
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(self.proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"redis-server exited: {tail(self.folder / 'redis.log')}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer: {tail(self.folder / 'redis.log')}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _live.remove(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, grace_s=5.0)


def redis_available() -> bool:
    return bool(os.environ.get("BEATSYNC_TEST_REDIS_URL") or shutil.which("redis-server"))


def celery_env(redis_url: str, **extra) -> dict:
    """The environment of a Celery-backend process: its own key prefix (and queue), so tests sharing
    one Redis server never see each other's tasks."""
    return {"BEATSYNC_BACKEND": "celery", "BEATSYNC_REDIS_URL": redis_url,
            "BEATSYNC_REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}", **extra}


class CeleryWorker:
    """``celery -A beatsync.tasks.celery_app worker`` (the ordinary command) on a data dir."""

    def __init__(self, data_dir: Path, env: dict, *, log_path: Path, name: str = "w", concurrency: int = 1):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.name = name
        cmd = [sys.executable, "-m", "celery", "-A", "beatsync.tasks.celery_app", "worker", "--loglevel", "INFO",
               "--concurrency", str(concurrency), "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-mingle",
               "--without-gossip"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=_env(self.data_dir, env), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _live.append(self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> CeleryWorker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"celery worker exited with {self.proc.returncode}{self.log_hint()}"
            if b" ready." in (self.log_path.read_bytes() if self.log_path.exists() else b""):
                return self
            time.sleep(0.1)
        raise AssertionError(f"celery worker not ready within {timeout:.0f} s{self.log_hint()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the worker process only (its job must notice and stop on its own)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _live.remove(self.proc)

    def stop(self, timeout: float = 30.0) -> int | None:
        return _stop_process(self.proc, grace_s=timeout)

    def log_hint(self) -> str:
        return f"\n---- celery worker log tail ({self.log_path}) ----\n{tail(self.log_path)}"


class Worker:
    """``python -m beatsync worker`` on a data dir."""

    def __init__(self, data_dir: Path, env: dict | None = None, *, log_path: Path, threads: int | None = None):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        cmd = [sys.executable, "-m", "beatsync", "worker"] + (["--threads", str(threads)] if threads else [])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=_env(self.data_dir, env), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _live.append(self.proc)

    def stop(self, timeout: float = 20.0) -> int | None:
        return _stop_process(self.proc, grace_s=timeout)

    def log_hint(self) -> str:
        return f"\n---- worker log tail ({self.log_path}) ----\n{tail(self.log_path)}"


# --------------------------------------------------------------------------------------------
# /proc: job processes of a task, processes of a data dir
# --------------------------------------------------------------------------------------------


def _proc_read(pid: int, what: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    stat = _proc_read(pid, "stat")
    if stat is None:
        return True
    return stat[stat.rfind(b")") + 2:].split(b" ", 1)[0] in (b"Z", b"X")


def parent(pid: int) -> int | None:
    """The parent pid of ``pid`` (None when it is gone)."""
    stat = _proc_read(pid, "stat")
    if stat is None:
        return None
    return int(stat[stat.rfind(b")") + 2:].split(b" ")[1])


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]


def cmdline(pid: int) -> str:
    raw = _proc_read(pid, "cmdline") or b""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def job_processes(task_id: str) -> list[int]:
    """Live (non-zombie) pids whose command line runs the job module with ``task_id``."""
    out = []
    for pid in _pids():
        cl = cmdline(pid)
        if JOB_CMDLINE.search(cl) and task_id in cl and not _is_zombie(pid):
            out.append(pid)
    return out


def processes_mentioning(text: str) -> list[int]:
    """Live pids whose command line contains ``text`` (a task id, a data dir, ...)."""
    return [pid for pid in _pids() if text in cmdline(pid) and not _is_zombie(pid)]


def processes_of(data_dir: Path) -> list[int]:
    """Live pids that belong to a data dir: ``BEATSYNC_DATA_DIR`` in their environment, or the path
    on their command line (servers, workers, job children, their ffmpeg)."""
    key = f"BEATSYNC_DATA_DIR={data_dir}".encode()
    out = []
    for pid in _pids():
        env = _proc_read(pid, "environ") or b""
        if (key in env.split(b"\0") or str(data_dir) in cmdline(pid)) and not _is_zombie(pid):
            out.append(pid)
    return out


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        stat = _proc_read(p, "stat")
        if not stat:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split(b" ")[1])
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return [p for p in out if not _is_zombie(p)]


def alive(pids) -> list[int]:
    return [p for p in pids if _proc_read(p, "stat") is not None and not _is_zombie(p)]


def wait_gone(pids, timeout: float = 8.0) -> list[int]:
    """Wait until none of ``pids`` lives; returns those still alive (with their command lines checked
    against pid reuse by the caller if needed)."""
    deadline = time.monotonic() + timeout
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = alive(left)
    return left


def wait_job_process(task_id: str, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = job_processes(task_id)
        if pids:
            return pids
        time.sleep(0.05)
    return []


def job_family(task_id: str, timeout: float = 20.0) -> set[int]:
    """The job process(es) of a task and their descendants (ffmpeg), found while it runs."""
    jobs = wait_job_process(task_id, timeout=timeout)
    assert jobs, f"no job process with {task_id} on its command line"
    family = set(jobs)
    for p in jobs:
        family.update(descendants(p))
    return family


def cancel_running(server: Server, task_id: str) -> dict:
    """Cancel a running task through the API and check that it stops: ``failed``/``cancelled`` within
    8 s, its job and ffmpeg gone, no outputs, downloads refused; returns the final status."""
    family = job_family(task_id)
    t0 = time.monotonic()
    obj = check(server.post(f"/api/cancel/{task_id}", headers=server.owner_headers()), 200, server=server)
    assert obj["task_id"] == task_id and obj["status"] in ("processing", "failed"), obj
    if obj["status"] == "failed":
        assert obj["error_code"] == "cancelled", obj
    final = wait_status(server, task_id, "failed", timeout=15, poll_s=0.1)
    took = time.monotonic() - t0
    assert final["error_code"] == "cancelled", final
    assert took < 8.0, f"cancel took {took:.1f} s"
    left = wait_gone(family, timeout=6.0)
    assert left == [], [(p, cmdline(p)) for p in left]
    assert job_processes(task_id) == []
    assert final.get("modular_output") is None and final.get("v2_output") is None, final
    check(server.get(f"/api/download/{task_id}/modular"), 409, "not_ready", server)
    return final


def print_logs_if_failed(request, failed_before: int, logs) -> None:
    """At a fixture's teardown: when a test failed since ``failed_before``, print ``logs`` (strings)."""
    if request.session.testsfailed > failed_before:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            for text in logs:
                tr.write_line(text)


def data_dir_paths_named(data_dir: Path, text: str) -> list[Path]:
    """Files and folders under ``data_dir`` whose name contains ``text``."""
    return [p for p in Path(data_dir).rglob("*") if text in p.name]


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------


def is_uuid4(s) -> bool:
    try:
        u = uuid.UUID(str(s))
    except ValueError:
        return False
    return u.version == 4 and str(u) == s


def body(r: requests.Response) -> dict:
    try:
        obj = r.json()
    except ValueError:
        raise AssertionError(f"{r.request.method} {r.url}: {r.status_code}, not JSON: {r.text[:500]!r}") from None
    assert isinstance(obj, dict), obj
    return obj


def check(r: requests.Response, status: int | tuple, error_code: str | tuple | None = None,
          server: Server | None = None) -> dict:
    """Assert the status (one or several), and for errors the JSON error shape and code; returns the body."""
    statuses = status if isinstance(status, tuple) else (status,)
    hint = server.log_hint() if server is not None else ""
    assert r.status_code in statuses, (f"{r.request.method} {r.url}: expected {statuses}, got {r.status_code}: "
                                       f"{r.text[:1000]}{hint}")
    obj = body(r)
    if r.status_code >= 400:
        assert isinstance(obj.get("error"), str) and len(obj["error"]) > 5, obj
        assert isinstance(obj.get("error_code"), str) and obj["error_code"], obj
        assert "Traceback" not in obj["error"], obj
        if error_code is not None:
            codes = error_code if isinstance(error_code, tuple) else (error_code,)
            assert obj["error_code"] in codes, f"expected error_code {codes}, got {obj}{hint}"
    return obj


def upload(server: Server, path, *, name: str | None = None, mime: str = "application/octet-stream",
           owner: str | None = None) -> requests.Response:
    """Upload a file, owned by the server's test client token (`Server.owner`) or by ``owner``."""
    path = Path(path)
    with open(path, "rb") as fh:
        return server.post("/api/upload", files={"file": (name or path.name, fh, mime)}, timeout=120,
                           headers=server.owner_headers(owner))


def upload_ok(server: Server, path, **kw) -> dict:
    obj = check(upload(server, path, **kw), 201, server=server)
    assert is_uuid4(obj["file_id"]), obj
    return obj


def submit(server: Server, dance_id: str, bgm_id: str, options: dict | None = None, *,
           owner: str | None = None) -> requests.Response:
    """Submit a job with the server's test client token (`Server.owner`) or ``owner``."""
    payload = {"dance_file_id": dance_id, "bgm_file_id": bgm_id}
    if options is not None:
        payload["options"] = options
    return server.post("/api/process", json=payload, headers=server.owner_headers(owner))


def submit_ok(server: Server, dance_id: str, bgm_id: str, options: dict | None = None) -> str:
    obj = check(submit(server, dance_id, bgm_id, options), 202, server=server)
    assert obj["status"] == "pending", obj
    assert is_uuid4(obj["task_id"]), obj
    return obj["task_id"]


def status(server: Server, task_id: str) -> dict:
    return check(server.get(f"/api/status/{task_id}"), 200, server=server)


def wait_status(server: Server, task_id: str, until=("success", "failed"), timeout: float = 120.0,
                history: list | None = None, poll_s: float = 0.25, pred=None) -> dict:
    """Poll the status until its ``status`` is in ``until`` (and ``pred(obj)`` if given); returns it.

    Every polled object is appended to ``history`` when given.
    """
    until = (until,) if isinstance(until, str) else tuple(until)
    deadline = time.monotonic() + timeout
    obj = None
    while time.monotonic() < deadline:
        obj = status(server, task_id)
        if history is not None:
            history.append(obj)
        if obj["status"] in until and (pred is None or pred(obj)):
            return obj
        if obj["status"] in ("success", "failed") and obj["status"] not in until:
            raise AssertionError(f"task {task_id} ended {obj['status']} while waiting for {until}: "
                                 f"{json.dumps(obj)[:1500]}{server.log_hint()}")
        time.sleep(poll_s)
    raise AssertionError(f"task {task_id} not {until} within {timeout:.0f} s; last: "
                         f"{json.dumps(obj)[:1500]}{server.log_hint()}")


def files_containing(data_dir, needle: bytes) -> list[Path]:
    """The files under ``data_dir`` whose bytes contain ``needle`` (what a server kept of something)."""
    hits = []
    for p in Path(data_dir).rglob("*"):
        try:
            if p.is_file() and needle in p.read_bytes():
                hits.append(p)
        except OSError:
            continue
    return hits


def assert_alive(server: Server, healthy: bool = False) -> dict:
    """The server process runs and /api/health answers with its JSON body (200 "ok" if ``healthy``)."""
    assert server.alive(), f"{server.name} died{server.log_hint()}"
    r = server.health()
    assert r.status_code in ((200,) if healthy else (200, 503)), (r.status_code, r.text[:500], server.log_hint())
    obj = body(r)
    assert obj["status"] == ("ok" if r.status_code == 200 else "degraded"), obj
    return obj


# --------------------------------------------------------------------------------------------
# media
# --------------------------------------------------------------------------------------------


def _pair(tmp_path_factory, key: str, spec: dict) -> sg.ClassMedia:
    if key not in _media_cache:
        folder = tmp_path_factory.mktemp(f"media_{key}")
        _media_cache[key] = sg.write_class_media(folder, **spec, **SMALL_PICTURE)
    return _media_cache[key]


def short_pair(tmp_path_factory) -> sg.ClassMedia:
    """About 12 s of 128x96 class video with the song (stereo 44.1-kHz wav) at 2.5-10.5 s."""
    return _pair(tmp_path_factory, "short", SHORT)


def long_pair(tmp_path_factory) -> sg.ClassMedia:
    """About 75 s of class video with the song from 2.5 s nearly to the end: a job of ~7 s or more."""
    return _pair(tmp_path_factory, "long", LONG)


#: several groups dancing to one song: each class video ``video_s`` long, the song heard from its own
#: ``music_at_s`` (per take) for ``music_len_s``
TAKES = {"video_s": 8.0, "song_s": 7.0, "music_len_s": 5.5, "music_at_s": (1.0, 1.5, 2.0, 2.5), "seed": 71}


@dataclass
class Takes:
    """A song and the class videos of several takes of one routine to it (``group1.mp4``, ...)."""

    song_path: Path
    videos: list[Path]
    music_at_s: list[float]


def class_takes(folder, n: int = 3, **spec) -> Takes:
    """``n`` (up to 4) short class videos (128x96) of one song, each with its own room sound and its own
    start of the music, written as ``group1.mp4`` ... with ``song.wav`` into ``folder``."""
    import mediagen

    sp = {**TAKES, **spec}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    song_y = sg.song(sp["song_s"], sr=44100, tempo_bpm=112.0, seed=sp["seed"], channels=2)
    song_path = mediagen.write_song(folder / "song.wav", song_y, sr=44100)
    videos, starts = [], []
    for i in range(n):
        at = sp["music_at_s"][i]
        sound = sg.class_sound(song_y, song_sr=44100, video_sr=48000, music_at_s=at, music_len_s=sp["music_len_s"],
                               total_s=sp["video_s"] + 1.0, seed=sp["seed"] + 10 * (i + 1))
        videos.append(mediagen.write_class_video(folder / f"group{i + 1}.mp4", duration_s=sp["video_s"], audio=sound,
                                                 sr=48000, **SMALL_PICTURE))
        starts.append(at)
    return Takes(song_path, videos, starts)


def heard_song_times(out_path: Path, song: sg.ClassMedia, out_times, *, sr: int = 44100,
                     win_s: float = 1.0) -> list[tuple[float, float]]:
    """For each output time, the song time best matching a ``win_s`` window of the output's sound
    there (whole-song normalised cross-correlation) and the correlation at the peak."""
    from beatsync import media

    info = media.probe(str(out_path))
    y = media.decode_audio(str(out_path), sr=sr, mono=True, info=info).astype(np.float64)
    ref = song.song.mean(axis=0).astype(np.float64)
    if song.song_sr != sr:
        import soxr

        ref = soxr.resample(ref, song.song_sr, sr)
    n = int(win_s * sr)
    c2 = np.concatenate([[0.0], np.cumsum(ref**2)])
    ref_energy = np.maximum(c2[n:] - c2[:-n], 0.0)  # energy of every n-sample window of the song
    nfft = 1 << int(np.ceil(np.log2(len(ref) + n)))
    ref_spec = np.fft.rfft(ref, nfft)
    out = []
    for t in out_times:
        i = int(round((t - info.audio_origin_s) * sr))
        seg = y[i:i + n]
        assert len(seg) == n, f"{out_path.name}: no sound at {t} s"
        c = np.fft.irfft(ref_spec * np.conj(np.fft.rfft(seg, nfft)), nfft)[: len(ref) - n + 1]
        ncc = c / (np.sqrt(ref_energy * float(seg @ seg)) + 1e-12)
        k = int(np.argmax(ncc))
        out.append((k / sr, float(ncc[k])))
    return out

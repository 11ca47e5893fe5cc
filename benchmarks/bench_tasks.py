"""Load benchmark of the task system: status latency under 50 pollers while a burst of jobs runs.

Target (from the issue): with 50 clients polling ``GET /api/status/{task_id}`` while jobs run,
status latency p99 < 50 ms on this machine, and 20 submissions in a burst with 2 workers all end
in ``success``.

Usage (from the repository root)::

    python benchmarks/bench_tasks.py                        # 20 jobs, 2 workers, 50 pollers
    python benchmarks/bench_tasks.py --jobs 6 --video-s 15  # a quicker check
    python benchmarks/bench_tasks.py --json                 # last stdout line: one JSON object

It starts a real server (``python -m streamlit run app.py``, the web UI and the JSON API) on a
free port with a fresh data directory, makes one class video and its song with the tests' media
generator (``tests/songgen.py``), uploads them once, submits ``--jobs`` jobs on that pair in a
burst, and meanwhile ``--clients`` threads (one keep-alive session each) poll the status of the
submitted tasks round-robin until every job has finished. Every status request's latency is
measured around the call on the client side. The server is always stopped and the data directory
removed at the end. This is a script, not a timed test: the latency target is reported, not
enforced; the exit code is 0 when every job succeeded and every request answered as expected.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
from server_util import CLIENT_OWNER, free_port, tail  # noqa: E402  (the tests' server helpers)

#: the benchmark client's owner token: its uploads are owned by it, and its submissions send it
OWNER_HEADERS = {"X-BeatSync-Owner": CLIENT_OWNER}

REPO = Path(__file__).resolve().parents[1]  # whose app.py / beatsync/ is served (--repo)

TARGET_P99_MS = 50.0
MUSIC_AT_S = 2.5  # dance time at which the song starts in the generated class video
READY_TIMEOUT_S = 120.0
HEALTH_EVERY_S = 1.0
SLOW_MS = 1000.0  # requests slower than this are listed one by one
OTHER_LOAD_WARN_PCT = 25.0  # mean CPU (% of one core) used by others while the jobs ran: the numbers are noisy
CPU_KEYS = ("server_cpu_pct", "jobs_cpu_pct", "client_cpu_pct", "other_cpu_pct", "irq_cpu_pct", "steal_cpu_pct",
            "machine_cpu_pct", "server_runq_ms_per_s", "client_runq_ms_per_s")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def code_fingerprint(repo: Path) -> str:
    """Short hash of the contents of beatsync/**/*.py and app.py: shows whether the code changed."""
    h = hashlib.sha1()
    for path in sorted([*(repo / "beatsync").rglob("*.py"), repo / "app.py"]):
        with contextlib.suppress(OSError):
            h.update(str(path.relative_to(repo)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


def machine(repo: Path) -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        m = re.search(r"^model name\s*:\s*(.*)$", fh.read(), re.M)
        cpu = m.group(1) if m else ""
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "beatsync", "app.py"],
                           capture_output=True, text=True)
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "requests": requests.__version__,
            "git": (rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or "(not a git checkout)"}


# =============================================================================================
# /proc: CPU of the server process and of the machine
# =============================================================================================

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state, 1 = ppid, 11 = utime)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(fields: list[str], children: bool = False) -> float:
    """User + system CPU seconds (its threads included), plus those of its reaped children if asked."""
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _TICK


def _tree_cpu_s(root: int, exclude: set[int]) -> tuple[float, float, dict[int, float]] | None:
    """(CPU seconds of ``root`` itself, of ``root`` and all its descendants dead or alive, own CPU
    seconds of every other process but ``exclude``).

    Reaped children are in their parent's cutime/cstime, live ones are read one by one, so the sum
    over the live tree of (own + reaped children) counts everything once.
    """
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat_fields(int(d))
            if f is not None:
                stats[int(d)] = f
    if root not in stats:
        return None
    kids: dict[int, list[int]] = {}
    for pid, f in stats.items():
        kids.setdefault(int(f[1]), []).append(pid)
    total, todo, tree = 0.0, [root], set()
    while todo:
        pid = todo.pop()
        tree.add(pid)
        total += _cpu_s(stats[pid], children=True)
        todo += kids.get(pid, [])
    others = {pid: _cpu_s(f) for pid, f in stats.items() if pid not in tree and pid not in exclude}
    return _cpu_s(stats[root]), total, others


def _command(pid: int, n: int = 90) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        argv = []
    return (" ".join([os.path.basename(argv[0]), *argv[1:]]) if argv else f"pid {pid}")[:n]


def _machine_cpu_s() -> tuple[float, float, float] | None:
    """CPU seconds of all CPUs since boot: (in processes: user + nice + system, in interrupts: irq +
    softirq, e.g. the loopback network traffic of the benchmark itself, stolen by the hypervisor)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(x) for x in fh.readline().split()[1:]] + [0] * 8
    except OSError:
        return None
    return sum(vals[:3]) / _TICK, (vals[5] + vals[6]) / _TICK, vals[7] / _TICK


def _runq_wait_s(pid: int) -> float | None:
    """Seconds the threads of ``pid`` spent runnable but waiting for a CPU (schedstat run_delay, summed
    over its live threads): how much the process was starved of CPU."""
    total, any_ok = 0.0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
            total += int(fh.read().split()[1]) / 1e9
            any_ok = True
    return total if any_ok else None


def cpu_snapshot(server_pid: int, probe_pid: int | None) -> dict:
    """Cumulative CPU seconds: the server process, the server with its jobs and their ffmpeg, this
    client (and the probe process), the whole machine."""
    snap = {"t": time.perf_counter(), "client": sum(os.times()[:2]), "server_runq": _runq_wait_s(server_pid),
            "client_runq": _runq_wait_s(os.getpid())}
    m = _machine_cpu_s()
    if m:
        snap["machine"], snap["irq"], snap["steal"] = m
    tree = _tree_cpu_s(server_pid, {os.getpid(), probe_pid or -1})
    if tree:
        snap["server"], snap["tree"], snap["others"] = tree
    if probe_pid:
        f = _stat_fields(probe_pid)
        if f:
            snap["client"] += _cpu_s(f)
    return snap


def cpu_pct(prev: dict, cur: dict) -> dict:
    """CPU use between two snapshots, in % of one core: ``server`` (the server process's own threads),
    ``jobs`` (job processes and their ffmpeg), ``client`` (this benchmark), ``other`` (other processes:
    someone else's load on the machine), ``irq`` (interrupts), ``steal`` (taken by the hypervisor) and
    ``machine`` (all of it, up to 100 x cores)."""
    dt = cur["t"] - prev["t"]
    if dt <= 0:
        return {}

    def d(key):
        return cur[key] - prev[key] if cur.get(key) is not None and prev.get(key) is not None else None

    out = {"client_cpu_pct": round(100 * d("client") / dt, 1)}
    for who in ("server", "client"):
        if d(f"{who}_runq") is not None:
            out[f"{who}_runq_ms_per_s"] = round(1000 * max(0.0, d(f"{who}_runq")) / dt, 1)
    if d("server") is not None:
        out["server_cpu_pct"] = round(100 * d("server") / dt, 1)
        out["jobs_cpu_pct"] = round(100 * max(0.0, d("tree") - d("server")) / dt, 1)
    if d("machine") is not None:
        out["machine_cpu_pct"] = round(100 * (d("machine") + d("irq") + d("steal")) / dt, 1)
        out["irq_cpu_pct"] = round(100 * d("irq") / dt, 1)
        out["steal_cpu_pct"] = round(100 * d("steal") / dt, 1)
        if d("tree") is not None:
            out["other_cpu_pct"] = round(100 * max(0.0, d("machine") - d("tree") - d("client")) / dt, 1)
    if cur.get("others") and prev.get("others"):  # who the others are: the largest users, by command line
        use = sorted(((c - prev["others"][pid], pid) for pid, c in cur["others"].items() if pid in prev["others"]),
                     reverse=True)
        out["other_top"] = {_command(pid): round(100 * c / dt, 1) for c, pid in use[:3] if c / dt >= 0.05}
    return out


def _pids_of_data_dir(data_dir: Path) -> list[int]:
    """Live pids with ``BEATSYNC_DATA_DIR=<data_dir>`` in their environment (server, jobs, their ffmpeg)."""
    key = f"BEATSYNC_DATA_DIR={data_dir}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{d}/environ", "rb") as fh:
            if key in fh.read().split(b"\0"):
                out.append(int(d))
    return out


# =============================================================================================
# the server
# =============================================================================================


class Server:
    """``python -m streamlit run app.py`` on a free port, its output in ``log_path``."""

    def __init__(self, repo: Path, data_dir: Path, log_path: Path, env: dict):
        self.repo, self.data_dir, self.log_path = repo, data_dir, log_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(repo) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["BEATSYNC_DATA_DIR"] = str(data_dir)
        full_env.update({k: str(v) for k, v in env.items()})
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        with open(log_path, "wb") as fh:
            self.proc = subprocess.Popen(cmd, cwd=repo, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """Wait until ``GET /api/health`` answers 200; returns its body."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the server exited with code {self.proc.returncode} before answering")
            try:
                r = requests.get(self.base + "/api/health", timeout=5)
                if r.status_code == 200:
                    return r.json()
                last = f"{r.status_code} {r.text[:300]!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.25)
        raise RuntimeError(f"/api/health did not answer 200 within {timeout:.0f} s (last: {last})")

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL of its process group after ``grace_s``; then any job process or ffmpeg
        of this data directory still alive (they run in their own process groups)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log(f"the server did not stop within {grace_s:.0f} s of SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        left = _pids_of_data_dir(self.data_dir)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if left:
            log(f"killed {len(left)} process(es) of the data dir left after the server stopped: {left}")
        return self.proc.returncode


# =============================================================================================
# media
# =============================================================================================


def make_media(repo: Path, folder: Path, video_s: float) -> dict:
    """A class video (``class.mp4``, the song heard in a room from MUSIC_AT_S) and its song (``song.wav``)."""
    tests = str(repo / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import songgen as sg

    song_s = max(4.0, video_s - 4.0)
    music_len_s = max(3.0, min(song_s, video_s - MUSIC_AT_S) - 1.0)
    t0 = time.perf_counter()
    media = sg.write_class_media(folder, video_s=video_s, song_s=song_s, music_at_s=MUSIC_AT_S,
                                 music_len_s=music_len_s, seed=71)
    return {"dance": str(media.video_path), "bgm": str(media.song_path), "video_s": video_s, "song_s": song_s,
            "music_at_s": MUSIC_AT_S, "music_len_s": music_len_s,
            "dance_bytes": Path(media.video_path).stat().st_size, "bgm_bytes": Path(media.song_path).stat().st_size,
            "generate_s": round(time.perf_counter() - t0, 2)}


def upload(base: str, path: str) -> dict:
    with open(path, "rb") as fh:
        r = requests.post(base + "/api/upload", files={"file": (Path(path).name, fh, "application/octet-stream")},
                          headers=OWNER_HEADERS, timeout=120)
    if r.status_code != 201:
        raise RuntimeError(f"upload of {Path(path).name}: {r.status_code} {r.text[:500]}")
    return r.json()


# =============================================================================================
# load: submitters, pollers, health sampler
# =============================================================================================


class Run:
    """Shared state of one benchmark run (times are ``time.perf_counter()`` seconds)."""

    def __init__(self, n_jobs: int):
        self.n_jobs = n_jobs
        self.task_ids: list[str] = []  # appended as submissions are accepted (list.append is atomic)
        self.first_task = threading.Event()
        self.stop = threading.Event()
        self.all_done = threading.Event()
        self.lock = threading.Lock()
        self.finished_seen: dict[str, tuple[str, float]] = {}  # task_id -> (status, first time seen finished)
        self.submits_done = False
        self.probe_pid: int | None = None

    def task_accepted(self, task_id: str) -> None:
        self.task_ids.append(task_id)
        self.first_task.set()

    def saw(self, task_id: str, status: str, t: float) -> None:
        if status in ("success", "failed") and task_id not in self.finished_seen:
            with self.lock:
                if task_id not in self.finished_seen:
                    self.finished_seen[task_id] = (status, t)
                    if self.submits_done and len(self.finished_seen) >= len(self.task_ids):
                        self.all_done.set()

    def check_done(self) -> None:
        with self.lock:
            if self.submits_done and len(self.finished_seen) >= len(self.task_ids):
                self.all_done.set()


def submit_burst(base: str, dance_id: str, bgm_id: str, n: int, threads: int,
                 on_task: Callable[[str], None] | None = None) -> list[dict]:
    """``n`` submissions as fast as ``threads`` threads (one session each) can send them; one row per
    submission; ``on_task(task_id)`` as each is accepted."""
    local = threading.local()
    payload = {"dance_file_id": dance_id, "bgm_file_id": bgm_id}

    def one(i: int) -> dict:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        t0 = time.perf_counter()
        row = {"i": i, "t": t0}
        try:
            r = local.session.post(base + "/api/process", json=payload, headers=OWNER_HEADERS, timeout=60)
            row["code"] = r.status_code
            try:
                body = r.json()
            except ValueError:
                body = {"text": r.text[:300]}
            if r.status_code == 202 and body.get("task_id"):
                if on_task is not None:
                    on_task(body["task_id"])
                row["task_id"] = body["task_id"]
            else:
                row["body"] = body
        except requests.RequestException as e:
            row["code"], row["body"] = 0, {"exception": repr(e)}
        row["latency_s"] = time.perf_counter() - t0
        return row

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="submit") as pool:
        rows = list(pool.map(one, range(n)))
    return rows


def poller(base: str, run: Run, k: int, n_clients: int, interval: float, out: list) -> None:
    """One client: its own keep-alive session, status of the submitted tasks round-robin.

    Appends ``(start, latency_s, http_status)`` per request to ``out`` (0 = no answer: an exception).
    """
    session = requests.Session()
    run.first_task.wait()
    i = k  # clients start at different tasks
    while not run.stop.is_set():
        ids = run.task_ids
        tid = ids[i % len(ids)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = session.get(f"{base}/api/status/{tid}", timeout=30)
            t1 = time.perf_counter()
            code = r.status_code
            if code == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    run.saw(tid, r.json().get("status"), t1)
        except requests.RequestException:
            t1 = time.perf_counter()
            code = 0
        out.append((t0, t1 - t0, code))
        if interval > 0:
            run.stop.wait(interval)
    session.close()


def probe_main(base: str, task_ids: list[str], interval: float) -> int:
    """The probe process (``--probe``): one client, one request per ``interval``, until stdin closes;
    then one JSON list of ``[epoch start, latency_s, http_status]`` on stdout. It measures the
    latency a light client sees, without the GIL and CPU contention of the 50 client threads."""
    stop = threading.Event()

    def wait_eof():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_eof, daemon=True).start()
    out = []
    i = 0
    with requests.Session() as session:
        while not stop.is_set():
            tid = task_ids[i % len(task_ids)]
            i += 1
            w0, t0 = time.time(), time.perf_counter()
            try:
                code = session.get(f"{base}/api/status/{tid}", timeout=30).status_code
            except requests.RequestException:
                code = 0
            out.append([w0, time.perf_counter() - t0, code])
            stop.wait(interval)
    print(json.dumps(out))
    return 0


class Probe:
    """`probe_main` in a child process (started with this script's ``--probe``)."""

    def __init__(self, base: str, task_ids: list[str], interval: float):
        cmd = [sys.executable, __file__, "--probe", base, "--probe-ids", ",".join(task_ids),
               "--probe-interval", str(interval)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def finish(self, wall0: float) -> list[tuple[float, float, int]]:
        """Stop it; its requests as ``(perf_counter start, latency_s, http_status)``."""
        try:
            out, _ = self.proc.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return []
        try:
            rows = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            log(f"the probe process gave no result (exit {self.proc.returncode})")
            return []
        return [(w - wall0, lat, code) for w, lat, code in rows]


def renicer(data_dir: Path, server_pid: int, nice: int, run: Run, reniced: set) -> None:
    """Diagnostic (``--renice-jobs``): lower the CPU priority of the job processes and their ffmpeg
    (every process of the data dir but the server) to see what it does to the status latency."""
    while not run.stop.is_set():
        for pid in _pids_of_data_dir(data_dir):
            if pid != server_pid and pid not in reniced:
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, pid) < nice:
                        os.setpriority(os.PRIO_PROCESS, pid, nice)
                    reniced.add(pid)
        run.stop.wait(0.1)


def health_sampler(base: str, run: Run, server_pid: int, out: list) -> None:
    """Every HEALTH_EVERY_S: ``/api/health`` (latency, queue, processing) and CPU use of the server process,
    of the machine and of this (client) process."""
    session = requests.Session()
    prev = None
    while not run.stop.is_set():
        t0 = time.perf_counter()
        row: dict = {"t": t0}
        try:
            r = session.get(base + "/api/health", timeout=30)
            row["code"] = r.status_code
            with contextlib.suppress(ValueError):
                h = r.json()
                row.update(queue=h.get("queue"), processing=h.get("processing"),
                           worker_threads=h.get("worker_threads"), health=h.get("status"))
        except requests.RequestException as e:
            row["code"], row["exception"] = 0, repr(e)
        t1 = time.perf_counter()
        row["latency_s"] = t1 - t0
        cur = cpu_snapshot(server_pid, run.probe_pid)
        if prev is not None:
            row.update(cpu_pct(prev, cur))
        prev = cur
        out.append(row)
        run.stop.wait(max(0.0, HEALTH_EVERY_S - (time.perf_counter() - t0)))
    session.close()


# =============================================================================================
# statistics and report
# =============================================================================================


def latency_stats(lat_s: np.ndarray) -> dict:
    if lat_s.size == 0:
        return {"n": 0}
    ms = lat_s * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": int(ms.size), "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
            "p99_ms": round(float(p99), 2), "max_ms": round(float(ms.max()), 2),
            "mean_ms": round(float(ms.mean()), 2),
            f"over_{TARGET_P99_MS:g}ms": int((ms > TARGET_P99_MS).sum())}


def _num(x) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _between(status: dict, a: str, b: str) -> float | None:
    """Seconds from time stamp ``a`` to ``b`` of a status object (None when either is missing)."""
    ta, tb = _num(status.get(a)), _num(status.get(b))
    return tb - ta if ta is not None and tb is not None else None


def final_statuses(base: str, task_ids: list[str]) -> dict[str, dict]:
    out = {}
    with requests.Session() as s:
        for tid in task_ids:
            try:
                r = s.get(f"{base}/api/status/{tid}", timeout=30)
                out[tid] = r.json() if r.status_code == 200 else {"status": f"HTTP {r.status_code}",
                                                                   "error": r.text[:300]}
            except (requests.RequestException, ValueError) as e:
                out[tid] = {"status": "unknown", "error": repr(e)}
    return out


def _fmt(x, fmt: str) -> str:
    return format(x, fmt) if x is not None else format("-", ">" + (re.match(r"\d*", fmt).group() or "1"))


def timeline(reqs: np.ndarray, probe: np.ndarray, health: list[dict], t0: float, window: float) -> list[dict]:
    """Per ``window`` seconds: status requests, their p50/p99/max, non-200, the probe's p99 and max,
    health samples (queue, processing, CPU)."""
    if reqs.size == 0:
        return []
    rel = reqs[:, 0] - t0
    n_win = int(np.ceil((rel.max() + 1e-9) / window))
    rows = []
    for w in range(max(1, n_win)):
        sel = (rel >= w * window) & (rel < (w + 1) * window)
        lat = reqs[sel, 1] * 1000
        prel = probe[:, 0] - t0
        plat = probe[(prel >= w * window) & (prel < (w + 1) * window), 1] * 1000
        hs = [h for h in health if w * window <= h["t"] - t0 < (w + 1) * window]

        def hmax(key, hs=hs):
            vals = [h[key] for h in hs if h.get(key) is not None]
            return max(vals) if vals else None

        def hmean(key, hs=hs):
            vals = [h[key] for h in hs if h.get(key) is not None]
            return round(float(np.mean(vals)), 1) if vals else None

        rows.append({
            "from_s": round(w * window, 1), "requests": int(sel.sum()),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "max_ms": round(float(lat.max()), 2) if lat.size else None,
            "non200": int((reqs[sel, 2] != 200).sum()),
            "probe_p99_ms": round(float(np.percentile(plat, 99)), 2) if plat.size else None,
            "probe_max_ms": round(float(plat.max()), 2) if plat.size else None,
            "queue_max": hmax("queue"), "processing_max": hmax("processing"),
            **{k: hmean(k) for k in CPU_KEYS}})
    return rows


def top_others(samples: list[dict], n: int = 4) -> dict[str, float]:
    """The processes not ours that used the most CPU over the samples: mean % of one core each."""
    tot: dict[str, float] = {}
    for x in samples:
        for cmd, pct in (x.get("other_top") or {}).items():
            tot[cmd] = tot.get(cmd, 0.0) + pct
    top = sorted(tot.items(), key=lambda kv: -kv[1])[:n]
    return {cmd: round(v / max(1, len(samples)), 1) for cmd, v in top}


def log_problems(path: Path, limit: int = 12) -> tuple[int, list[str]]:
    """Lines of the server log that look like trouble (tracebacks, errors, warnings)."""
    try:
        lines = path.read_text("utf-8", "replace").splitlines()
    except OSError:
        return 0, []
    bad = [ln for ln in lines if re.search(r"Traceback|\bERROR\b|Error:|Exception|\bWARNING\b|CRITICAL", ln)]
    return len(bad), bad[:limit]


def print_report(doc: dict) -> None:
    s = doc["summary"]
    print()
    print(f"server: {doc['args']['workers']} worker thread(s), queue_max {doc['args']['queue_max']}, "
          f"{doc['machine']['cpus']} CPU(s) ({doc['machine']['cpu']}); code {doc['code_versions'][0]} "
          f"(git {doc['machine']['git']})")
    m = doc["media"]
    print(f"media: class.mp4 {m['video_s']:.0f} s ({m['dance_bytes'] / 1e6:.1f} MB), song.wav {m['song_s']:.0f} s; "
          f"song heard from {m['music_at_s']} s for {m['music_len_s']:.0f} s")
    print()
    j = s["jobs"]
    print(f"jobs: {j['submitted']} submitted in {j['burst_s']:.2f} s from {doc['args']['submit_threads']} "
          f"thread(s) ({j['accepted']} accepted with 202; submit latency p50 {_fmt(j['submit_p50_ms'], '.1f')} ms, "
          f"max {_fmt(j['submit_max_ms'], '.1f')} ms)")
    print(f"      {j['success']} success, {j['failed']} failed, {j['unfinished']} not finished")
    if j["failed_codes"]:
        print(f"      failures by error_code: {j['failed_codes']}")
    print(f"      drained in {_fmt(j['drain_s'], '.1f')} s (first submission -> last job finished): "
          f"{_fmt(j['jobs_per_min'], '.2f')} jobs/min")
    print(f"      one job: run {_fmt(j['run_s_median'], '.2f')} s median ({_fmt(j['run_s_min'], '.2f')}-"
          f"{_fmt(j['run_s_max'], '.2f')}), wait in queue up to {_fmt(j['wait_s_max'], '.1f')} s; "
          f"both outputs in {j['both_outputs']}/{j['success']} successes; attempts > 1: {j['retried']}")
    if j.get("variant_errors"):
        print(f"      engines that failed inside successful jobs: {j['variant_errors']}")
    if j.get("offsets"):
        print(f"      offsets found (expected ~{m['music_at_s']} s): {j['offsets']}")
    h = s["health"]
    print(f"health: {h['samples']} samples, max queue {_fmt(h['queue_max'], 'd')}, max processing "
          f"{_fmt(h['processing_max'], 'd')}, non-200 {h['non200']}, latency p50 {_fmt(h['p50_ms'], '.1f')} ms "
          f"max {_fmt(h['max_ms'], '.1f')} ms")
    print(f"CPU while the jobs ran (mean, % of one core; {doc['machine']['cpus']} cores): server process "
          f"{_fmt(h['server_cpu_pct'], '.0f')}%, jobs + ffmpeg {_fmt(h['jobs_cpu_pct'], '.0f')}%, this client "
          f"{_fmt(h['client_cpu_pct'], '.0f')}%, other processes {_fmt(h['other_cpu_pct'], '.0f')}% "
          f"(max {_fmt(h['other_cpu_pct_max'], '.0f')}%), interrupts {_fmt(h['irq_cpu_pct'], '.0f')}%, "
          f"stolen by the hypervisor {_fmt(h['steal_cpu_pct'], '.0f')}%; machine {_fmt(h['machine_cpu_pct'], '.0f')}%")
    print(f"waiting for a CPU while the jobs ran (run-queue delay, summed over threads): server "
          f"{_fmt(h['server_runq_ms_per_s'], '.0f')} ms/s, this client {_fmt(h['client_runq_ms_per_s'], '.0f')} ms/s")
    print()
    st = s["status"]
    print(f"status requests: {st['requests']} by {doc['args']['clients']} clients in {st['duration_s']:.1f} s "
          f"({st['rate_per_s']:.0f}/s; poll interval {doc['args']['poll_interval']} s); non-200: {st['non200']} "
          f"{st['non200_by_code'] or ''}")
    hdr = f"  {'':18} {'requests':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8} " \
          f"{'>' + format(TARGET_P99_MS, 'g') + ' ms':>8}"
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for name, key in (("while jobs busy", "busy"), ("after (no job)", "idle"), ("all", "all"),
                      ("probe, jobs busy", "probe_busy"), ("probe, no job", "probe_idle")):
        r = st[key]
        if not r.get("n"):
            if not key.startswith("probe") or doc["args"]["probe_interval"] > 0:
                print(f"  {name:18} {0:>9}")
            continue
        print(f"  {name:18} {r['n']:>9} {r['p50_ms']:>8.1f} {r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['mean_ms']:>8.1f} {r[f'over_{TARGET_P99_MS:g}ms']:>8}")
    print(f"  ({doc['args']['clients']} client threads in this process; 'after (no job)': the same polling for "
          f"{doc['args']['idle_s']:g} s once every job had finished; 'probe': one separate client process, one "
          f"request every {doc['args']['probe_interval']:g} s)")
    if doc["args"]["renice_jobs"]:
        print(f"  DIAGNOSTIC: job processes and their ffmpeg were reniced to {doc['args']['renice_jobs']} "
              f"({doc['reniced_pids']} processes): not the server as shipped")
    if st["slow"]:
        print(f"  {st['slow_count']} request(s) slower than {SLOW_MS:g} ms; the slowest (time from the first "
              f"submission): " + ", ".join(f"{x['ms']:.0f} ms at {x['at_s']:.1f} s" for x in st["slow"][:5]))
    if doc["timeline"]:
        print()
        print(f"timeline ({doc['args']['window']:g} s windows from the first submission):")
        print(f"  {'from s':>7} {'reqs':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'non200':>6} "
              f"{'probe p99':>9} {'probe max':>9} {'queue':>5} {'proc':>4} {'cpu% srv':>8} {'jobs':>5} "
              f"{'client':>6} {'other':>5} {'irq':>4} {'steal':>5} {'all':>5} {'srv runq':>8}")
        for r in doc["timeline"]:
            print(f"  {r['from_s']:>7.0f} {r['requests']:>6} {_fmt(r['p50_ms'], '7.1f')} {_fmt(r['p99_ms'], '7.1f')} "
                  f"{_fmt(r['max_ms'], '8.1f')} {r['non200']:>6} {_fmt(r['probe_p99_ms'], '9.1f')} "
                  f"{_fmt(r['probe_max_ms'], '9.1f')} {_fmt(r['queue_max'], '5d')} "
                  f"{_fmt(r['processing_max'], '4d')} {_fmt(r['server_cpu_pct'], '8.0f')} "
                  f"{_fmt(r['jobs_cpu_pct'], '5.0f')} {_fmt(r['client_cpu_pct'], '6.0f')} "
                  f"{_fmt(r['other_cpu_pct'], '5.0f')} {_fmt(r['irq_cpu_pct'], '4.0f')} "
                  f"{_fmt(r['steal_cpu_pct'], '5.0f')} {_fmt(r['machine_cpu_pct'], '5.0f')} "
                  f"{_fmt(r['server_runq_ms_per_s'], '8.0f')}")
    if (h["other_cpu_pct"] or 0) > OTHER_LOAD_WARN_PCT:
        print(f"WARNING: other processes used {h['other_cpu_pct']:.0f}% of a core on average while the jobs ran "
              f"(max {h['other_cpu_pct_max']:.0f}%): the machine was shared, the latencies are noisy")
        for cmd, pct in (h.get("other_top") or {}).items():
            print(f"  {pct:5.1f}%  {cmd}")
    lp = doc["server_log"]
    if lp["problem_lines"]:
        print()
        print(f"server log: {lp['problem_lines']} line(s) that look like trouble, e.g.:")
        for ln in lp["examples"]:
            print(f"  {ln[:200]}")
    print()
    for c in doc["checks"]:
        print(("PASS " if c["pass"] else "FAIL ") + c["check"] + ("" if c["enforced"] else " (reported only)"))


# =============================================================================================
# main
# =============================================================================================


def run_benchmark(args, repo: Path, tmp: Path, log_path: Path) -> dict:
    data_dir = tmp / "data"
    media_dir = tmp / "media"
    media_dir.mkdir(parents=True)
    log(f"generating the media ({args.video_s:g} s class video) ...")
    media = make_media(repo, media_dir, args.video_s)
    log(f"  done in {media['generate_s']:.1f} s")
    env = {"BEATSYNC_WORKERS": args.workers, "BEATSYNC_QUEUE_MAX": args.queue_max}
    code_before = code_fingerprint(repo)
    log(f"starting the server (log: {log_path}) ...")
    t_start = time.perf_counter()
    server = Server(repo, data_dir, log_path, env)
    doc: dict = {"media": media, "server_log": {"path": str(log_path)}}
    try:
        h = server.wait_ready()
        doc["server_start_s"] = round(time.perf_counter() - t_start, 2)
        doc["health_at_start"] = h
        log(f"  ready in {doc['server_start_s']:.1f} s: {h}")
        dance = upload(server.base, media["dance"])
        bgm = upload(server.base, media["bgm"])
        doc["uploads"] = {"dance": dance, "bgm": bgm}
        log(f"uploaded {dance['name']} ({dance['file_id']}) and {bgm['name']} ({bgm['file_id']})")

        run = Run(args.jobs)
        reqs_by_client: list[list] = [[] for _ in range(args.clients)]
        health: list[dict] = []
        threads = [threading.Thread(target=poller, name=f"poll-{k}", daemon=True,
                                    args=(server.base, run, k, args.clients, args.poll_interval, reqs_by_client[k]))
                   for k in range(args.clients)]
        threads.append(threading.Thread(target=health_sampler, name="health", daemon=True,
                                        args=(server.base, run, server.proc.pid, health)))
        for t in threads:
            t.start()
        wall0 = time.time() - time.perf_counter()  # epoch = perf_counter + wall0
        log(f"submitting {args.jobs} jobs from {args.submit_threads} thread(s); {args.clients} pollers ...")
        t0 = time.perf_counter()
        submits = submit_burst(server.base, dance["file_id"], bgm["file_id"], args.jobs, args.submit_threads,
                               on_task=run.task_accepted)
        t_burst = time.perf_counter() - t0
        with run.lock:
            run.submits_done = True
        run.first_task.set()  # pollers must not wait forever if nothing was accepted
        accepted = [r for r in submits if r.get("code") == 202]
        log(f"  {len(accepted)}/{args.jobs} accepted in {t_burst:.2f} s"
            + ("" if len(accepted) == args.jobs else f"; refused: {[r.get('body') for r in submits if r.get('code') != 202][:3]}"))
        if not run.task_ids:
            run.all_done.set()
        run.check_done()
        probe = Probe(server.base, run.task_ids, args.probe_interval) if args.probe_interval > 0 and run.task_ids \
            else None
        run.probe_pid = probe.proc.pid if probe else None
        reniced: set[int] = set()
        if args.renice_jobs:
            renice_thread = threading.Thread(target=renicer, name="renice", daemon=True,
                                             args=(data_dir, server.proc.pid, args.renice_jobs, run, reniced))
            renice_thread.start()
            threads.append(renice_thread)
        deadline = t0 + args.timeout
        last_log = time.perf_counter()
        timed_out = server_died = False
        while not run.all_done.wait(0.5):
            now = time.perf_counter()
            if now > deadline:
                timed_out = True
                log(f"timeout: {len(run.finished_seen)}/{len(run.task_ids)} jobs finished after {args.timeout:g} s")
                break
            if not server.alive():
                server_died = True
                log(f"the server exited with code {server.proc.returncode} while jobs ran")
                break
            if now - last_log >= 10:
                last_log = now
                hq = health[-1] if health else {}
                n_req = sum(len(x) for x in reqs_by_client)
                log(f"  {now - t0:6.0f} s: {len(run.finished_seen)}/{len(run.task_ids)} finished, queue "
                    f"{hq.get('queue')}, processing {hq.get('processing')}, {n_req} status requests")
        if run.all_done.is_set() and args.idle_s > 0 and server.alive():
            log(f"all jobs finished; {args.idle_s:g} s more of polling with no job running ...")
            time.sleep(args.idle_s)
        t_end = time.perf_counter()
        probe_rows = probe.finish(wall0) if probe else []
        run.stop.set()
        for t in threads:
            t.join(timeout=40)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log(f"WARNING: {len(stuck)} client thread(s) still inside a request after 40 s: {stuck[:5]}")

        finals = final_statuses(server.base, run.task_ids) if server.alive() else {}
        doc["server_alive_at_end"] = server.alive()
        code_after = code_fingerprint(repo)
        doc["code_versions"] = [code_before] + ([code_after] if code_after != code_before else [])
        rows = [r for rs in reqs_by_client for r in rs]
        reqs = np.array(rows, dtype=float).reshape(-1, 3)

        # when did the last job finish? the server's own time stamp, else when a poller first saw it finished
        seen_t = [t for _, t in run.finished_seen.values()]
        fin_epoch = [_num(f.get("finished")) for f in finals.values()]
        t_last = None
        if run.task_ids and len(run.finished_seen) >= len(run.task_ids):
            t_last = max(seen_t)
            if fin_epoch and all(x is not None for x in fin_epoch):
                t_server = max(fin_epoch) - wall0
                if t0 <= t_server <= t_last + 1.0:
                    t_last = t_server
        busy_end = t_last if t_last is not None else t_end
        busy = reqs[reqs[:, 0] < busy_end] if reqs.size else reqs
        idle = reqs[reqs[:, 0] >= busy_end + 1.0] if reqs.size and t_last is not None else reqs[:0]
        preqs = np.array(probe_rows, dtype=float).reshape(-1, 3)
        pbusy = preqs[preqs[:, 0] < busy_end]
        pidle = preqs[preqs[:, 0] >= busy_end + 1.0] if t_last is not None else preqs[:0]
        non200 = reqs[reqs[:, 2] != 200] if reqs.size else reqs
        by_code: dict[str, int] = {}
        for c in non200[:, 2] if non200.size else []:
            by_code[str(int(c))] = by_code.get(str(int(c)), 0) + 1
        slow = sorted(((float(r[1]) * 1000, float(r[0] - t0)) for r in reqs if r[1] * 1000 > SLOW_MS), reverse=True)

        statuses = [finals.get(tid, {}).get("status") for tid in run.task_ids]
        failed_codes: dict[str, int] = {}
        for f in finals.values():
            if f.get("status") == "failed":
                failed_codes[str(f.get("error_code"))] = failed_codes.get(str(f.get("error_code")), 0) + 1
        run_s = [d for f in finals.values() if f.get("status") == "success"
                 and (d := _between(f, "started", "finished")) is not None]
        wait_s = [d for f in finals.values() if (d := _between(f, "created", "started")) is not None]
        offsets = {}
        for f in finals.values():
            for eng, v in (f.get("variants") or {}).items() if isinstance(f.get("variants"), dict) else []:
                off = None
                if isinstance(v, dict):
                    off = _num(v.get("offset_s") if "offset_s" in v else (v.get("alignment") or {}).get("offset_s"))
                if off is not None:
                    offsets.setdefault(eng, set()).add(round(off, 2))
        variant_errors: dict[str, int] = {}  # an engine that failed inside a successful job
        for f in finals.values():
            for eng, v in (f.get("variants") or {}).items() if isinstance(f.get("variants"), dict) else []:
                if isinstance(v, dict) and v.get("error_code"):
                    key = f"{eng}: {v['error_code']}"
                    variant_errors[key] = variant_errors.get(key, 0) + 1
        n_success = statuses.count("success")
        drain_s = (t_last - t0) if t_last is not None else None
        busy_health = [x for x in health if x["t"] < busy_end]

        def hstat(key, fn, rows=busy_health):
            vals = [x[key] for x in rows if x.get(key) is not None]
            return fn(vals) if vals else None

        hl = np.array([x["latency_s"] for x in health])
        doc.update({
            "submits": [{k: v for k, v in r.items() if k != "t"} | {"at_s": round(r["t"] - t0, 3)} for r in submits],
            "timed_out": timed_out, "server_died": server_died, "stuck_clients": stuck,
            "reniced_pids": len(reniced),
            "tasks": {tid: {k: finals.get(tid, {}).get(k) for k in ("status", "error", "error_code", "attempts",
                                                                   "created", "started", "finished", "seconds")}
                      for tid in run.task_ids},
            "summary": {
                "jobs": {
                    "submitted": args.jobs, "accepted": len(accepted), "burst_s": round(t_burst, 3),
                    "submit_p50_ms": round(float(np.median([r["latency_s"] for r in submits])) * 1000, 1)
                    if submits else None,
                    "submit_max_ms": round(max(r["latency_s"] for r in submits) * 1000, 1) if submits else None,
                    "success": n_success, "failed": statuses.count("failed"),
                    "unfinished": len(statuses) - n_success - statuses.count("failed"),
                    "failed_codes": failed_codes,
                    "drain_s": round(drain_s, 2) if drain_s is not None else None,
                    "jobs_per_min": round(n_success / drain_s * 60, 2) if drain_s else None,
                    "run_s_median": round(float(np.median(run_s)), 2) if run_s else None,
                    "run_s_min": round(min(run_s), 2) if run_s else None,
                    "run_s_max": round(max(run_s), 2) if run_s else None,
                    "wait_s_max": round(max(wait_s), 2) if wait_s else None,
                    "both_outputs": sum(1 for f in finals.values() if f.get("status") == "success"
                                        and f.get("modular_output") and f.get("v2_output")),
                    "retried": sum(1 for f in finals.values() if (_num(f.get("attempts")) or 0) > 1),
                    "offsets": {k: sorted(v) for k, v in offsets.items()},
                    "variant_errors": variant_errors,
                },
                "status": {
                    "requests": int(reqs.shape[0]), "duration_s": round(t_end - t0, 2),
                    "rate_per_s": round(reqs.shape[0] / max(1e-9, t_end - t0), 1),
                    "busy_until_s": round(busy_end - t0, 2),
                    "non200": int(non200.shape[0]), "non200_by_code": by_code,
                    "busy": latency_stats(busy[:, 1]),
                    "idle": latency_stats(idle[:, 1]),
                    "all": latency_stats(reqs[:, 1]),
                    "probe_busy": latency_stats(pbusy[:, 1]),
                    "probe_idle": latency_stats(pidle[:, 1]),
                    "probe_non200": int((preqs[:, 2] != 200).sum()),
                    "slow": [{"ms": round(ms, 1), "at_s": round(at, 2)} for ms, at in slow[:10]],
                    "slow_count": len(slow),
                },
                "health": {
                    "samples": len(health), "non200": sum(1 for x in health if x.get("code") != 200),
                    "queue_max": hstat("queue", max, health), "processing_max": hstat("processing", max, health),
                    "p50_ms": round(float(np.percentile(hl, 50)) * 1000, 1) if hl.size else None,
                    "max_ms": round(float(hl.max()) * 1000, 1) if hl.size else None,
                    **{k: hstat(k, lambda v: round(float(np.mean(v)), 1)) for k in CPU_KEYS},
                    "other_cpu_pct_max": hstat("other_cpu_pct", max, health),
                    "other_top": top_others(busy_health),
                },
            },
            "timeline": timeline(reqs, preqs, health, t0, args.window),
            "health_samples": [{k: v for k, v in x.items() if k != "t"} | {"at_s": round(x["t"] - t0, 2)}
                               for x in health],
        })
    finally:
        log("stopping the server ...")
        doc["server_exit_code"] = server.stop()
    n, examples = log_problems(log_path)
    doc["server_log"].update(problem_lines=n, examples=examples)
    return doc


def checks(doc: dict, args) -> list[dict]:
    s = doc["summary"]
    j, st = s["jobs"], s["status"]
    out = [
        (j["accepted"] == args.jobs, True, f"{j['accepted']}/{args.jobs} submissions accepted (202)"),
        (j["success"] == args.jobs, True,
         f"{j['success']}/{args.jobs} jobs ended in success"
         + (f" (failed: {j['failed_codes']})" if j["failed_codes"] else "")
         + (f", {j['unfinished']} not finished" if j["unfinished"] else "")),
        (st["non200"] == 0 and st["probe_non200"] == 0, True,
         f"{st['non200'] + st['probe_non200']} status requests answered other than 200"
         + (f" {st['non200_by_code']}" if st["non200_by_code"] else "")),
        (not doc["timed_out"] and not doc["server_died"], True,
         "the server stayed up and the jobs finished within the timeout"),
    ]
    p99 = st["busy"].get("p99_ms")
    out.append((p99 is not None and p99 < TARGET_P99_MS, False,
                f"status latency p99 while jobs run = {_fmt(p99, '.1f')} ms (target < {TARGET_P99_MS:g} ms)"))
    return [{"pass": bool(ok), "enforced": enforced, "check": msg} for ok, enforced, msg in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20, help="submissions in the burst (default 20)")
    p.add_argument("--workers", type=int, default=2, help="BEATSYNC_WORKERS of the server (default 2)")
    p.add_argument("--queue-max", type=int, default=100, help="BEATSYNC_QUEUE_MAX of the server (default 100)")
    p.add_argument("--clients", type=int, default=50, help="polling client threads (default 50)")
    p.add_argument("--poll-interval", type=float, default=0.05,
                   help="sleep of each client between two status requests, seconds (default 0.05; 0: none)")
    p.add_argument("--submit-threads", type=int, default=4, help="threads sending the burst (default 4)")
    p.add_argument("--video-s", type=float, default=30.0,
                   help="length of the generated class video, seconds (default 30: a job of a few seconds)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up when the jobs have not all finished this long after the first submission "
                        "(default 900)")
    p.add_argument("--idle-s", type=float, default=10.0,
                   help="after the last job, keep polling this long with no job running: the same load's latency "
                        "on an idle machine, for comparison (default 10; 0: stop at once)")
    p.add_argument("--probe-interval", type=float, default=0.1,
                   help="one extra client in a separate process polls every this many seconds: latency without "
                        "the client threads' contention (default 0.1; 0: no probe)")
    p.add_argument("--renice-jobs", type=int, default=0, metavar="N",
                   help="diagnostic: renice the job processes (and their ffmpeg) to N while they run, to see "
                        "what job priority does to the latency (default 0: leave them alone)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per row of the timeline (default 10)")
    p.add_argument("--repo", default=str(REPO), metavar="DIR",
                   help="serve app.py and beatsync/ of DIR (a snapshot, a worktree); default: this repository")
    p.add_argument("--keep-log", action="store_true", help="keep the server log even when everything passed")
    p.add_argument("--json", action="store_true",
                   help="print everything measured as one JSON object, the last line of stdout")
    p.add_argument("--probe", metavar="BASE_URL", help=argparse.SUPPRESS)  # internal: be the probe process
    p.add_argument("--probe-ids", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        return probe_main(args.probe, args.probe_ids.split(","), args.probe_interval)
    if min(args.jobs, args.workers, args.clients, args.submit_threads, args.queue_max) < 1 or args.video_s < 8 \
            or args.poll_interval < 0 or args.window <= 0:
        p.error("bad arguments (counts must be >= 1, --video-s >= 8)")
    if args.jobs > args.queue_max:
        log(f"WARNING: --jobs {args.jobs} > --queue-max {args.queue_max}: some submissions may get 429 busy")
    repo = Path(args.repo).resolve()
    if not (repo / "app.py").exists() or not (repo / "beatsync").is_dir() or not (repo / "tests" / "songgen.py").exists():
        p.error(f"{repo} has no app.py, beatsync/ or tests/songgen.py")

    tmp = Path(tempfile.mkdtemp(prefix="beatsync-bench-tasks-"))
    fd, log_name = tempfile.mkstemp(prefix="beatsync-bench-tasks-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    t_start = time.perf_counter()
    doc: dict = {}
    error = None
    try:
        doc = run_benchmark(args, repo, tmp, log_path)
    except Exception as e:  # report what happened (and the server log below), then exit 1
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    doc.update(machine=machine(repo), args=vars(args) | {"repo": str(repo)},
               targets={"status_p99_ms": TARGET_P99_MS}, total_bench_s=round(time.perf_counter() - t_start, 1))
    if error or "summary" not in doc:
        doc["error"] = error or "the benchmark did not complete"
        doc["checks"] = [{"pass": False, "enforced": True, "check": doc["error"]}]
        print(f"\nFAIL {doc['error']}")
    else:
        doc["checks"] = checks(doc, args)
        print_report(doc)
        if len(doc["code_versions"]) > 1:
            print(f"WARNING: the code under beatsync/ or app.py changed during the benchmark "
                  f"({', '.join(doc['code_versions'])}): the server may have been started from another version")
    ok = all(c["pass"] for c in doc["checks"] if c["enforced"])
    if not ok:
        print(f"\n---- server log tail ({log_path}, kept) ----\n{tail(log_path)}", file=sys.stderr)
    elif args.keep_log:
        print(f"\nserver log kept: {log_path}")
    else:
        log_path.unlink(missing_ok=True)
        doc["server_log"]["path"] = None
    if args.json:
        print(json.dumps(doc, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

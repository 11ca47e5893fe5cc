"""Fault injection against real servers: kill -9 the server, the worker, the job process and its
ffmpeg at each stage of a job (decode, align, render), and count what became of each task.

The target (from issue 12): 0 tasks lost, and no partial file ever served.

Usage (from the repository root)::

    python benchmarks/fault_injection.py                          # both backends, 5 kills per cell
    python benchmarks/fault_injection.py --backends local --repeat 2
    python benchmarks/fault_injection.py --targets job,ffmpeg --stages render --json /tmp/faults.json

For each backend (``local``: the embedded diskcache store with the server's worker thread;
``celery``: Redis and a Celery worker, when a ``redis-server`` binary exists), a deployment is started
on a fresh data directory (tests/server_util.py: ``streamlit run app.py``, ``celery -A
beatsync.tasks.celery_app worker``, a ``redis-server`` of its own), and the tests' class video of
75 s with its song (tests/songgen.py) is uploaded once. Then, for every target and stage, ``--repeat``
times: a job is submitted; the script watches it (its job process and ffmpeg children in /proc, its
status) and at the stage kills the target with SIGKILL:

* ``server``: the web server process (``local``: it runs the job's worker thread, so the job dies
  with it; ``celery``: it runs no jobs). It is started again on the same data directory at once;
* ``worker`` (``celery`` only): the Celery worker process; a new one is started at once;
* ``job``: the job process (``python -m beatsync.job ... <task id>``);
* ``ffmpeg``: the job's ffmpeg child that does the stage's work (decode: the one decoding the sound,
  render: the one writing the video; none runs while aligning: ``n/a``).

The stage is seen as: ``decode``: an ffmpeg decoding the sound runs under the job process; ``align``:
the status's stage is ``align_*``; ``render``: the ffmpeg writing the video runs. Meanwhile a thread
downloads both results of the task over and over (``GET /api/download/<id>/<variant>``), and once
more after the end: every answer must be 404/409 (nothing yet), a connection error (the server is
down), or a complete, valid mp4 (probed and verified by decoding, `beatsync.media.verify`; its size
as announced): anything else counts as a partial file served.

Each task ends as ``success`` (both results download complete), ``clean failure`` (``failed`` with an
error code, nothing served) or ``lost`` (not finished within ``--timeout``, gone, or ``success``
without its results). The table: tried, success, clean failure, lost, attempts, partial files served,
downloads checked. A kill that came too late (the job ended before the stage was seen) is not
counted as tried: the trial is run again (up to 3 times).

This is a script, not a timed test. The exit code is 0 when nothing was lost and no partial file
was served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TESTS))

import server_util as su  # noqa: E402
import songgen as sg  # noqa: E402
from server_util import CeleryWorker, RedisServer, Server  # noqa: E402

from beatsync import media  # noqa: E402
from beatsync.errors import BeatSyncError  # noqa: E402

STAGES = ("decode", "align", "render")
TARGETS = {"local": ("server", "job", "ffmpeg"), "celery": ("server", "worker", "job", "ffmpeg")}
FAST_LOCAL = {"BEATSYNC_STALE_S": 6, "BEATSYNC_SWEEP_S": 1}
FAST_CELERY = {"BEATSYNC_HEARTBEAT_S": 0.5, "BEATSYNC_STALE_S": 3, "BEATSYNC_SWEEP_S": 1}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` file: ffmpeg is started from threads)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def ffmpeg_kind(pid: int) -> str | None:
    """``render`` (the video writer reads the sound from its stdin), ``decode`` (raw samples to a pipe)."""
    cmd = su.cmdline(pid)
    if "ffmpeg" not in cmd.split(" ", 1)[0]:
        return None
    if "pipe:0" in cmd:
        return "render"
    if "pipe:1" in cmd and "f32le" in cmd:
        return "decode"
    return None


def job_pids(tid: str) -> list[int]:
    return su.job_processes(tid)


# ----------------------------------------------------------------------------- a deployment


class Deployment:
    """The processes of one backend on one data directory (restartable)."""

    def __init__(self, backend: str, base: Path, redis_url: str | None):
        self.backend = backend
        self.base = base
        self.data_dir = base / "data"
        env = {"BEATSYNC_WORKERS": 1, **FAST_LOCAL} if backend == "local" else \
            su.celery_env(redis_url, **FAST_CELERY)
        self.env = env
        self.server = Server(self.data_dir, env, name=f"{backend}-web", log_dir=base)
        self.worker: CeleryWorker | None = None
        self.workers_started = 0

    def start(self) -> None:
        self.server.start()
        if self.backend == "celery":
            self.start_worker()

    def start_worker(self) -> None:
        self.workers_started += 1
        self.worker = CeleryWorker(self.data_dir, self.env, log_path=self.base / f"worker-{self.workers_started}.log",
                                   name=f"w{self.workers_started}").wait_ready()

    def url(self, path: str) -> str:
        return self.server.url(path)

    def close(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(Exception):
                self.worker.stop(timeout=15)
        with contextlib.suppress(Exception):
            self.server.close()
        for pid in su.processes_of(self.data_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def api(dep: Deployment, method: str, path: str, **kw) -> requests.Response | None:
    """A request to the current server (its port changes when it is restarted); None while it is down."""
    kw.setdefault("timeout", 30)
    try:
        return requests.request(method, dep.url(path), **kw)
    except requests.RequestException:
        return None


def status(dep: Deployment, tid: str) -> dict | None:
    r = api(dep, "GET", f"/api/status/{tid}")
    if r is None or r.status_code != 200:
        return {"status": "gone", "http": r.status_code} if r is not None and r.status_code == 404 else None
    return r.json()


# ----------------------------------------------------------------------------- downloads during and after


class Downloader(threading.Thread):
    """Downloads both results of a task over and over; every 200 must be a complete, valid mp4."""

    def __init__(self, dep: Deployment, tid: str, folder: Path):
        super().__init__(daemon=True, name=f"dl-{tid[:8]}")
        self.dep, self.tid, self.folder = dep, tid, folder
        self.stop = threading.Event()
        self.checked = 0  # complete files verified
        self.refused = 0  # 404/409 answers (nothing to download yet)
        self.partial: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.once()
            self.stop.wait(0.3)

    def once(self) -> None:
        for variant in ("modular", "v2"):
            self.check(variant)

    def check(self, variant: str) -> None:
        path = self.folder / f"{self.tid}_{variant}_{uuid.uuid4().hex[:6]}.mp4"
        try:
            with requests.get(self.dep.url(f"/api/download/{self.tid}/{variant}"), stream=True, timeout=60) as r:
                if r.status_code in (404, 409):
                    self.refused += 1
                    return
                if r.status_code != 200:
                    self.partial.append(f"{variant}: HTTP {r.status_code} {r.text[:200]!r}")
                    return
                announced = int(r.headers.get("content-length", -1))
                with open(path, "wb") as fh:
                    for chunk in r.iter_content(1 << 20):
                        fh.write(chunk)
        except requests.RequestException:
            path.unlink(missing_ok=True)
            return  # the server is down (killed): nothing was served
        try:
            size = path.stat().st_size
            if announced >= 0 and size != announced:
                self.partial.append(f"{variant}: {size} bytes of {announced} announced")
                return
            info = media.probe(path)
            if info.video is None or info.audio is None:
                self.partial.append(f"{variant}: no picture or no sound")
                return
            media.verify(path, info)
            self.checked += 1
        except BeatSyncError as e:
            self.partial.append(f"{variant}: {e.code}: {e.message}")
        finally:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- one trial


def wait_stage(dep: Deployment, tid: str, stage: str, timeout: float = 120.0) -> tuple[str, dict] | None:
    """Wait until the job is at ``stage``; returns (what to kill's pid hint, last status) or None when
    the task ended first. The returned dict has the job pid and the stage's ffmpeg pid, if any."""
    deadline = time.monotonic() + timeout
    job = None
    last_status = 0.0
    while time.monotonic() < deadline:
        if job is None or not su.alive([job]):
            pids = job_pids(tid)
            job = min(pids) if pids else None
        if job is not None and stage in ("decode", "render"):
            for kid in children(job):
                if ffmpeg_kind(kid) == stage:
                    return "seen", {"job": job, "ffmpeg": kid}
        now = time.monotonic()
        if now - last_status > (0.05 if stage == "align" else 0.5):
            last_status = now
            st = status(dep, tid)
            if st is not None:
                if st["status"] in ("success", "failed", "gone"):
                    return None
                if stage == "align" and str(st.get("stage", "")).startswith("align") and job is not None:
                    return "seen", {"job": job, "ffmpeg": None}
        time.sleep(0.003)
    return None


def kill(dep: Deployment, target: str, pids: dict) -> str:
    if target == "server":
        dep.server.kill9()
        dep.server.start()
        return f"server {dep.server.pid} (restarted)"
    if target == "worker":
        old = dep.worker.pid
        dep.worker.kill9()
        dep.start_worker()
        return f"worker {old} (a new one started)"
    if target == "job":
        os.kill(pids["job"], signal.SIGKILL)
        return f"job {pids['job']}"
    os.kill(pids["ffmpeg"], signal.SIGKILL)
    return f"ffmpeg {pids['ffmpeg']}"


def trial(dep: Deployment, files: tuple[str, str], target: str, stage: str, folder: Path, timeout: float) -> dict:
    r = api(dep, "POST", "/api/process", json={"dance_file_id": files[0], "bgm_file_id": files[1]})
    assert r is not None and r.status_code == 202, (r.status_code if r else None, r.text[:500] if r else "")
    tid = r.json()["task_id"]
    dl = Downloader(dep, tid, folder)
    dl.start()
    out = {"task_id": tid, "target": target, "stage": stage}
    try:
        seen = wait_stage(dep, tid, stage)
        if seen is None:
            out["missed"] = True  # the job ended before the stage was seen: not a trial
        else:
            t_kill = time.monotonic()
            out["killed"] = kill(dep, target, seen[1])
        deadline = time.monotonic() + timeout
        final = None
        while time.monotonic() < deadline:
            st = status(dep, tid)
            if st is not None and st["status"] in ("success", "failed", "gone"):
                final = st
                break
            time.sleep(0.25)
        if "killed" in out:
            out["seconds_after_kill"] = round(time.monotonic() - t_kill, 1)
    finally:
        dl.stop.set()
        dl.join(60)
    dl.once()  # and once more after the end
    out.update(downloads_checked=dl.checked, refused=dl.refused, partial=dl.partial)
    if final is None:
        out["outcome"] = "lost"
        out["why"] = f"not finished within {timeout:.0f} s"
    elif final["status"] == "gone":
        out["outcome"] = "lost"
        out["why"] = "the task is gone"
    elif final["status"] == "success":
        out["attempts"] = final["attempts"]
        outputs_ok = dl.checked >= 2 and not dl.partial
        out["outcome"] = "success" if outputs_ok else "lost"
        if not outputs_ok:
            out["why"] = "success without both complete results"
    else:
        out.update(attempts=final["attempts"], error_code=final.get("error_code"), error=final.get("error"))
        out["outcome"] = "clean failure" if final.get("error_code") else "lost"
    return out


# ----------------------------------------------------------------------------- a backend


def upload(dep: Deployment, path: Path, name: str, role: str) -> str:
    with open(path, "rb") as fh:
        r = requests.post(dep.url(f"/api/upload?role={role}"), files={"file": (name, fh)}, timeout=120)
    assert r.status_code == 201, (r.status_code, r.text[:500])
    return r.json()["file_id"]


def run_backend(backend: str, args, base: Path, m: sg.ClassMedia, redis_url: str | None) -> list[dict]:
    dep = Deployment(backend, base / backend, redis_url)
    results: list[dict] = []
    try:
        dep.start()
        files = (upload(dep, m.video_path, "class.mp4", "dance"), upload(dep, m.song_path, "song.wav", "bgm"))
        dl_dir = base / backend / "downloads"
        dl_dir.mkdir(parents=True, exist_ok=True)
        for target in [t for t in args.targets if t in TARGETS[backend]]:
            for stage in args.stages:
                if target == "ffmpeg" and stage == "align":
                    results.append({"backend": backend, "target": target, "stage": stage, "outcome": "n/a"})
                    continue
                for i in range(args.repeat):
                    for _try in range(3):
                        res = trial(dep, files, target, stage, dl_dir, args.timeout)
                        res["backend"] = backend
                        if not res.get("missed"):
                            break
                        log(f"{backend} {target}@{stage} #{i + 1}: the job ended before {stage} was seen; again")
                    results.append(res)
                    log(f"{backend} {target}@{stage} #{i + 1}: {res.get('killed', 'not killed')} -> {res['outcome']}"
                        f" (attempts {res.get('attempts')}, {res.get('error_code') or ''} downloads checked "
                        f"{res['downloads_checked']}, partial {len(res['partial'])})"
                        + (f" WHY: {res.get('why')}" if res.get("why") else ""))
    finally:
        dep.close()
    return results


def table(results: list[dict]) -> str:
    rows = {}
    for r in results:
        key = (r["backend"], r["target"], r["stage"])
        row = rows.setdefault(key, {"tried": 0, "success": 0, "clean failure": 0, "lost": 0, "attempts": [],
                                    "partial": 0, "checked": 0, "na": False})
        if r["outcome"] == "n/a":
            row["na"] = True
            continue
        if r.get("missed"):
            continue
        row["tried"] += 1
        row[r["outcome"]] += 1
        row["attempts"].append(r.get("attempts"))
        row["partial"] += len(r.get("partial", []))
        row["checked"] += r.get("downloads_checked", 0)
    lines = ["| backend | kill -9 | stage | tried | success | clean failure | lost | attempts | partial files "
             "served | complete downloads verified |", "|---|---|---|---|---|---|---|---|---|---|"]
    tot = {"tried": 0, "success": 0, "clean failure": 0, "lost": 0, "partial": 0, "checked": 0}
    for (b, t, s), row in rows.items():
        if row["na"]:
            lines.append(f"| {b} | {t} | {s} | n/a (no ffmpeg runs while aligning) | | | | | | |")
            continue
        att = ",".join(str(a) for a in row["attempts"])
        lines.append(f"| {b} | {t} | {s} | {row['tried']} | {row['success']} | {row['clean failure']} | "
                     f"{row['lost']} | {att} | {row['partial']} | {row['checked']} |")
        for k in tot:
            tot[k] += row[k]
    lines.append(f"| **all** | | | {tot['tried']} | {tot['success']} | {tot['clean failure']} | {tot['lost']} | | "
                 f"{tot['partial']} | {tot['checked']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="local,celery")
    ap.add_argument("--targets", default="server,worker,job,ffmpeg")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds for a task to end after the kill")
    ap.add_argument("--json", help="write every trial here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = ap.parse_args(argv)
    args.targets = args.targets.split(",")
    args.stages = args.stages.split(",")
    backends = args.backends.split(",")
    base = Path(tempfile.mkdtemp(prefix="beatsync-faults-"))
    log(f"working in {base}")
    results: list[dict] = []
    redis = None
    try:
        (base / "media").mkdir()
        m = sg.write_class_media(base / "media", **su.LONG, **su.SMALL_PICTURE)
        for backend in backends:
            url = None
            if backend == "celery":
                url = os.environ.get("BEATSYNC_TEST_REDIS_URL")
                if url is None:
                    if not shutil.which("redis-server"):
                        log("celery: no redis-server binary: skipped")
                        continue
                    redis = RedisServer(base / "redis").start()
                    url = redis.url
            t0 = time.monotonic()
            results += run_backend(backend, args, base, m, url)
            log(f"{backend}: done in {time.monotonic() - t0:.0f} s")
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        if redis is not None:
            redis.stop()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        print()
        print(table(results))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    lost = sum(r["outcome"] == "lost" for r in results)
    partial = sum(len(r.get("partial", [])) for r in results)
    print(f"\nlost: {lost}; partial files served: {partial}")
    return 1 if lost or partial else 0


if __name__ == "__main__":
    sys.exit(main())

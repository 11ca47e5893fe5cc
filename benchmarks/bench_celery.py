"""Throughput of the Celery backend with 1 vs 2 worker processes, measured side by side in one run.

The question (from the issue): on this 2-core machine, how many jobs per minute does the
scale-out backend (``BEATSYNC_BACKEND=celery``) get through with one worker process, and with two?

How: the script starts its own ``redis-server`` and one web server on the Celery backend
(``python -m streamlit run app.py``, the UI and the JSON API), with one shared data directory in
a temp folder. It makes one class video (``--video-s``, default 30 s) and its clean song once,
with the tests' generator (``tests/songgen.py``, fixed seed), and uploads them once. Then, for each
configuration:

* ``1x1``: one worker process, ``--concurrency 1``;
* ``2x1``: two worker processes, ``--concurrency 1`` each;
* ``1x2`` (with ``--with-1x2``): one worker process, ``--concurrency 2``;

it starts the workers fresh with the ordinary command (``celery -A beatsync.tasks.celery_app
worker``), waits until they log ``ready.`` and ``/api/health`` counts them, submits ``--jobs``
jobs (default 12) as a burst through ``POST /api/process`` (reusing the two file ids), waits until
every one has finished, and stops the workers. The configurations alternate, ``--rounds`` times
(default 2: 1x1, 2x1, 1x1, 2x1), so that a drift of the (noisy, shared) machine shows up as a
difference between rounds instead of between configurations. A warm-up job runs first (not
measured), so that no configuration pays for cold disk caches.

Measured per configuration and round (times are the task records' own time stamps, all on this
machine's clock):

* jobs/min: successful jobs / (first submission -> last ``finished``) x 60;
* job wall time (``started`` -> ``finished``: the job process with its ffmpeg): mean, p50, p90;
* queue wait (``created`` -> ``started``): mean, p90, max; the most jobs that ran at once;
* checks: every job ``success``, every task ``attempts == 1``;
* CPU seconds: the job processes and their ffmpeg (the workers' reaped children, ``cutime +
  cstime`` in ``/proc/<worker>/stat``; per job, and divided by the span: how many cores the jobs
  had), the worker processes themselves, the web server, and the whole machine (``/proc/stat``):
  its utilisation in % of all cores, hypervisor steal, and what other processes (not this
  benchmark's) used, a sign of noise. Jobs run at ``SCHED_IDLE``, so any other load on the
  machine takes its CPU first: compare configurations only within a run, and look at "other".

The speed-up is the median over rounds of (2x1 jobs/min / 1x1 jobs/min of the same round).

Usage (from the repository root; needs ``redis-server``, Debian package ``redis-server``)::

    python benchmarks/bench_celery.py --quick           # smoke run: 4 jobs, 12-s video, 1 round
    python benchmarks/bench_celery.py                   # 12 jobs, 30-s video, 2 rounds (~10 minutes)
    python benchmarks/bench_celery.py --with-1x2 --rounds 3 --json /tmp/celery.json

It prints a table and writes everything measured to a JSON file (``--json``, default
``/tmp/beatsync-bench-celery-<time>.json``). Every process it started is stopped and the temp
folder removed at the end, also on Ctrl-C or SIGTERM (``--keep`` keeps the folder with the logs).
The exit code is 0 when every job of every configuration succeeded on its first attempt.
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
import time
import traceback
from pathlib import Path

import numpy as np
import requests

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
import songgen as sg  # noqa: E402  (the tests' media generator)
from server_util import (  # noqa: E402  (the tests' server helpers)
    REPO,
    CeleryWorker,
    RedisServer,
    Server,
    celery_env,
    cmdline,
    descendants,
    processes_of,
    tail,
    upload_ok,
    wait_gone,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tasks import code_fingerprint, machine, submit_burst  # noqa: E402  (machine description, code hash)

CONFIGS = {"1x1": (1, 1), "2x1": (2, 1), "1x2": (1, 2)}  # name -> (worker processes, concurrency each)
MUSIC_AT_S = 2.5  # dance time at which the song starts in the generated class video
SEED = 73
HEALTH_EVERY_S = 1.0
FULL_STATUS_EVERY_S = 15.0  # fetch every unfinished status at least this often (besides health hints)
_TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Interrupted(KeyboardInterrupt):
    """SIGTERM / SIGHUP, handled like Ctrl-C: stop everything and clean up."""


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# =============================================================================================
# /proc
# =============================================================================================


def proc_cpu(pid: int) -> tuple[float, float] | None:
    """(own user + system CPU seconds, CPU seconds of its reaped children and their descendants)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / _TICK, (int(f[13]) + int(f[14])) / _TICK


def machine_cpu() -> dict:
    """Cumulative CPU seconds of all CPUs (``/proc/stat``): busy (processes and interrupts), steal, total."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq
    return {"busy": busy / _TICK, "steal": steal / _TICK, "total": (busy + idle + iowait + steal) / _TICK}


def live_tree_cpu(pids: list[int]) -> float:
    """Own + reaped-children CPU seconds of the live descendants of ``pids`` (jobs still running)."""
    total = 0.0
    for pid in pids:
        for d in descendants(pid):
            c = proc_cpu(d)
            if c:
                total += c[0] + c[1]
    return total


def top_others(a: dict[int, float], b: dict[int, float], dt: float, n: int = 3) -> dict[str, float]:
    """The other processes (not this benchmark's) that used the most CPU between two snapshots, with
    their reaped children: % of one core (indicative: a live child also counts on its own)."""
    use = sorted(((c - a.get(pid, 0.0), pid) for pid, c in b.items()), reverse=True)[:n]
    return {f"{pid} {cmdline(pid)[:80] or '(exited)'}": round(100 * c / dt, 1) for c, pid in use if c / dt >= 0.05}


class CpuMeter:
    """CPU seconds between `start` and `stop`: the workers (own, and their jobs), the server, redis,
    this client, the machine."""

    def __init__(self, workers: list[CeleryWorker], server: Server, redis_pid: int):
        self.workers, self.server_pid, self.redis_pid = workers, server.pid, redis_pid

    def snap(self) -> dict:
        s = {"t": time.time(), "machine": machine_cpu(), "client": sum(os.times()[:2]), "load": os.getloadavg()[0]}
        own = kids = 0.0
        for w in self.workers:
            c = proc_cpu(w.pid)
            if c:
                own, kids = own + c[0], kids + c[1]
        s["workers"], s["jobs"] = own, kids + live_tree_cpu([w.pid for w in self.workers])
        s["server"] = sum(proc_cpu(self.server_pid) or (0.0, 0.0))
        s["redis"] = (proc_cpu(self.redis_pid) or (0.0, 0.0))[0]
        ours = {os.getpid(), self.server_pid, self.redis_pid}
        for w in self.workers:
            ours |= {w.pid, *descendants(w.pid)}
        s["others"] = {}
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) not in ours and (c := proc_cpu(int(d))):
                s["others"][int(d)] = c[0] + c[1]  # with its reaped children (short-lived test processes)
        return s

    @staticmethod
    def diff(a: dict, b: dict) -> dict:
        dt = max(1e-9, b["t"] - a["t"])
        m = {k: b["machine"][k] - a["machine"][k] for k in a["machine"]}
        ours = {k: max(0.0, b[k] - a[k]) for k in ("jobs", "workers", "server", "redis", "client")}
        cores = max(1e-9, m["total"] / dt)
        return {"seconds": round(dt, 2), **{f"{k}_cpu_s": round(v, 2) for k, v in ours.items()},
                "machine_busy_pct": round(100 * m["busy"] / max(1e-9, m["total"]), 1),
                "steal_pct": round(100 * m["steal"] / max(1e-9, m["total"]), 1),
                "other_cpu_s": round(max(0.0, m["busy"] - sum(ours.values())), 2),
                "other_pct": round(100 * max(0.0, m["busy"] - sum(ours.values())) / dt / cores, 1),
                "cores": round(cores, 2), "loadavg_1min": [round(a["load"], 2), round(b["load"], 2)], "other_top": top_others(a["others"], b["others"], dt)}


# =============================================================================================
# media, workers, jobs
# =============================================================================================


def make_media(folder: Path, video_s: float, size: tuple[int, int], fps: float) -> dict:
    """A class video (``class.mp4``: the song heard in the room from MUSIC_AT_S nearly to the end) and
    its clean song (``song.wav``), like `server_util.long_pair` but of ``video_s`` seconds."""
    song_s = max(6.0, video_s - 3.0)
    music_len_s = max(4.0, min(song_s, video_s - MUSIC_AT_S) - 1.0)
    t0 = time.perf_counter()
    m = sg.write_class_media(folder, video_s=video_s, song_s=song_s, music_at_s=MUSIC_AT_S,
                             music_len_s=music_len_s, seed=SEED, size=size, fps=fps, gop=int(fps))
    return {"dance": str(m.video_path), "bgm": str(m.song_path), "video_s": video_s, "song_s": song_s,
            "music_at_s": MUSIC_AT_S, "music_len_s": music_len_s, "size": list(size), "fps": fps, "seed": SEED,
            "dance_bytes": Path(m.video_path).stat().st_size, "bgm_bytes": Path(m.song_path).stat().st_size,
            "generate_s": round(time.perf_counter() - t0, 2)}


def health(server: Server) -> dict:
    try:
        r = server.get("/api/health", timeout=10)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    except (requests.RequestException, ValueError):
        return {}


def start_workers(server: Server, data_dir: Path, env: dict, log_dir: Path, procs: int, concurrency: int,
                  tag: str, timeout: float = 90.0) -> list[CeleryWorker]:
    """``procs`` fresh worker processes; returns once each logged ``ready.`` and the server's health
    counts exactly them (``procs`` workers, ``procs x concurrency`` threads)."""
    workers: list[CeleryWorker] = []
    try:
        for i in range(procs):
            workers.append(CeleryWorker(data_dir, {**env, "BEATSYNC_WORKERS": concurrency},
                                        log_path=log_dir / f"worker-{tag}-{i}.log", name=f"{tag}-{i}",
                                        concurrency=concurrency))
        for w in workers:
            w.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        h = {}
        while time.monotonic() < deadline:
            h = health(server)
            if h.get("workers") == procs and h.get("worker_threads") == procs * concurrency:
                return workers
            time.sleep(0.2)
        raise RuntimeError(f"/api/health does not count {procs} worker(s) x {concurrency} within {timeout:.0f} s: {h}")
    except BaseException:
        stop_workers(workers)
        raise


def stop_workers(workers: list[CeleryWorker]) -> list[int | None]:
    """SIGTERM (Celery's warm shutdown: running jobs are killed and queued again), SIGKILL of the
    process group after 30 s; then SIGKILL to any job process (own process group) left behind."""
    kids = [pid for w in workers if w.alive() for pid in descendants(w.pid)]
    codes = [w.stop(timeout=30.0) for w in workers]
    left = wait_gone(kids, timeout=5.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if left:
        log(f"killed {len(left)} job process(es) left behind by stopped workers: {left}")
    return codes


def wait_all(server: Server, task_ids: list[str], timeout: float, workers: list[CeleryWorker]) -> tuple[dict, bool]:
    """Poll until every task has finished (``success``/``failed``); returns (last status of each, timed out).

    Light on the server: one ``/api/health`` a second; the unfinished tasks' statuses are fetched when
    health's ``queue + processing`` drops below their number (some finished), and every 15 s anyway.
    """
    finals: dict[str, dict] = {}
    session = requests.Session()
    deadline = time.monotonic() + timeout
    last_full = last_log = time.monotonic()
    try:
        while True:
            left = [t for t in task_ids if t not in finals]
            if not left:
                return finals, False
            now = time.monotonic()
            if now > deadline:
                return finals, True
            dead = [w for w in workers if not w.alive()]
            if dead:
                raise RuntimeError(f"worker(s) {[w.name for w in dead]} exited while jobs ran{dead[0].log_hint()}")
            h = health(server)
            busy = (h.get("queue") or 0) + (h.get("processing") or 0)
            if not h or busy < len(left) or now - last_full >= FULL_STATUS_EVERY_S:
                last_full = now
                for tid in left:
                    try:
                        r = session.get(server.url(f"/api/status/{tid}"), timeout=30)
                        obj = r.json() if r.status_code == 200 else None
                    except (requests.RequestException, ValueError):
                        obj = None
                    if obj and obj.get("status") in ("success", "failed"):
                        finals[tid] = obj
            if now - last_log >= 15:
                last_log = now
                log(f"    {len(finals)}/{len(task_ids)} finished; queue {h.get('queue')}, "
                    f"processing {h.get('processing')}")
            time.sleep(HEALTH_EVERY_S)
    finally:
        session.close()


# =============================================================================================
# statistics
# =============================================================================================


def _num(x) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def dist(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    p50, p90 = np.percentile(a, [50, 90])
    return {"n": int(a.size), "mean": round(float(a.mean()), 2), "p50": round(float(p50), 2),
            "p90": round(float(p90), 2), "min": round(float(a.min()), 2), "max": round(float(a.max()), 2)}


def max_parallel(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def summarize(submits: list[dict], finals: dict[str, dict], task_ids: list[str]) -> dict:
    t_first = min(r["t"] for r in submits)
    recs = [finals.get(t, {}) for t in task_ids]
    statuses = [r.get("status") for r in recs]
    ok = [r for r in recs if r.get("status") == "success"]
    job_s = [b - a for r in ok if (a := _num(r.get("started"))) is not None and (b := _num(r.get("finished")))]
    wait_s = [b - a for r in recs if (a := _num(r.get("created"))) is not None and (b := _num(r.get("started")))]
    ends = [x for r in recs if (x := _num(r.get("finished"))) is not None]
    intervals = [(a, b) for r in recs if (a := _num(r.get("started"))) is not None
                 and (b := _num(r.get("finished"))) is not None]
    done = len(ends) == len(task_ids) and bool(task_ids)
    makespan = (max(ends) - t_first) if done else None
    failed_codes: dict[str, int] = {}
    for r in recs:
        if r.get("status") == "failed":
            failed_codes[str(r.get("error_code"))] = failed_codes.get(str(r.get("error_code")), 0) + 1
    attempts = [int(_num(r.get("attempts")) or 0) for r in recs]
    return {
        "submitted": len(submits), "accepted": len(task_ids),
        "burst_s": round(max(r["t"] + r["latency_s"] for r in submits) - t_first, 3),
        "success": len(ok), "failed": statuses.count("failed"),
        "unfinished": len(task_ids) - len(ok) - statuses.count("failed"), "failed_codes": failed_codes,
        "all_success": len(ok) == len(submits) and len(submits) > 0,
        "attempts": attempts, "all_first_attempt": bool(attempts) and all(a == 1 for a in attempts),
        "makespan_s": round(makespan, 2) if makespan else None,
        "jobs_per_min": round(len(ok) / makespan * 60, 3) if makespan else None,
        "job_s": dist(job_s), "wait_s": dist(wait_s), "max_parallel": max_parallel(intervals),
        "first_start_s": round(min(a for a, _ in intervals) - t_first, 2) if intervals else None,
    }


# =============================================================================================
# one configuration
# =============================================================================================


def run_config(ctx: dict, name: str, rnd: int, n_jobs: int, args) -> dict:
    procs, conc = CONFIGS[name]
    server, data_dir = ctx["server"], ctx["data_dir"]
    tag = f"r{rnd}-{name}" if rnd >= 0 else "warmup"
    log(f"[{tag}] starting {procs} worker process(es) x concurrency {conc} ...")
    t0 = time.perf_counter()
    workers = start_workers(server, data_dir, ctx["env"], ctx["log_dir"], procs, conc, tag)
    out: dict = {"config": name, "round": rnd, "procs": procs, "concurrency": conc,
                 "workers_ready_s": round(time.perf_counter() - t0, 2), "worker_pids": [w.pid for w in workers]}
    try:
        meter = CpuMeter(workers, server, ctx["redis"].proc.pid)
        before = meter.snap()
        submits = submit_burst(server.url(""), ctx["dance_id"], ctx["bgm_id"], n_jobs, args.submit_threads)
        task_ids = [r["task_id"] for r in submits if r.get("task_id")]
        refused = [r.get("body") for r in submits if not r.get("task_id")]
        log(f"[{tag}] {len(task_ids)}/{n_jobs} submissions accepted"
            + (f"; refused: {refused[:3]}" if refused else "") + "; waiting for the jobs ...")
        finals, timed_out = wait_all(server, task_ids, args.timeout, workers)
        after = meter.snap()
        out.update(summarize(submits, finals, task_ids), timed_out=timed_out,
                   cpu=CpuMeter.diff(before, after),
                   submit_ms=dist([r["latency_s"] * 1000 for r in submits]),
                   tasks={t: {k: finals.get(t, {}).get(k) for k in ("status", "error_code", "error", "attempts",
                                                                     "created", "started", "finished", "seconds")}
                          for t in task_ids})
        if out["success"]:
            out["cpu"]["jobs_cpu_s_per_job"] = round(out["cpu"]["jobs_cpu_s"] / out["success"], 2)
        if out.get("makespan_s"):  # how many cores the jobs had, on average, over the span
            out["cpu"]["jobs_cores"] = round(out["cpu"]["jobs_cpu_s"] / out["makespan_s"], 2)
    finally:
        out["worker_exit_codes"] = stop_workers(workers)
    problems = []
    for w in workers:
        text = w.log_path.read_text("utf-8", "replace") if w.log_path.exists() else ""
        problems += [f"{w.name}: {ln[:300]}" for ln in text.splitlines()
                     if any(k in ln for k in ("Traceback", "ERROR", "CRITICAL", "WARNING/"))]
    out["worker_log_problems"] = problems[:20]
    jpm = out.get("jobs_per_min")
    log(f"[{tag}] {out.get('success')}/{n_jobs} success in {out.get('makespan_s')} s: "
        f"{jpm if jpm is not None else '-'} jobs/min; job p50 {out.get('job_s', {}).get('p50')} s")
    return out


# =============================================================================================
# report
# =============================================================================================


def _f(x, spec: str, width: int) -> str:
    return format(x, spec).rjust(width) if x is not None else "-".rjust(width)


def _round(r: dict) -> str:
    return "warm" if r["round"] < 0 else str(r["round"] + 1)


def print_table(doc: dict) -> None:
    m, a = doc["media"], doc["args"]
    print()
    print(f"BeatSync Celery backend throughput: {a['jobs']} jobs per burst, class video {m['video_s']:g} s "
          f"({m['size'][0]}x{m['size'][1]} @ {m['fps']:g} fps, {m['dance_bytes'] / 1e6:.1f} MB), song "
          f"{m['song_s']:g} s; {doc['machine']['cpus']} CPU(s) ({doc['machine']['cpu']}); git "
          f"{doc['machine']['git']}, code {doc['code'][0]}")
    print()
    hdr = (f"{'round':>5} {'config':>6} {'ok':>5} {'att>1':>5} {'span s':>7} {'jobs/min':>8} "
           f"{'job mean':>8} {'p50':>6} {'p90':>6} {'wait mean':>9} {'p90':>6} {'max':>6} {'par':>3} "
           f"{'jobs cpu':>8} {'cpu/job':>7} {'cores':>5} {'wrk cpu':>7} {'srv cpu':>7} {'busy%':>5} {'other%':>6} {'steal%':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in doc["runs"]:
        if "error" in r:
            print(f"{_round(r):>5} {r['config']:>6}  ERROR {r['error'][:150]}")
            continue
        j, w, c = r["job_s"], r["wait_s"], r["cpu"]
        n_retry = sum(1 for x in r["attempts"] if x != 1)
        print(f"{_round(r):>5} {r['config']:>6} {str(r['success']) + '/' + str(r['submitted']):>5} {n_retry:>5} "
              f"{_f(r['makespan_s'], '.1f', 7)} {_f(r['jobs_per_min'], '.2f', 8)} "
              f"{_f(j.get('mean'), '.2f', 8)} {_f(j.get('p50'), '.2f', 6)} {_f(j.get('p90'), '.2f', 6)} "
              f"{_f(w.get('mean'), '.1f', 9)} {_f(w.get('p90'), '.1f', 6)} {_f(w.get('max'), '.1f', 6)} "
              f"{r['max_parallel']:>3} {_f(c['jobs_cpu_s'], '.1f', 8)} {_f(c.get('jobs_cpu_s_per_job'), '.2f', 7)} {_f(c.get('jobs_cores'), '.2f', 5)} "
              f"{_f(c['workers_cpu_s'], '.1f', 7)} {_f(c['server_cpu_s'], '.1f', 7)} "
              f"{_f(c['machine_busy_pct'], '.0f', 5)} {_f(c['other_pct'], '.1f', 6)} {_f(c['steal_pct'], '.1f', 6)}")
    print()
    print("span: first submission -> last job finished; job: started -> finished (s); wait: created -> started (s);")
    print("par: most jobs running at once; cpu: CPU seconds of the job processes with their ffmpeg (jobs), of the")
    print("worker processes themselves (wrk) and of the web server (srv); cores: jobs cpu / span, the cores the jobs")
    print("had on average; busy%: the machine's CPU use in % of all its cores over the span; other%: processes not")
    print("of this benchmark, in % of all cores (noise: jobs run at SCHED_IDLE, so any other load comes first).")
    noisy = [(r, r["cpu"]) for r in doc["runs"] if "cpu" in r and r["cpu"]["other_pct"] >= 10]
    for r, c in noisy:
        print(f"NOTE: round {_round(r)} {r['config']}: other processes used {c['other_pct']:.0f}% of the machine; "
              f"largest (% of one core, with children they reaped in the span, so can exceed the span): {c['other_top']}")
    print()
    s = doc["summary"]
    for name, v in s["per_config"].items():
        print(f"{name}: jobs/min median {_f(v['jobs_per_min_median'], '.2f', 0)} over {v['rounds']} round(s) "
              f"{v['jobs_per_min']}; job p50 median {_f(v['job_p50_median'], '.2f', 0)} s")
    for key, label in (("speedup_2x1", "2 worker processes / 1"), ("speedup_1x2", "1 process x concurrency 2 / 1x1")):
        if s.get(key):
            sp = s[key]
            print(f"speed-up {label}: {_f(sp['median'], '.2f', 0)} (per round: {sp['per_round']})")
    for c in doc["checks"]:
        print(("PASS " if c["pass"] else "FAIL ") + c["check"])


def summarize_all(runs: list[dict]) -> dict:
    per: dict[str, dict] = {}
    for name in CONFIGS:
        rs = [r for r in runs if r["config"] == name and r["round"] >= 0 and "error" not in r]
        if not rs:
            continue
        jpm = [r["jobs_per_min"] for r in rs if r.get("jobs_per_min")]
        p50 = [r["job_s"]["p50"] for r in rs if r["job_s"].get("p50") is not None]
        per[name] = {"rounds": len(rs), "jobs_per_min": jpm,
                     "jobs_per_min_median": round(float(np.median(jpm)), 3) if jpm else None,
                     "job_p50_median": round(float(np.median(p50)), 2) if p50 else None}
    out: dict = {"per_config": per}
    for other in ("2x1", "1x2"):
        ratios = []
        for rnd in sorted({r["round"] for r in runs if r["round"] >= 0}):
            base = [r.get("jobs_per_min") for r in runs if r["round"] == rnd and r["config"] == "1x1"]
            alt = [r.get("jobs_per_min") for r in runs if r["round"] == rnd and r["config"] == other]
            if base and alt and base[0] and alt[0]:
                ratios.append(round(alt[0] / base[0], 3))
        if ratios:
            out[f"speedup_{other}"] = {"per_round": ratios, "median": round(float(np.median(ratios)), 3)}
    return out


def checks(runs: list[dict]) -> list[dict]:
    out = []
    for r in runs:
        tag = "warm-up" if r["round"] < 0 else f"round {r['round'] + 1} {r['config']}"
        if "error" in r:
            out.append({"pass": False, "check": f"{tag}: {r['error'][:300]}"})
            continue
        out.append({"pass": r["all_success"] and not r["timed_out"],
                    "check": f"{tag}: {r['success']}/{r['submitted']} jobs success"
                             + (f" (failed: {r['failed_codes']})" if r["failed_codes"] else "")
                             + (" (timed out)" if r["timed_out"] else "")})
        out.append({"pass": r["all_first_attempt"],
                    "check": f"{tag}: every task attempts == 1 (attempts: {sorted(set(r['attempts']))})"})
    return out


# =============================================================================================
# main
# =============================================================================================


def benchmark(args, tmp: Path, doc: dict) -> None:
    data_dir, log_dir, media_dir = tmp / "data", tmp / "logs", tmp / "media"
    for d in (data_dir, log_dir, media_dir):
        d.mkdir(parents=True)
    log(f"generating the media ({args.video_s:g} s class video, seed {SEED}) ...")
    doc["media"] = make_media(media_dir, args.video_s, tuple(args.size), args.fps)
    log(f"  done in {doc['media']['generate_s']:.1f} s")

    redis = RedisServer(tmp / "redis").start()
    ctx: dict = {"redis": redis, "data_dir": data_dir, "log_dir": log_dir}
    server = None
    try:
        env = celery_env(redis.url, BEATSYNC_QUEUE_MAX=max(32, args.jobs + 1))
        ctx["env"] = env
        log(f"redis {redis.url}; starting the web server (prefix {env['BEATSYNC_REDIS_PREFIX']}) ...")
        server = Server(data_dir, env, name="server", log_dir=log_dir).start()
        ctx["server"] = server
        doc["health_at_start"] = health(server)
        dance = upload_ok(server, doc["media"]["dance"])
        bgm = upload_ok(server, doc["media"]["bgm"])
        ctx["dance_id"], ctx["bgm_id"] = dance["file_id"], bgm["file_id"]
        doc["uploads"] = {"dance": dance, "bgm": bgm}

        plan = [(rnd, name) for rnd in range(args.rounds) for name in args.configs]
        if args.warmup:
            plan.insert(0, (-1, "1x1"))
        for rnd, name in plan:
            n = 1 if rnd < 0 else args.jobs
            try:
                doc["runs"].append(run_config(ctx, name, rnd, n, args))
            except KeyboardInterrupt:
                raise
            except Exception as e:  # record it, go on with the next configuration
                traceback.print_exc()
                doc["runs"].append({"config": name, "round": rnd, "error": f"{type(e).__name__}: {e}"})
            if not server.alive():
                raise RuntimeError(f"the web server exited{server.log_hint()}")
    finally:
        if server is not None:
            doc["server_log_tail"] = tail(server.log_path, 3000) if server.log_path else ""
            server.close()
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 4 jobs, a 12-s video, 1 round (explicit options still win)")
    p.add_argument("--jobs", type=int, help="jobs per burst (default 12; --quick 4)")
    p.add_argument("--video-s", type=float, help="length of the class video, seconds (default 30; --quick 12)")
    p.add_argument("--rounds", type=int, help="times every configuration runs, alternating (default 2; --quick 1)")
    p.add_argument("--with-1x2", action="store_true", help="also run 1 worker process with --concurrency 2")
    p.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"),
                   help="picture size of the class video (default 160 120)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the class video (default 30)")
    p.add_argument("--submit-threads", type=int, default=4, help="threads sending the burst (default 4)")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="give up on a configuration when its jobs have not finished this long after the burst "
                        "(default 1200 s)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the unmeasured warm-up job before the first configuration")
    p.add_argument("--json", metavar="FILE",
                   help="where to write the result (default /tmp/beatsync-bench-celery-<time>.json)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (data dir, logs, media)")
    args = p.parse_args(argv)
    quick = args.quick
    args.jobs = args.jobs or (4 if quick else 12)
    args.video_s = args.video_s or (12.0 if quick else 30.0)
    args.rounds = args.rounds or (1 if quick else 2)
    args.configs = ["1x1", "2x1"] + (["1x2"] if args.with_1x2 else [])
    if min(args.jobs, args.rounds, args.submit_threads) < 1 or args.video_s < 8:
        p.error("counts must be >= 1 and --video-s >= 8")
    if not shutil.which("redis-server"):
        p.error("redis-server is not installed (Debian: apt-get install redis-server)")
    json_path = Path(args.json or f"/tmp/beatsync-bench-celery-{time.strftime('%Y%m%d-%H%M%S')}.json")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="beatsync-bench-celery-"))
    code_before = code_fingerprint(REPO)
    t_start = time.perf_counter()
    doc: dict = {"args": {k: v for k, v in vars(args).items()}, "runs": []}
    error = None
    interrupted = False
    try:
        benchmark(args, tmp, doc)
    except KeyboardInterrupt as e:
        interrupted = True
        error = f"interrupted ({str(e) or 'Ctrl-C'})"
        log(f"\n{error}: stopping everything ...")
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        # a second Ctrl-C must not cut the clean-up short (the finally blocks above already stopped
        # the processes; this removes anything of the data dir still alive, then the folder)
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for pid in processes_of(tmp / "data"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, old)

    code_after = code_fingerprint(REPO)
    doc.update(machine=machine(REPO), code=[code_before] + ([code_after] if code_after != code_before else []),
               total_s=round(time.perf_counter() - t_start, 1))
    doc["summary"] = summarize_all(doc["runs"])
    doc["checks"] = checks(doc["runs"])
    if error:
        doc["error"] = error
        doc["checks"].append({"pass": False, "check": error})
    if "media" in doc and doc["runs"]:
        print_table(doc)
    elif error:
        print(f"FAIL {error}")
    if len(doc["code"]) > 1:
        print("WARNING: beatsync/ or app.py changed while the benchmark ran: the runs may mix code versions")
    json_path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresult: {json_path} (total {doc['total_s']:.0f} s)")
    if interrupted:
        return 130
    return 0 if all(c["pass"] for c in doc["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Speed and memory benchmark of ``python -m beatsync process`` against the ffmpeg floor.

Target (from the issue): on a 3-minute 1080p H.264 class video, ``process`` (both outputs) takes
at most 2x the ffmpeg work that cannot be avoided, measured side by side in the same run: decoding
both sound tracks, plus one stream-copy remux with AAC encoding per output. Peak RSS <= 500 MB, and
it must not grow with the video's resolution.

Usage (from the repository root)::

    python benchmarks/bench_process.py                      # 1080p and 720p, 3 repeats
    python benchmarks/bench_process.py --repeat 1           # a first, quicker check
    python benchmarks/bench_process.py --resolutions 1080p,720p,480p --json bench.json

The inputs are synthesized once into ``--cache`` (default /tmp/beatsync-bench) by the tests'
synthesizer (``tests/songgen.py``) and reused: a 3.5-minute song (mp3, 44.1 kHz stereo) and 3-minute
class videos (H.264 ultrafast, 30 fps, AAC 48 kHz mono: the song from 7.5 s on, with reverb, a
band-limited microphone, noise and footsteps).

Memory is measured by a thread that reads /proc every 50 ms: the peak (VmHWM) of the Python
process alone, the largest ffmpeg child, and the peak of the sum of the RSS of the whole process
tree; plus the kernel's exact ru_maxrss of the tree (the largest single process) from wait4.
This is a script, not a test: the machine is noisy, only ratios measured in one run mean much.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

REPO = Path(__file__).resolve().parents[1]  # whose beatsync/ is benchmarked (--repo)

#: Bump when the generated inputs change (the cache keys on it).
INPUTS_VERSION = "v2"  # v2: made by tests/songgen.py
SONG_SR = 44100
SONG_CHANNELS = 2
SONG_S = 210.0
CLASS_S = 180.0
CLASS_SR = 48000
SONG_AT_S = 7.5  # dance time at which the song starts in the class videos
FPS = 30
RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (854, 480)}

TARGET_RATIO = 2.0
TARGET_PEAK_MB = 500.0
TARGET_GROWTH = 0.10  # relative growth of the peak from 720p to 1080p ...
TARGET_GROWTH_MB = 30.0  # ... or at most this many MB
POLL_S = 0.05
MB = 1e6  # memory is reported in MB = 10^6 bytes


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ffmpeg() -> str:
    """The ffmpeg binary of the imageio-ffmpeg wheel: the one beatsync uses (``media.ffmpeg_exe``)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def ff_cmd(*args) -> list[str]:
    return [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", *map(str, args)]


# =============================================================================================
# inputs
# =============================================================================================

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _songgen():
    """The tests' song synthesizer and degradations (``tests/songgen.py``), imported only where the
    inputs are generated (a child process: this one, whose children are measured, stays small)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import songgen

    return songgen


def synth_song(duration_s: float = SONG_S, *, sr: int = SONG_SR, bpm: float = 112.0, seed: int = 2024) -> np.ndarray:
    """Non-periodic music, float32 ``(2, n)``: `songgen.song` (every bar draws its chord, melody, bass and
    drums afresh)."""
    return _songgen().song(duration_s, sr=sr, tempo_bpm=bpm, seed=seed, channels=SONG_CHANNELS, level=0.89)


def class_sound(song: np.ndarray, *, bpm: float = 112.0, seed: int = 7) -> np.ndarray:
    """The song as a phone hears it in a dance room: float32 mono at CLASS_SR, CLASS_S long.

    The song starts at SONG_AT_S (it is cut by the end of the video); reverb (RT60 0.7 s), a
    band-limited microphone, pink noise at 12 dB below the music, footsteps, a slow gain drift
    (`songgen`'s placement and degradations).
    """
    import soxr
    from scipy import signal as sps

    sg = _songgen()
    sr = CLASS_SR
    y = soxr.resample(song.mean(axis=0), SONG_SR, sr, quality="HQ").astype(np.float32)
    out, _ = sg.place(y, SONG_AT_S, 0.0, CLASS_S - SONG_AT_S, 1.0, CLASS_S, sr)
    out = sg.room(out, sr, 0.7, seed=seed, wet=0.8)
    out = sps.sosfilt(sps.butter(2, [150, 7500], btype="bandpass", fs=sr, output="sos"), out)
    out = sg.noise(out, 12.0, seed=seed + 1).astype(np.float64)
    music_rms = float(np.sqrt(np.mean(out[int(round(SONG_AT_S * sr)):] ** 2)))
    out += sg.footsteps(len(out), sr, tempo_bpm=bpm, seed=seed + 2, level=2.0 * music_rms)
    phase = np.random.default_rng(seed + 3).random() * 6
    out *= 1.0 + 0.2 * np.sin(2 * np.pi * np.arange(len(out)) / sr / 23.0 + phase)
    out *= 0.7 / float(np.max(np.abs(out)))
    return out.astype(np.float32)


def _encode_pcm(samples: np.ndarray, sr: int, out: Path, codec_args: list[str]) -> None:
    """Encode ``(channels, n)`` or ``(n,)`` float32 through stdin to ``out`` (atomic rename)."""
    x = np.atleast_2d(samples)
    tmp = out.with_name(out.stem + ".partial" + out.suffix)
    cmd = ff_cmd("-y", "-f", "f32le", "-ar", sr, "-ac", x.shape[0], "-i", "pipe:0", *codec_args, tmp)
    subprocess.run(cmd, input=np.ascontiguousarray(x.T, dtype="<f4").tobytes(), check=True)
    os.replace(tmp, out)


def _paths(cache: Path, resolutions: list[str]) -> tuple[Path, Path, dict[str, Path]]:
    return (cache / f"song-{INPUTS_VERSION}.mp3", cache / f"class-sound-{INPUTS_VERSION}.m4a",
            {res: cache / f"class-{res}-{INPUTS_VERSION}.mp4" for res in resolutions})


def generate_inputs(cache: Path, resolutions: list[str]) -> None:
    """Make whichever of the song and the class videos are missing from ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    song_path, sound_path, video_paths = _paths(cache, resolutions)
    if not song_path.exists() or not sound_path.exists():
        t0 = time.perf_counter()
        log(f"generating the song ({SONG_S:.0f} s) ...")
        song = synth_song()
        _encode_pcm(song, SONG_SR, song_path, ["-c:a", "libmp3lame", "-b:a", "192k"])
        log(f"generating the class sound ({CLASS_S:.0f} s, song at {SONG_AT_S} s, reverb + noise) ...")
        _encode_pcm(class_sound(song), CLASS_SR, sound_path, ["-c:a", "aac", "-b:a", "128k", "-ar", CLASS_SR])
        log(f"  done in {time.perf_counter() - t0:.1f} s")
    for res, path in video_paths.items():
        w, h = RESOLUTIONS[res]
        if not path.exists():
            log(f"encoding the {res} class video ({CLASS_S:.0f} s, x264 ultrafast; cached afterwards) ...")
            t0 = time.perf_counter()
            tmp = path.with_name(path.stem + ".partial.mp4")
            subprocess.run(ff_cmd(
                "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FPS}:duration={CLASS_S}",
                "-i", sound_path, "-map", "0:v", "-map", "1:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", 60, "-pix_fmt", "yuv420p",
                "-c:a", "copy", "-t", CLASS_S, tmp), check=True)
            os.replace(tmp, path)
            log(f"  done in {time.perf_counter() - t0:.1f} s")


def ensure_inputs(cache: Path, resolutions: list[str]) -> dict:
    """The inputs' paths and facts; missing ones are generated first, in a child process (so that
    this process, whose children are measured, stays small)."""
    song_path, sound_path, video_paths = _paths(cache, resolutions)
    if not all(p.exists() for p in (song_path, sound_path, *video_paths.values())):
        subprocess.run([sys.executable, __file__, "--generate", "--cache", str(cache),
                        "--resolutions", ",".join(resolutions)], check=True)
    videos = {}
    for res, path in video_paths.items():
        w, h = RESOLUTIONS[res]
        size = path.stat().st_size
        videos[res] = {"path": str(path), "width": w, "height": h, "size_mb": round(size / MB, 1),
                       "video_mbps": round(size * 8 / CLASS_S / 1e6, 2)}
    return {"song": str(song_path), "song_sr": SONG_SR, "song_channels": SONG_CHANNELS, "song_s": SONG_S,
            "class_s": CLASS_S, "expected_offset_s": SONG_AT_S, "videos": videos}


# =============================================================================================
# memory of a process tree, from /proc
# =============================================================================================

_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _children(pid: int) -> list[int]:
    if _HAS_CHILDREN_FILE:
        kids = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                    kids += [int(x) for x in fh.read().split()]
        return kids
    kids = []  # no CONFIG_PROC_CHILDREN: scan every process's parent
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{d}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d))
    return kids


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return None


def _status(pid: int) -> tuple[str, int, int] | None:
    """(name, VmRSS kB, VmHWM kB) of a live process, None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return None
    name = re.search(r"^Name:\s*(.*)$", text, re.M)
    rss = re.search(r"^VmRSS:\s*(\d+)", text, re.M)
    hwm = re.search(r"^VmHWM:\s*(\d+)", text, re.M)
    if not rss or not hwm:
        return None
    return (name.group(1) if name else "?"), int(rss.group(1)), int(hwm.group(1))


class TreePoller(threading.Thread):
    """Samples the RSS of a process and all its descendants every ``interval`` seconds.

    A process is only counted once it has exec'd: between fork/vfork and exec, /proc shows the
    parent's memory (for a vfork, the parent's own address space). So the root counts once its
    command line is ``argv``, a descendant once its command line differs from its parent's.
    """

    def __init__(self, root: int, argv: list[str], interval: float = POLL_S):
        super().__init__(daemon=True)
        self.root, self.argv, self.interval = root, [str(a) for a in argv], interval
        self.done = threading.Event()
        self.t0 = time.perf_counter()
        self.root_hwm_kb = 0  # VmHWM of the root: kernel-tracked peak, exact up to the last sample
        self.tree_sum_peak_kb = 0  # max over samples of the sum of VmRSS of the tree
        self.children: dict[int, tuple[str, int]] = {}  # pid -> (name, VmHWM kB)
        self.series: list[tuple[float, int, int]] = []  # (s since start, root VmRSS kB, tree VmRSS kB)
        self.samples = 0

    def sample(self) -> None:
        t = time.perf_counter() - self.t0
        total, root_rss = 0, 0
        todo: list[tuple[int, list[str] | None]] = [(self.root, None)]
        seen = set()
        while todo:
            pid, parent_cmd = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            cmd = _cmdline(pid)
            if cmd is None:
                continue
            exec_done = cmd == self.argv if pid == self.root else cmd != parent_cmd
            st = _status(pid) if exec_done else None
            if st is not None:
                name, rss, hwm = st
                total += rss
                if pid == self.root:
                    root_rss = rss
                    self.root_hwm_kb = max(self.root_hwm_kb, hwm)
                else:
                    self.children[pid] = (name, max(hwm, self.children.get(pid, (name, 0))[1]))
            todo += [(k, cmd) for k in _children(pid)]
        if total:
            self.tree_sum_peak_kb = max(self.tree_sum_peak_kb, total)
            self.series.append((round(t, 3), root_rss, total))
        self.samples += 1

    def run(self) -> None:
        while True:
            self.sample()
            if self.done.wait(self.interval):
                return

    def stop(self) -> None:
        self.done.set()
        self.join()


def _mb(kb: float) -> float:
    return round(kb * 1024 / MB, 1)


# =============================================================================================
# the runs
# =============================================================================================

_PROGRESS = re.compile(r"^\[\s*([\d.]+)%\]\s*(.*)$")


def run_process(dance: str, song: str, out_dir: Path, *, quiet: bool = True) -> dict:
    """``python -m beatsync process DANCE SONG --out DIR [--quiet]``: wall time, memory, its JSON.

    Without ``quiet``, the progress lines on stderr are timestamped as they arrive (``stages``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "beatsync", "process", dance, song, "--out", str(out_dir)]
    cmd += ["--quiet"] if quiet else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    lines: list[tuple[float, str]] = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err if quiet else subprocess.PIPE)
        poller = TreePoller(proc.pid, cmd)
        poller.t0 = t0
        poller.start()
        reader = None
        if not quiet:
            def read() -> None:
                for raw in proc.stderr:
                    lines.append((time.perf_counter() - t0, raw.decode("utf-8", "replace").rstrip()))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)  # rusage of the process and its waited-for children
        except BaseException:  # Ctrl-C: let beatsync stop its ffmpeg children itself, then make sure
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            poller.stop()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        poller.stop()
        if reader is not None:
            reader.join()
            proc.stderr.close()
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace") if quiet else "\n".join(s for _, s in lines)
    last = stdout.strip().splitlines()[-1] if stdout.strip() else "{}"
    try:
        result = json.loads(last)
    except json.JSONDecodeError:
        result = {"error": f"unparsable stdout: {last[:200]}"}
    ffmpeg_children = [hwm for name, hwm in poller.children.values() if "ffmpeg" in name]
    row = {
        "wall_s": round(wall, 3),
        "returncode": proc.returncode,
        "peak_python_mb": _mb(poller.root_hwm_kb),
        "peak_tree_mb": _mb(poller.tree_sum_peak_kb),
        "peak_ffmpeg_child_mb": _mb(max(ffmpeg_children, default=0)),
        "ffmpeg_children_seen": len(ffmpeg_children),
        "children_seen": sorted({name for name, _ in poller.children.values()}),
        "cpu_user_s": round(ru.ru_utime, 2),
        "cpu_sys_s": round(ru.ru_stime, 2),
        "poll_samples": poller.samples,
        "seconds_reported": result.get("seconds"),
    }
    if proc.returncode != 0 or "error" in result:
        row["error"] = result.get("error", f"exit code {proc.returncode}")
        row["stderr_tail"] = stderr[-2000:]
    for eng, v in (result.get("variants") or {}).items():
        al, rd = v.get("alignment") or {}, v.get("render") or {}
        row[eng] = {"align_seconds": al.get("seconds"), "offset_s": al.get("offset_s"),
                    "tempo_ratio": al.get("tempo_ratio"), "confidence": al.get("confidence"),
                    "video": rd.get("video"), "start_s": rd.get("start_s"), "end_s": rd.get("end_s"),
                    "error": v.get("error")}
        if v.get("same_as"):
            row[eng]["same_as"] = v["same_as"]
    if result.get("agreement") is not None:
        row["agreement"] = result["agreement"]
    if result.get("timings"):
        row["timings"] = result["timings"]
    if not quiet:
        row["stages"] = _stages(lines, wall, poller.series)
        row["rss_series"] = {"columns": ["s", "python_kb", "tree_kb"], "rows": poller.series}
    return row


def _stages(lines: list[tuple[float, str]], wall: float, series: list[tuple[float, int, int]]) -> list[dict]:
    """Progress lines -> [{"stage": message, "start_s", "seconds", "peak_python_mb", "peak_tree_mb"}]:
    each message from its first line to the first line of the next message; "(start-up)" before
    the first, "(exit)" after "Done". The peaks are the largest sampled VmRSS within the stage."""
    firsts: list[tuple[float, str]] = []
    seen: set[str] = set()
    for t, line in lines:
        m = _PROGRESS.match(line)
        if m and m.group(2) not in seen:
            seen.add(m.group(2))
            firsts.append((t, m.group(2)))
    out = []
    prev_t, prev_name = 0.0, "(interpreter start-up, imports)"
    for t, name in [*firsts, (wall, "")]:
        inside = [(r, tr) for ts, r, tr in series if prev_t <= ts < t]
        out.append({"stage": prev_name, "start_s": round(prev_t, 3), "seconds": round(t - prev_t, 3),
                    "peak_python_mb": _mb(max(r for r, _ in inside)) if inside else None,
                    "peak_tree_mb": _mb(max(tr for _, tr in inside)) if inside else None})
        prev_t, prev_name = t, (name if name != "Done" else "(exit after Done)")
    return out


def _soxr() -> str:
    """beatsync's decoder resamples with soxr when this ffmpeg has it: the floor does the same."""
    r = subprocess.run(ff_cmd("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "0.01",
                              "-af", "aresample=22050:resampler=soxr", "-f", "null", "-"), capture_output=True)
    return ":resampler=soxr" if r.returncode == 0 else ""


def _run_to_pipe(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd`` reading its stdout to the end (discarded); (wall s, peak RSS kB)."""
    buf = bytearray(1 << 20)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    poller = TreePoller(proc.pid, cmd)
    poller.start()
    view = memoryview(buf)
    while proc.stdout.readinto(view):
        pass
    err = proc.stderr.read()
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    poller.stop()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"floor command failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return wall, poller.root_hwm_kb


def run_floor(dance: str, song: str, inputs: dict, out_dir: Path, resampler: str) -> dict:
    """The unavoidable ffmpeg work: decode both sounds into pipes, then one remux per output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = {
        "decode_class_audio": ff_cmd("-i", dance, "-map", "0:a:0", "-vn", "-sn", "-dn",
                                     "-af", f"aresample=22050{resampler}", "-ac", 1,
                                     "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"),
        "decode_song": ff_cmd("-i", song, "-map", "0:a:0", "-vn", "-sn", "-dn",
                              "-af", f"aresample={inputs['song_sr']}{resampler}", "-ac", inputs["song_channels"],
                              "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"),
    }
    for k in (1, 2):
        steps[f"remux_{k}"] = ff_cmd("-i", dance, "-i", song, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                                     "-c:a", "aac", "-b:a", "192k", "-shortest", "-movflags", "+faststart",
                                     "-f", "mp4", "-y", out_dir / f"floor_{k}.mp4")
    row: dict = {"steps_s": {}, "steps_peak_mb": {}}
    t0 = time.perf_counter()
    for name, cmd in steps.items():
        wall, maxrss = _run_to_pipe(cmd)
        row["steps_s"][name] = round(wall, 3)
        row["steps_peak_mb"][name] = _mb(maxrss)
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["peak_mb"] = max(row["steps_peak_mb"].values())
    return row


# =============================================================================================
# report
# =============================================================================================


def _median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def summarize(runs: dict, resolutions: list[str]) -> dict:
    summary = {}
    for res in resolutions:
        pr = [r for r in runs[res]["process"] if "error" not in r]
        fl = runs[res]["floor"]
        s = {
            "process_s": _median([r["wall_s"] for r in pr]),
            "floor_s": _median([r["wall_s"] for r in fl]),
            "peak_python_mb": max((r["peak_python_mb"] for r in pr), default=None),
            "peak_tree_mb": max((r["peak_tree_mb"] for r in pr), default=None),
            "peak_ffmpeg_child_mb": max((r["peak_ffmpeg_child_mb"] for r in pr), default=None),
            "floor_peak_mb": max((r["peak_mb"] for r in fl), default=None),
            "process_cpu_s": _median([r["cpu_user_s"] + r["cpu_sys_s"] for r in pr]),
            "process_reported_s": _median([r["seconds_reported"] for r in pr]),
            "failed_runs": len(runs[res]["process"]) - len(pr),
        }
        for eng in ("modular", "v2"):
            s[f"align_{eng}_s"] = _median([(r.get(eng) or {}).get("align_seconds") for r in pr])
        s["floor_steps_s"] = {k: _median([r["steps_s"][k] for r in fl]) for k in (fl[0]["steps_s"] if fl else {})}
        s["ratio"] = round(s["process_s"] / s["floor_s"], 2) if s["process_s"] and s["floor_s"] else None
        summary[res] = s
    return summary


def checks(summary: dict) -> list[tuple[bool, str]]:
    out = []
    for res, s in summary.items():
        if s["failed_runs"]:
            out.append((False, f"{res}: {s['failed_runs']} process run(s) failed"))
        if s["ratio"] is not None:
            out.append((s["ratio"] <= TARGET_RATIO,
                        f"{res}: process / floor = {s['ratio']:.2f} (target <= {TARGET_RATIO:g})"))
        if s["peak_python_mb"] is not None:
            out.append((s["peak_python_mb"] <= TARGET_PEAK_MB,
                        f"{res}: peak RSS of the Python process = {s['peak_python_mb']:.0f} MB "
                        f"(target <= {TARGET_PEAK_MB:g} MB)"))
            out.append((s["peak_tree_mb"] <= TARGET_PEAK_MB,
                        f"{res}: peak RSS of the whole tree (Python + ffmpeg, summed) = {s['peak_tree_mb']:.0f} MB "
                        f"(stricter reading, target <= {TARGET_PEAK_MB:g} MB)"))
    lo, hi = summary.get("720p"), summary.get("1080p")
    if lo and hi and lo["peak_python_mb"] and hi["peak_python_mb"]:
        for key, what in (("peak_python_mb", "Python process"), ("peak_tree_mb", "whole tree")):
            d = hi[key] - lo[key]
            rel = d / lo[key]
            ok = rel <= TARGET_GROWTH or d <= TARGET_GROWTH_MB
            out.append((ok, f"peak RSS growth 720p -> 1080p, {what}: {d:+.0f} MB ({rel:+.1%}) "
                            f"(target <= {TARGET_GROWTH:.0%} or <= {TARGET_GROWTH_MB:g} MB)"))
    return out


def print_report(inputs: dict, runs: dict, summary: dict, stage_runs: dict) -> list[tuple[bool, str]]:
    print()
    print(f"inputs: song {Path(inputs['song']).name} ({inputs['song_s']:.0f} s, {inputs['song_sr']} Hz, "
          f"{inputs['song_channels']} ch); class videos {inputs['class_s']:.0f} s, "
          f"song at {inputs['expected_offset_s']:.1f} s")
    for res, v in inputs["videos"].items():
        print(f"  {res}: {Path(v['path']).name}  {v['width']}x{v['height']}  {v['size_mb']:.0f} MB "
              f"({v['video_mbps']:.1f} Mbit/s)")
    print()
    hdr = (f"{'res':>6} {'process s':>10} {'floor s':>8} {'ratio':>6} {'python MB':>10} {'tree MB':>8} "
           f"{'ffmpeg MB':>10} {'cpu s':>6} {'align mod s':>11} {'align v2 s':>10}")
    print(hdr)
    print("-" * len(hdr))

    def f(x, fmt):
        return format(x, fmt) if x is not None else format("-", ">" + re.match(r"\d*", fmt).group())

    for res, s in summary.items():
        print(f"{res:>6} {f(s['process_s'], '10.2f')} {f(s['floor_s'], '8.2f')} {f(s['ratio'], '6.2f')} "
              f"{f(s['peak_python_mb'], '10.0f')} {f(s['peak_tree_mb'], '8.0f')} "
              f"{f(s['peak_ffmpeg_child_mb'], '10.0f')} {f(s['process_cpu_s'], '6.1f')} "
              f"{f(s['align_modular_s'], '11.2f')} {f(s['align_v2_s'], '10.2f')}")
    print()
    print("times are medians over the repeats; MB = 10^6 bytes, peaks are the max over the repeats")
    for res, s in summary.items():
        steps = "  ".join(f"{k} {v:.2f}" for k, v in s["floor_steps_s"].items())
        print(f"  {res} floor steps (s): {steps}; ffmpeg peak in the floor {f(s['floor_peak_mb'], '.0f')} MB")
        each = "  ".join(f"{r['wall_s']:.2f}" for r in runs[res]["process"])
        each_f = "  ".join(f"{r['wall_s']:.2f}" for r in runs[res]["floor"])
        print(f"  {res} every run (s): process {each} | floor {each_f}; process reports "
              f"{f(s['process_reported_s'], '.2f')} s inside Python")
        last = next((r for r in reversed(runs[res]["process"]) if "error" not in r), None)
        if last and last.get("timings"):
            print(f"  {res} timeline of the last run (s from the job's start, the pipeline's own timings): "
                  + "  ".join(f"{k} {a:.2f}-{b:.2f}" for k, (a, b) in last["timings"].items()))
        if last:
            for eng in ("modular", "v2"):
                v = last.get(eng)
                if v and v.get("offset_s") is not None:
                    print(f"  {res} {eng}: offset {v['offset_s']:.4f} s (expected ~{inputs['expected_offset_s']}), "
                          f"tempo {v['tempo_ratio']:.5f}, confidence {v['confidence']:.3f}, video {v['video']}, "
                          f"rendered {v['start_s']:.2f}-{v['end_s']:.2f} s"
                          + (f", the same file as {v['same_as']}" if v.get("same_as") else ""))
    for res, row in stage_runs.items():
        print()
        print(f"{res}: stages of one extra run without --quiet ({row['wall_s']:.2f} s wall; from the progress "
              f"lines; peak = largest sampled RSS in the stage)")
        print(f"  {'seconds':>8} {'python MB':>10} {'tree MB':>8}  stage")
        for st in row.get("stages", []):
            print(f"  {st['seconds']:8.2f} {f(st['peak_python_mb'], '10.0f')} {f(st['peak_tree_mb'], '8.0f')}  "
                  f"{st['stage']}")
        if row.get("timings"):  # the variants run at once: the progress message names only one of them
            print("  timeline (s from the job's start): "
                  + "  ".join(f"{k} {a:.2f}-{b:.2f}" for k, (a, b) in row["timings"].items()))
    print()
    results = checks(summary)
    for ok, msg in results:
        print(("PASS " if ok else "FAIL ") + msg)
    return results


def code_fingerprint() -> str:
    """Short hash of the contents of beatsync/**/*.py: shows whether the code changed between runs."""
    import hashlib

    h = hashlib.sha1()
    for path in sorted((REPO / "beatsync").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        m = re.search(r"^model name\s*:\s*(.*)$", fh.read(), re.M)
        cpu = m.group(1) if m else ""
    ver = subprocess.run([ffmpeg(), "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "beatsync"],
                           capture_output=True, text=True)
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "ffmpeg": ver[0] if ver else "", "ffmpeg_path": ffmpeg(),
            "git": (rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or "(not a git checkout)",
            "code": code_fingerprint()}


def main(argv: list[str] | None = None) -> int:
    global REPO
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolutions", default="1080p,720p",
                   help=f"comma-separated, among {','.join(RESOLUTIONS)} (default 1080p,720p)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported (default 3)")
    p.add_argument("--cache", default="/tmp/beatsync-bench", help="folder for the generated inputs (reused)")
    p.add_argument("--keep", action="store_true", help="keep the written videos (under CACHE/runs/)")
    p.add_argument("--no-stages", action="store_true",
                   help="skip the extra run per resolution that times the stages from the progress lines")
    p.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    p.add_argument("--repo", default=str(REPO), metavar="DIR",
                   help="benchmark the beatsync/ package of DIR (e.g. a snapshot or a worktree); default: this "
                        "repository")
    p.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)  # internal: make the inputs, exit
    args = p.parse_args(argv)
    resolutions = [r.strip() for r in args.resolutions.split(",") if r.strip()]
    bad = [r for r in resolutions if r not in RESOLUTIONS]
    if bad or not resolutions or args.repeat < 1:
        p.error(f"unknown resolution(s) {bad}; choose among {', '.join(RESOLUTIONS)}" if bad else "bad arguments")
    REPO = Path(args.repo).resolve()
    if not (REPO / "beatsync" / "__main__.py").exists():
        p.error(f"{REPO} has no beatsync/ package")
    cache = Path(args.cache)
    if args.generate:
        generate_inputs(cache, resolutions)
        return 0
    inputs = ensure_inputs(cache, resolutions)
    resampler = _soxr()
    runs_dir = cache / "runs"
    runs_dir.mkdir(exist_ok=True)
    runs = {res: {"process": [], "floor": []} for res in resolutions}
    t_start = time.perf_counter()
    for rep in range(args.repeat):
        for res in resolutions:
            dance = inputs["videos"][res]["path"]
            base = runs_dir / f"{res}-{rep + 1}"
            order = ("process", "floor") if rep % 2 == 0 else ("floor", "process")  # alternate, against drift
            for what in order:
                if what == "process":
                    code = code_fingerprint()
                    row = run_process(dance, inputs["song"], base / "process")
                    row["code"] = code
                    msg = row.get("error") or (f"python {row['peak_python_mb']:.0f} MB, "
                                               f"tree {row['peak_tree_mb']:.0f} MB")
                else:
                    row = run_floor(dance, inputs["song"], inputs, base / "floor", resampler)
                    msg = ", ".join(f"{k} {v:.2f}" for k, v in row["steps_s"].items())
                runs[res][what].append(row)
                log(f"[{rep + 1}/{args.repeat}] {res} {what:7s} {row['wall_s']:7.2f} s  ({msg})")
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    stage_runs = {}
    if not args.no_stages:
        for res in resolutions:
            base = runs_dir / f"{res}-stages"
            stage_runs[res] = run_process(inputs["videos"][res]["path"], inputs["song"], base / "process", quiet=False)
            log(f"[stages] {res} {stage_runs[res]['wall_s']:.2f} s")
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    summary = summarize(runs, resolutions)
    results = print_report(inputs, runs, summary, stage_runs)
    versions = sorted({r["code"] for rs in runs.values() for r in rs["process"]})
    if len(versions) > 1:
        print(f"WARNING: the code under beatsync/ changed during the benchmark ({', '.join(versions)}): "
              "the runs mix versions")
    if args.keep:
        print(f"\noutputs kept under {runs_dir}")
    if args.json:
        doc = {"machine": machine(), "code_versions": versions, "args": vars(args), "inputs": inputs, "resampler": resampler,
               "targets": {"ratio": TARGET_RATIO, "peak_mb": TARGET_PEAK_MB, "growth": TARGET_GROWTH,
                           "growth_mb": TARGET_GROWTH_MB},
               "summary": summary, "runs": runs, "stage_runs": stage_runs,
               "checks": [{"pass": ok, "check": msg} for ok, msg in results],
               "total_bench_s": round(time.perf_counter() - t_start, 1)}
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"\nwrote {args.json}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

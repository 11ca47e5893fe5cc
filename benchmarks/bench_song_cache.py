"""The song's analysis computed against reused (the song cache, `beatsync.songcache`), for a 3-minute song.

Two measurements, each run in a fresh process (as a job is), the computed and reused runs interleaved:

* ``step``: the song-analysis step alone, `SongCache.get` of a song that is not in the cache
  (probe, decode, mono mix, the analysis of the song alone: features, fine envelopes, beats, and
  writing the entry) against one that is (hashing the file and mapping the entry);
* ``job``: a whole `pipeline.process` job (both engines, both videos) on a class video with that song,
  with an empty cache against a cache holding the song: the job's ``song_analysis`` timing, its
  ``inputs`` and ``analysis`` steps, the whole job, and the process's peak RSS.

This is a script, not a timed test: the machine is noisy, so medians of interleaved runs.

    python benchmarks/bench_song_cache.py                 # 3-minute mp3 song, 3 repeats
    python benchmarks/bench_song_cache.py --song-s 180 --repeat 5 --json /tmp/song_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

#: the child's own peak RSS (VmHWM starts afresh at exec; ru_maxrss of a child carries the parent's)
PEAK = """
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return {"peak_rss_mb": round(int(line.split()[1]) / 1024, 1)}
    return {}
"""

STEP = PEAK + """
import json, sys, time
from beatsync import pipeline
from beatsync.songcache import SongCache
song, root = sys.argv[1], sys.argv[2]
t = time.perf_counter()
got, how = SongCache(root).get(song, lambda: pipeline.read_song(song))
print(json.dumps({"seconds": time.perf_counter() - t, "reused": how.reused, **peak()}))
"""

JOB = PEAK + """
import json, sys
from beatsync import pipeline
video, song, out, root = sys.argv[1:5]
r = pipeline.process(video, song, out, song_cache=root)
t = r.timings
print(json.dumps({"reused": r.song_analysis.reused, "song_analysis": t["song_analysis"][1] - t["song_analysis"][0],
                  "inputs": t["inputs"][1] - t["inputs"][0], "analysis": t["analysis"][1] - t["analysis"][0],
                  "seconds": r.seconds, "offset_s": r.variants["modular"].alignment.offset_s, **peak()}))
"""


def run(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python; its JSON line (with its peak RSS, MB)."""
    proc = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_inputs(folder: Path, song_s: float, class_s: float) -> tuple[Path, Path]:
    import mediagen
    import songgen as sg

    song_path = folder / f"song{int(song_s)}.mp3"
    video_path = folder / f"class{int(class_s)}.mp4"
    if not (song_path.exists() and video_path.exists()):
        y = sg.song(song_s, sr=44100, tempo_bpm=112.0, seed=21, channels=2)
        mediagen.write_song(song_path, y, sr=44100)
        sound = sg.class_sound(y, song_sr=44100, video_sr=48000, music_at_s=5.0, music_len_s=min(song_s, class_s - 10),
                               total_s=class_s + 1.0, seed=21)
        mediagen.write_class_video(video_path, duration_s=class_s, size=(320, 240), fps=30.0, gop=60, audio=sound,
                                   sr=48000)
    return video_path, song_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--song-s", type=float, default=180.0, help="the song's length (s)")
    ap.add_argument("--class-s", type=float, default=190.0, help="the class video's length (s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/beatsync-bench-songcache", help="where the inputs are made and kept")
    ap.add_argument("--no-job", action="store_true", help="only the step")
    ap.add_argument("--json", help="save every run there")
    args = ap.parse_args()
    folder = Path(args.cache)
    folder.mkdir(parents=True, exist_ok=True)
    video, song = make_inputs(folder, args.song_s, args.class_s)
    rows: dict[str, list[dict]] = {"step_computed": [], "step_reused": [], "job_computed": [], "job_reused": []}
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="songcache-", dir=folder) as tmp:
            root = str(Path(tmp) / "songs")
            rows["step_computed"].append(run(STEP, str(song), root))
            rows["step_reused"].append(run(STEP, str(song), root))
            assert not rows["step_computed"][-1]["reused"] and rows["step_reused"][-1]["reused"]
            size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
            if not args.no_job:
                shutil.rmtree(root)
                rows["job_computed"].append(run(JOB, str(video), str(song), str(Path(tmp) / "out1"), root))
                rows["job_reused"].append(run(JOB, str(video), str(song), str(Path(tmp) / "out2"), root))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]}" for k, v in rows.items() if v), flush=True)

    def med(kind: str, field: str) -> float:
        return round(statistics.median(r[field] for r in rows[kind]), 3)

    print(f"\nsong {song.name}: {args.song_s:.0f} s, {song.stat().st_size / 1e6:.1f} MB; entry on disk "
          f"{size / 1e6:.1f} MB; medians of {args.repeat}")
    print(f"song-analysis step: computed {med('step_computed', 'seconds'):.3f} s, "
          f"reused {med('step_reused', 'seconds'):.3f} s")
    if not args.no_job:
        for field in ("song_analysis", "inputs", "analysis", "seconds", "peak_rss_mb"):
            print(f"job {field:>13}: computed {med('job_computed', field):8.3f}, reused {med('job_reused', field):8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "entry_bytes": size, "runs": rows,
                                               "when": time.time()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

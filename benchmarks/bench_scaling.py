"""How a job's cost grows with the class video's length: 1, 5 and 30 minutes at 720p.

For each length, `../shared/corpus/speed.py` makes the class video (a Frozen-Bubble track with echo and
noise, played from the top again and again with 20 s of talk between, as a class repeating its routine
does) and times `python -m beatsync process` against the ffmpeg floor in one run (ratio, peak RSS of
the job's process). Then one more `process` run of the same files gives the job's own timeline: each
engine's alignment time, and how many run-throughs each found against how many the video holds.
Printed: one table (markdown, for the README's Measuring section) and, with ``--json``, everything.

    python benchmarks/bench_scaling.py [--minutes 1,5,30] [--height 720] [--json FILE]

Targets (issue 10): on 30 minutes, every run-through found, ratio <= 2, peak RSS <= 700 MB, and the
alignment time per minute of video not growing with the length. Not a test: the 30-minute input takes a
few minutes to make, and each run takes a few minutes. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SPEED = os.path.join(REPO, "..", "shared", "corpus", "speed.py")
WORK = os.environ.get("SPEED_WORK", "/tmp/bench-speed")
#: speed.py's class: the song from 12 s in (at most 300 s of it) from 4.321 s, then again every 20 s after it ends
SONG_FROM_S, MAX_PLAY_S, PAUSE_S, FIRST_AT_S = 12.0, 300.0, 20.0, 4.321


def song_seconds(python: str, song: str) -> float:
    out = subprocess.check_output([python, "-c", "import sys; from beatsync import media; "
                                   "print(media.probe(sys.argv[1]).audio.duration_s)", song], cwd=REPO, text=True)
    return float(out.strip())


def expected_runs(minutes: float, song_s: float) -> int:
    """Run-throughs in speed.py's class video (those with at least 5 s of music before the video ends)."""
    period = min(song_s - SONG_FROM_S, MAX_PLAY_S) + PAUSE_S
    total, t, runs = minutes * 60, FIRST_AT_S, 0
    while t < total - 5.0:
        runs += 1
        t += period
    return runs


def one_length(python: str, minutes: float, height: int) -> dict:
    speed = subprocess.run([python, SPEED, python, "--runs", "1", "--minutes", str(minutes), "--height", str(height)],
                           cwd=REPO, capture_output=True, text=True, check=True)
    floor = json.loads(speed.stdout.strip().splitlines()[-1])
    dur = int(minutes * 60)
    dance = os.path.join(WORK, "class1080.mp4" if (dur, height) == (180, 1080) else f"class{height}_{dur}s.mp4")
    song = os.path.join(WORK, "song.ogg")
    with tempfile.TemporaryDirectory(dir=WORK) as out:
        run = subprocess.run([python, "-m", "beatsync", "process", dance, song, "--out", out, "--quiet"],
                             cwd=REPO, capture_output=True, text=True)
    status = json.loads(run.stdout.strip().splitlines()[-1])
    timings = status.get("timings", {})
    row = {"minutes": minutes, "height": height, "ratio": floor.get("ratio"), "process_s": floor.get("process_s"),
           "floor_s": floor.get("floor_s"), "peak_rss_mb": floor.get("peak_rss_mb_children"),
           "expected_runs": expected_runs(minutes, song_seconds(python, song)), "timeline": timings}
    for eng, v in (status.get("variants") or {}).items():
        span = timings.get(f"align_{eng}")
        row[f"align_{eng}_s"] = round(span[1] - span[0], 1) if span else None
        segs = (v.get("alignment") or {}).get("segments", [])
        # run-throughs: segments separated by a pause (an edit or a change of speed joins two with none)
        gaps = [b["dance_start_s"] - a["dance_end_s"] for a, b in zip(segs, segs[1:], strict=False)]
        row[f"runs_{eng}"] = 1 + sum(g > 0.05 for g in gaps) if segs else 0
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="1,5,30")
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for m in (float(x) for x in args.minutes.split(",")):
        rows.append(one_length(args.python, m, args.height))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "timeline"}), flush=True)
    engines = sorted({k[len("align_"):-2] for r in rows for k in r if k.startswith("align_") and k.endswith("_s")})
    print()
    print("| video | process / floor | peak RSS | " + " | ".join(f"{e} align (s per min)" for e in engines)
          + " | run-throughs found |")
    print("|---|---|---|" + "---|" * len(engines) + "---|")
    for r in rows:
        aligns = " | ".join(f"{r.get(f'align_{e}_s')} ({r.get(f'align_{e}_s', 0) / r['minutes']:.1f})"
                            if r.get(f"align_{e}_s") is not None else "-" for e in engines)
        found = ", ".join(f"{e} {r.get(f'runs_{e}')}/{r['expected_runs']}" for e in engines)
        print(f"| {r['minutes']:g} min {r['height']}p | {r['ratio']} | {r['peak_rss_mb']} MB | {aligns} | {found} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

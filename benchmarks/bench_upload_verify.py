"""How long an upload's answer takes for a large file: probing and verifying by decoding
(`beatsync.media.verify`), which seeks and never reads the file through.

Target (from issue 12): the upload's answer comes in under 1 s for a 500 MB file.

Usage (from the repository root)::

    python benchmarks/bench_upload_verify.py                 # ~500 MB files, 5 repeats, service + API
    python benchmarks/bench_upload_verify.py --mb 200 --repeat 3 --no-api
    python benchmarks/bench_upload_verify.py --json          # last stdout line: one JSON object

It makes the files cheaply (tests/mediagen.py `write_big_video`: a 10-s chunk of 320x240 x264 at 8
Mbit/s with AAC sound, looped by stream copy until the size is reached; a WAV of that size), in a
temporary folder (removed at the end), then for each:

* ``verify``: `media.probe` + `media.verify` in this process, ``--repeat`` times (median, max);
  the bytes read (``rchar`` of /proc/self/io) show that it seeks;
* ``commit``: the service's upload path after the body has arrived (`Upload.commit`: probe, verify,
  registration), the file written through `Upload.write` first, as the API and the upload page do;
* ``api`` (unless ``--no-api``): a real server (``streamlit run app.py``) is sent the file as a
  streamed multipart body; the time from the last byte sent to the answer.

Also the same files cut to 10 % and 90 % (index at the end: nothing plays; index at the front: the
playable length from the index; Matroska and WAV: bisection with seeks / the header's size), whose
answer is ``truncated``. The page cache holds the files (they were just written, as an upload's is).
This is a script, not a timed test: it reports, and exits 1 only when an answer is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import mediagen  # noqa: E402

from beatsync import media  # noqa: E402
from beatsync.errors import BeatSyncError  # noqa: E402


def rchar() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_files(folder: Path, mb: float) -> dict[str, Path]:
    t0 = time.perf_counter()
    out = {"mp4 (index at the end)": mediagen.write_big_video(folder / "class.mp4", target_mb=mb)}
    out["mp4 (faststart)"] = folder / "class_fs.mp4"
    mediagen.ffmpeg("-i", str(out["mp4 (index at the end)"]), "-map", "0", "-c", "copy", "-movflags", "+faststart",
                    str(out["mp4 (faststart)"]))
    out["mkv"] = folder / "class.mkv"
    mediagen.ffmpeg("-i", str(out["mp4 (index at the end)"]), "-map", "0", "-c", "copy", str(out["mkv"]))
    seconds = mb * 2**20 / (44100 * 2 * 2)
    out["wav"] = folder / "song.wav"
    mediagen.ffmpeg("-f", "lavfi", "-i", f"sine=f=440:r=44100:d={seconds:.0f}", "-ac", "2", "-c:a", "pcm_s16le",
                    str(out["wav"]))
    for key in list(out):
        for frac in (0.1, 0.9):
            src = out[key]
            dst = folder / f"cut{int(frac * 100)}_{src.name}"
            with open(src, "rb") as fi, open(dst, "wb") as fo:
                left = int(src.stat().st_size * frac)
                while left > 0:
                    chunk = fi.read(min(left, 16 << 20))
                    fo.write(chunk)
                    left -= len(chunk)
            out[f"{key} cut to {int(frac * 100)} %"] = dst
    print(f"made {len(out)} files in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def time_verify(path: Path, repeat: int) -> dict:
    times, reads, result = [], [], None
    for _ in range(repeat):
        r0, t0 = rchar(), time.perf_counter()
        try:
            info = media.probe(path)
            v = media.verify(path, info)
            result = {"ok": True, "duration_s": round(v.duration_s, 2)}
        except BeatSyncError as e:
            result = {"ok": False, "error_code": e.code, **{k: v for k, v in e.params.items() if k != "name"}}
        times.append(time.perf_counter() - t0)
        reads.append(rchar() - r0)
    return {"median_ms": round(1000 * statistics.median(times), 1), "max_ms": round(1000 * max(times), 1),
            "read_mb": round(statistics.median(reads) / 2**20, 2), **result}


def time_commit(svc, path: Path, role: str) -> dict:
    up = svc.new_upload(path.name, role=role)
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            up.write(chunk)
    t0 = time.perf_counter()
    try:
        info = up.commit()
        out = {"ok": True, "duration_s": info.duration_s}
    except BeatSyncError as e:
        out = {"ok": False, "error_code": e.code}
    out["commit_ms"] = round(1000 * (time.perf_counter() - t0), 1)
    return out


def time_api(server, path: Path, role: str) -> dict:
    import requests

    boundary = uuid.uuid4().hex
    sent = {}

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        with open(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                yield chunk
        sent["t"] = time.perf_counter()
        yield f"\r\n--{boundary}--\r\n".encode()

    t0 = time.perf_counter()
    r = requests.post(server.url(f"/api/upload?role={role}"), data=body(), timeout=600,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t1 = time.perf_counter()
    obj = r.json()
    return {"status": r.status_code, "error_code": obj.get("error_code"), "after_last_byte_ms":
            round(1000 * (t1 - sent["t"]), 1), "total_s": round(t1 - t0, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=500.0, help="size of each file (MB)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-api", action="store_true", help="skip the real server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    rows, bad = [], 0
    server = None
    try:
        files = make_files(folder, args.mb)
        os.environ.setdefault("BEATSYNC_MIN_FREE_MB", "1")
        os.environ["BEATSYNC_MAX_UPLOAD_MB"] = str(int(args.mb * 2 + 100))
        from beatsync.service import BeatSync
        from beatsync.tasks import Settings

        svc = BeatSync(Settings.from_env(data_dir=folder / "data"))
        if not args.no_api:
            from server_util import Server

            server = Server(folder / "srv", {"BEATSYNC_WORKERS": 0, "BEATSYNC_MIN_FREE_MB": 1,
                                             "BEATSYNC_MAX_UPLOAD_MB": int(args.mb * 2 + 100)},
                            name="bench", log_dir=folder).start()
        for label, path in files.items():
            role = "bgm" if path.suffix == ".wav" else "dance"
            row = {"file": label, "mb": round(path.stat().st_size / 2**20, 1), **time_verify(path, args.repeat)}
            row.update(time_commit(svc, path, role))
            shutil.rmtree(svc.store.uploads_root, ignore_errors=True)
            svc.store.uploads_root.mkdir(parents=True, exist_ok=True)
            if server is not None:
                row["api"] = time_api(server, path, role)
                shutil.rmtree(server.data_dir / "uploads", ignore_errors=True)
                (server.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
            expect_ok = "cut" not in label
            wrong = row["ok"] != expect_ok or (not expect_ok and row.get("error_code") != "truncated")
            if server is not None:
                wrong = wrong or row["api"]["status"] != (201 if expect_ok else 422)
            bad += wrong
            rows.append(row)
            api = row.get("api", {})
            print(f"{label:28s} {row['mb']:7.1f} MB  verify {row['median_ms']:7.1f} ms (max {row['max_ms']:7.1f}, "
                  f"read {row['read_mb']:5.2f} MB)  commit {row['commit_ms']:7.1f} ms  "
                  f"api after last byte {api.get('after_last_byte_ms', float('nan')):7.1f} ms  -> "
                  f"{'ok ' + str(row.get('duration_s')) + ' s' if row['ok'] else row.get('error_code')}"
                  f"{' playable ' + str(row.get('playable_s')) + ' s' if 'playable_s' in row else ''}"
                  f"{'  WRONG' if wrong else ''}", flush=True)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)
    summary = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "mb": args.mb,
               "repeat": args.repeat, "rows": rows, "wrong": bad,
               "max_answer_ms": max(max(r["max_ms"], r["commit_ms"], r.get("api", {}).get("after_last_byte_ms", 0))
                                    for r in rows)}
    print(f"slowest answer: {summary['max_answer_ms']:.0f} ms (target < 1000 ms); wrong answers: {bad}")
    if args.json:
        print(json.dumps(summary))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

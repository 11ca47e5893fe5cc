"""The command line (``python -m beatsync``), run as a subprocess like the benchmarks run it.

Contract (beatsync/cli.py; ``process`` prints `beatsync.contract.ProcessResult`): the last stdout
line is one JSON object; on failure the exit code is non-zero, one clear line goes to stderr and
the last stdout line is ``{"error": ...}``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mediagen
import numpy as np
import pytest
import songgen as sg

REPO = Path(__file__).resolve().parent.parent
MUSIC_AT_S = 4.0
PROGRESS_LINE = re.compile(r"^\[\s*\d+(\.\d+)?%\] \S")


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "beatsync", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert lines, f"nothing on stdout; stderr: {proc.stderr[-2000:]}"
    obj = json.loads(lines[-1])
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> sg.ClassMedia:
    """A 20-s class video (song heard from 4 s for 12 s) and its 16-s song."""
    return sg.write_class_media(tmp_path_factory.mktemp("cli"), video_s=20.0, song_s=16.0, music_at_s=MUSIC_AT_S,
                                music_len_s=12.0, seed=51)


# ----------------------------------------------------------------------------- success


@pytest.mark.parametrize(("engine", "tol"), [("modular", 0.002), ("v2", 0.005)])
def test_align_prints_one_json_object(files, engine, tol):
    proc = cli("align", files.video_path, files.song_path, "--engine", engine)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc)
    assert set(out) >= {"engine", "offset_s", "tempo_ratio", "confidence", "segments", "alternatives", "seconds"}
    assert out["engine"] == engine
    assert out["offset_s"] == pytest.approx(MUSIC_AT_S, abs=tol)
    assert out["tempo_ratio"] == pytest.approx(1.0, abs=0.003)
    assert 0.0 <= out["confidence"] <= 1.0
    assert out["seconds"] > 0
    (seg,) = out["segments"]
    assert set(seg) >= {"dance_start_s", "dance_end_s", "bgm_start_s", "rate"}
    assert seg["dance_start_s"] == pytest.approx(MUSIC_AT_S, abs=0.5)
    assert isinstance(out["alternatives"], list)


@pytest.mark.parametrize("args", [["--help"], ["align", "--help"], ["process", "--help"]], ids=" ".join)
def test_help(args):
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "offset_s" in proc.stdout
    assert "examples" in proc.stdout
    assert "python -m beatsync align" in proc.stdout


def test_process_prints_the_final_status(files, tmp_path):
    out = tmp_path / "results"
    proc = cli("process", files.video_path, files.song_path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    status = last_json(proc)
    assert status["status"] == "success" and status["progress"] == 100
    assert isinstance(status["message"], str) and status["message"]
    for eng in ("modular", "v2"):
        path = Path(status[f"{eng}_output"])
        assert path == out / f"class_{eng}.mp4" or path.resolve() == (out / f"class_{eng}.mp4").resolve()
        assert path.stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == ["class_modular.mp4", "class_v2.mp4"]
    # stderr: progress lines only
    for line in proc.stderr.splitlines():
        assert PROGRESS_LINE.match(line), line


# ----------------------------------------------------------------------------- failures


def _write_bad(kind: str, folder: Path, good: sg.ClassMedia) -> tuple[Path, Path]:
    """(dance, bgm) paths for one kind of bad input."""
    song = good.song_path
    if kind == "empty_mp4":
        p = folder / "class.mp4"
        p.write_bytes(b"")
        return p, song
    if kind == "text_named_mp4":
        p = folder / "class.mp4"
        p.write_text("this is not a video\n" * 50, encoding="utf-8")
        return p, song
    if kind == "truncated_mp4":
        data = good.video_path.read_bytes()
        p = folder / "class.mp4"
        p.write_bytes(data[: int(0.4 * len(data))])
        return p, song
    if kind == "video_without_audio":
        return mediagen.write_class_video(folder / "class.mp4", duration_s=6.0), song
    if kind == "silent_video":
        silent = np.zeros((2, 6 * 48000), np.float32)
        return mediagen.write_class_video(folder / "class.mp4", duration_s=6.0, audio=silent, sr=48000), song
    if kind == "unrelated_song":
        other = sg.song(16.0, sr=44100, tempo_bpm=112.0, seed=52, channels=2)
        return good.video_path, mediagen.write_song(folder / "other.wav", other, sr=44100)
    if kind == "txt_extension":
        p = folder / "class.txt"
        shutil.copyfile(good.video_path, p)
        return p, song
    if kind == "txt_song":
        p = folder / "song.txt"
        shutil.copyfile(good.song_path, p)
        return good.video_path, p
    if kind == "missing_file":
        return folder / "no_such_class.mp4", song
    raise AssertionError(kind)


BAD = ["empty_mp4", "text_named_mp4", "truncated_mp4", "video_without_audio", "silent_video", "unrelated_song",
       "txt_extension", "txt_song", "missing_file"]


def assert_clean_failure(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert lines[-1] == errors[0], proc.stderr
    assert len(errors[0]) > len("error: ") + 5
    for ln in lines[:-1]:
        assert PROGRESS_LINE.match(ln), f"unexpected stderr line: {ln!r}"
    out = last_json(proc)
    assert isinstance(out.get("error"), str) and out["error"]
    assert out.get("error_code") != "internal", out  # a bad input is not a crash
    return out


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_fails_cleanly_and_writes_nothing(files, tmp_path, kind):
    dance, bgm = _write_bad(kind, tmp_path, files)
    out = tmp_path / "results"
    proc = cli("process", dance, bgm, "--out", out)
    res = assert_clean_failure(proc)
    # codes the pipeline itself defines; the media layer's own codes are its tests' business
    code = {"unrelated_song": "song_not_found", "silent_video": "silent", "txt_extension": "unsupported_type",
            "txt_song": "unsupported_type"}.get(kind)
    if code:
        assert res.get("error_code") == code, res
    if kind != "unrelated_song":  # the message names the file at fault (base name only)
        bad = bgm if kind == "txt_song" else dance
        assert bad.name in res["error"] and str(bad.parent) not in res["error"], res
    leftovers = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert leftovers == [], leftovers  # no .mp4, no partial file, no temp folder


def test_align_failure_follows_the_same_contract(files, tmp_path):
    proc = cli("align", tmp_path / "missing.mp4", files.song_path)
    out = assert_clean_failure(proc)
    assert "missing.mp4" in out["error"]

"""`pipeline.process` end to end on small real files (written with ffmpeg through mediagen).

The class video is 30 s of testsrc2 at 30 fps (keyframe every 15 frames); its sound is a room
recording of the song (bgm 0-15 s played at dance 5-20 s) with talking all along. Each output
is decoded and cross-correlated with the clean song: the song must be heard at the right time
relative to the output's first picture frame.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import songgen as sg
from mediagen import ffmpeg_children, parabolic_offset
from songgen import ClassMedia

from beatsync import media, messages, pipeline
from beatsync.align.result import Alignment, Segment
from beatsync.pipeline import Options

SONG_SR = 44100
MUSIC_AT_S = 5.0  # dance time at which the song (from its start) begins
MUSIC_LEN_S = 15.0  # and plays for this long (then the teacher stops it)
VIDEO_S = 30.0
FPS = 30.0
#: sync tolerance of the outputs, seconds (one frame is 33 ms)
SYNC_TOL = {"modular": 0.002, "v2": 0.005}


def make_media(folder: Path, **kw) -> ClassMedia:
    """30-s class video (keyframe every 15 frames at 30 fps), song heard at 5-20 s; 44.1-kHz song."""
    return sg.write_class_media(folder, song_sr=SONG_SR, video_s=VIDEO_S, fps=FPS, gop=15,
                                music_at_s=MUSIC_AT_S, music_len_s=MUSIC_LEN_S, **kw)


def run(m: ClassMedia, out: Path, **options) -> tuple[dict, list[tuple[float, str, str]]]:
    calls: list[tuple[float, str, str]] = []
    result = pipeline.process(str(m.video_path), str(m.song_path), str(out), options=Options.from_dict(options),
                              on_progress=lambda p, s, msg: calls.append((p, s, msg)))
    return result.model_dump(mode="json"), calls  # (what the CLI prints)


# ----------------------------------------------------------------------------- measuring outputs


def decoded(path, sr: int) -> tuple[np.ndarray, float, media.MediaInfo]:
    """Mono sound of an output at ``sr`` and the dance (output) time of its sample 0."""
    info = media.probe(str(path))
    return media.decode_audio(str(path), sr=sr, mono=True, info=info), info.audio_origin_s, info


def heard_lag(out_y: np.ndarray, origin_s: float, song_mono: np.ndarray, *, t_out: float, bgm_s: float,
              win_s: float = 1.0, search_s: float = 0.05) -> tuple[float, float]:
    """Seconds by which the output at time ``t_out`` plays the song ahead of ``bgm_s`` (+: early),
    and the normalised correlation at the peak."""
    sr = SONG_SR
    i = int(round((t_out - origin_s - win_s / 2) * sr))
    seg = out_y[i:i + int(win_s * sr)].astype(np.float64)
    j = int(round((bgm_s - win_s / 2 - search_s) * sr))
    ref = song_mono[max(0, j):j + len(seg) + int(2 * search_s * sr)].astype(np.float64)
    assert j >= 0 and len(ref) == len(seg) + int(2 * search_s * sr), "checkpoint outside the song"
    n = len(seg)
    c = np.correlate(ref, seg, mode="valid")
    e = np.sqrt(np.convolve(ref**2, np.ones(n), mode="valid") * float(seg @ seg)) + 1e-12
    ncc = c / e
    k = int(np.argmax(ncc))
    return (k + parabolic_offset(ncc, k)) / sr - search_s, float(ncc[k])


def first_frame_matches(out_path, src_path, start_s: float) -> float:
    """Dance time (in the source) of the source frame that equals the output's first frame."""
    with av.open(str(out_path)) as c:
        first = next(c.decode(c.streams.video[0])).to_ndarray(format="gray").astype(np.float32)
    best = (np.inf, None)
    with av.open(str(src_path)) as c:
        v = c.streams.video[0]
        t0 = None
        for frame in c.decode(v):
            t0 = frame.time if t0 is None else t0
            t = frame.time - t0
            if t < start_s - 0.2:
                continue
            if t > start_s + 0.2:
                break
            mad = float(np.mean(np.abs(frame.to_ndarray(format="gray").astype(np.float32) - first)))
            best = min(best, (mad, t), key=lambda x: x[0])
    return best[1]


def check_sync(status: dict, m: ClassMedia, engine: str, *, points=(6.0, 12.0, 18.5)) -> dict:
    """The song is heard at the right dance time at each of ``points`` (dance seconds)."""
    path = status[f"{engine}_output"]
    start = status["variants"][engine]["render"]["start_s"]
    y, origin, _ = decoded(path, SONG_SR)
    song_mono = m.song.mean(axis=0)
    lags = {}
    for t in points:
        lag, ncc = heard_lag(y, origin, song_mono, t_out=t - start, bgm_s=t - m.music_at_s)
        assert ncc > 0.8, f"{engine} at dance {t}: the song is not what is heard (ncc {ncc:.2f})"
        lags[t] = round(1000 * lag, 3)
    assert max(map(abs, lags.values())) <= 1000 * SYNC_TOL[engine], f"{engine}: song early by (ms) {lags}"
    return lags


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def main_media(tmp_path_factory) -> ClassMedia:
    return make_media(tmp_path_factory.mktemp("main"))


@pytest.fixture(scope="module")
def main_run(main_media, tmp_path_factory):
    """Default options: both engines, trimmed with a 1-s margin, silence outside the song."""
    out = tmp_path_factory.mktemp("out_main")
    status, calls = run(main_media, out)
    return status, calls, out


@pytest.fixture(scope="module")
def untrimmed_run(main_media, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_full")
    status, _ = run(main_media, out, trim=False, fill="original", engines=["modular"])
    return status, out


# ----------------------------------------------------------------------------- tests


def test_writes_both_variants(main_run, main_media):
    status, _, out = main_run
    stem = main_media.video_path.stem
    assert status["modular_output"] == os.path.join(str(out), f"{stem}_modular.mp4")
    assert status["v2_output"] == os.path.join(str(out), f"{stem}_v2.mp4")
    names = sorted(os.listdir(out))
    assert names == [f"{stem}_modular.mp4", f"{stem}_v2.mp4"], names  # no temp files left
    for eng in ("modular", "v2"):
        info = media.probe(status[f"{eng}_output"])
        assert info.video is not None and info.audio is not None
        assert info.audio.codec == "aac"


def test_status_has_the_design_fields(main_run):
    status, _, _ = main_run
    assert status["status"] == "success"
    assert isinstance(status["message"], str) and status["message"]
    assert status["progress"] == 100
    assert set(status) >= {"status", "message", "progress", "modular_output", "v2_output"}
    for eng in ("modular", "v2"):
        al = status["variants"][eng]["alignment"]
        assert set(al) >= {"engine", "offset_s", "tempo_ratio", "confidence", "segments", "alternatives"}
        assert al["offset_s"] == pytest.approx(MUSIC_AT_S, abs=SYNC_TOL[eng])
    assert status["agreement"]["agree"] is True


def test_progress_is_monotonic_and_ends_done(main_run):
    _, calls, _ = main_run
    pcts = [p for p, _, _ in calls]
    assert len(calls) >= 5
    assert all(0 <= p <= 100 for p in pcts)
    assert all(b >= a for a, b in zip(pcts, pcts[1:], strict=False)), pcts
    assert pcts[-1] == 100 and calls[-1][1] == "done"
    assert all(isinstance(s, str) and isinstance(msg, str) and msg for _, s, msg in calls)


@pytest.mark.parametrize("engine", ["modular", "v2"])
def test_song_is_heard_in_sync_with_the_picture(main_run, main_media, engine):
    status, _, _ = main_run
    check_sync(status, main_media, engine)
    start = status["variants"][engine]["render"]["start_s"]
    # the output's first frame is the class video's frame at start_s (so output time 0 = dance start_s)
    assert first_frame_matches(status[f"{engine}_output"], main_media.video_path, start) == pytest.approx(
        start, abs=1e-3)


def test_trimmed_to_the_music_with_margin(main_run):
    """Music at 5-20 s in a 30-s video, margin 1 s, keyframes every 0.5 s -> about 4.0-21.0 s."""
    status, _, _ = main_run
    for eng in ("modular", "v2"):
        render = status["variants"][eng]["render"]
        assert 3.5 - 1e-3 <= render["start_s"] <= MUSIC_AT_S - 1.0 + 1e-3, render  # keyframe at or before 4 s
        assert render["end_s"] == pytest.approx(MUSIC_AT_S + MUSIC_LEN_S + 1.0, abs=0.3), render
        info = media.probe(status[f"{eng}_output"])
        assert 16.7 <= info.video_duration_s <= 17.8, info.video_duration_s
        assert info.video_duration_s == pytest.approx(render["end_s"] - render["start_s"], abs=0.1)


def test_silence_outside_the_song(main_run):
    """fill="silence": nothing is heard in the kept margin before and after the music."""
    status, _, _ = main_run
    for eng in ("modular", "v2"):
        y, origin, info = decoded(status[f"{eng}_output"], SONG_SR)
        start = status["variants"][eng]["render"]["start_s"]
        head = y[: int((MUSIC_AT_S - 0.05 - start - origin) * SONG_SR)]
        tail = y[int((MUSIC_AT_S + MUSIC_LEN_S + 0.05 - start - origin) * SONG_SR):]
        assert len(head) > 0.5 * SONG_SR and len(tail) > 0.5 * SONG_SR
        assert float(np.sqrt(np.mean(head**2))) < 1e-3
        assert float(np.sqrt(np.mean(tail**2))) < 1e-3


def test_output_audio_has_the_songs_rate_and_channels(main_run):
    status, _, _ = main_run
    for eng in ("modular", "v2"):
        a = media.probe(status[f"{eng}_output"]).audio
        assert (a.sample_rate, a.channels) == (SONG_SR, 2)


def test_no_trim_keeps_full_length_and_original_fill(untrimmed_run, main_media):
    """trim=False keeps the whole video; fill="original" keeps the room sound where the song is not."""
    status, out = untrimmed_run
    assert status["v2_output"] is None and os.listdir(out) == [Path(status["modular_output"]).name]
    info = media.probe(status["modular_output"])
    assert info.video_duration_s == pytest.approx(VIDEO_S, abs=1.5 / FPS)
    assert status["variants"]["modular"]["render"]["start_s"] == 0.0
    check_sync(status, main_media, "modular", points=(6.0, 19.0))
    # the head (before the music) is the class's own sound, in place
    y, origin, _ = decoded(status["modular_output"], SONG_SR)
    orig, orig_origin, _ = decoded(main_media.video_path, SONG_SR)
    a, b = 0.3, MUSIC_AT_S - 0.3
    out_head = y[int((a - origin) * SONG_SR):int((b - origin) * SONG_SR)]
    src_head = orig[int((a - orig_origin) * SONG_SR):int((b - orig_origin) * SONG_SR)]
    rms_out, rms_src = (float(np.sqrt(np.mean(x**2))) for x in (out_head, src_head))
    assert rms_src > 0.01
    assert 0.7 <= rms_out / rms_src <= 1.4, (rms_out, rms_src)
    ncc = float(out_head @ src_head) / float(np.linalg.norm(out_head) * np.linalg.norm(src_head))
    assert ncc > 0.9, ncc


def test_mono_44k_song_with_stereo_48k_video_and_late_sound(tmp_path):
    """A mono 44.1-kHz mp3 song, a stereo 48-kHz class video whose sound starts 0.3 s after the
    picture: the output sound is the song's (44.1 kHz, mono) and in sync with the picture."""
    m = make_media(tmp_path, song_ext="mp3", song_channels=1, delay_s=0.3, seed=31)
    assert media.probe(str(m.video_path)).audio.channels == 2
    status, _ = run(m, tmp_path / "out", engines=["modular"])
    a = media.probe(status["modular_output"]).audio
    assert (a.sample_rate, a.channels) == (SONG_SR, 1)
    check_sync(status, m, "modular")


@pytest.mark.parametrize(("ext", "kw"), [
    ("mkv", {"acodec": ["-c:a", "libopus", "-b:a", "128k"]}),
    ("webm", {"vcodec": "libvpx-vp9"}),
])
def test_matroska_and_webm_with_opus_sync(tmp_path, ext, kw):
    m = make_media(tmp_path, ext=ext, seed=41, **kw)
    assert media.probe(str(m.video_path)).audio.codec == "opus"
    status, _ = run(m, tmp_path / "out", engines=["modular"])
    check_sync(status, m, "modular")
    start = status["variants"]["modular"]["render"]["start_s"]
    assert first_frame_matches(status["modular_output"], m.video_path, start) == pytest.approx(start, abs=1e-3)


def test_one_engine_failing_still_gives_the_other(main_media, tmp_path, monkeypatch):
    """When one engine does not find the song, the job succeeds with the other's video and says so."""
    from beatsync.errors import AlignmentError

    real = pipeline.run_engine

    def engines(dance, bgm, *, sr, engine, signals=None):
        if engine == "v2":
            raise AlignmentError("song_not_found", "The song was not found in this video.")
        return real(dance, bgm, sr=sr, engine=engine, signals=signals)

    monkeypatch.setattr(pipeline, "run_engine", engines)
    status, calls = run(main_media, tmp_path / "out")
    assert status["status"] == "success" and status["v2_output"] is None
    assert os.path.exists(status["modular_output"])
    assert status["variants"]["v2"]["error_code"] == "song_not_found"
    assert any(w.startswith("v2:") for w in status["warnings"])
    assert os.listdir(tmp_path / "out") == [Path(status["modular_output"]).name]
    assert calls[-1][:2] == (100, "done")


@pytest.mark.parametrize("bad", [{"margin_s": 31}, {"margin_s": -1}, {"fill": "music"}, {"engines": []},
                                 {"engines": ["v3"]}])
def test_bad_options_are_refused(bad):
    from beatsync.errors import BeatSyncError

    with pytest.raises(BeatSyncError) as ei:
        Options.from_dict(bad)
    assert ei.value.code == "bad_option"


# ----------------------------------------------------------------------------- the variants' pipelines at once


class Recorder:
    """An ``on_progress`` that notes each call's thread and whether two calls ever overlapped."""

    def __init__(self):
        self.calls: list[tuple[float, str, str]] = []
        self.threads: set[str] = set()
        self.overlaps = 0
        self._inside = 0

    def __call__(self, pct: float, stage: str, message: str) -> None:
        self._inside += 1
        if self._inside > 1:
            self.overlaps += 1
        time.sleep(0.0005)  # give another thread the chance to come in
        self.calls.append((pct, stage, message))
        self.threads.add(threading.current_thread().name)
        self._inside -= 1


def substitute_engines(monkeypatch, make):
    """Each engine's result is ``make(engine, the modular engine's real result)``: the modular engine
    runs once on the real sound (under a lock, whichever thread asks first) and its result stands in
    for both, so that the test decides how far the two results agree."""
    real = pipeline.run_engine
    lock, box = threading.Lock(), {}

    def engine(dance, bgm, *, sr, engine, signals=None):
        with lock:
            if "al" not in box:
                box["al"] = real(dance, bgm, sr=sr, engine="modular", signals=signals)
        return make(engine, copy.deepcopy(box["al"]))

    monkeypatch.setattr(pipeline, "run_engine", engine)


def test_same_result_is_rendered_once_and_linked(main_media, tmp_path, monkeypatch):
    """When both engines give the same segments (and so the same trim), the video is written once
    and the second output is a hard link to it, marked ``same_as``, with a notice saying so."""
    def same(engine, al):
        al.engine = engine
        return al

    substitute_engines(monkeypatch, same)
    out = tmp_path / "out"
    rec = Recorder()
    status = pipeline.process(str(main_media.video_path), str(main_media.song_path), str(out),
                              on_progress=rec).model_dump(mode="json")
    variants = status["variants"]
    leader = next(e for e in ("modular", "v2") if variants[e]["same_as"] is None)
    follower = "v2" if leader == "modular" else "modular"
    assert variants[follower]["same_as"] == leader
    a, b = (Path(status[f"{e}_output"]) for e in (leader, follower))
    assert a.stat().st_ino == b.stat().st_ino or a.read_bytes() == b.read_bytes()
    assert sorted(os.listdir(out)) == sorted([a.name, b.name])  # no temporary files left
    assert variants[follower]["render"] == variants[leader]["render"]
    assert variants[follower]["trim"] == variants[leader]["trim"] == status["trim"]
    assert f"render_{leader}" in status["timings"] and f"render_{follower}" not in status["timings"]
    notice = {"code": "same_result", "params": {"engine": follower, "same_as": leader}}
    assert notice in status["notices"]
    assert any(w.startswith(f"{follower}: the same result as {leader}") for w in status["warnings"])
    assert follower in messages.notice_message(notice, "en") and "同一个文件" in messages.notice_message(notice, "zh")
    for eng in ("modular", "v2"):
        check_sync(status, main_media, eng)
    assert rec.overlaps == 0
    pcts = [p for p, _, _ in rec.calls]
    assert pcts == sorted(pcts) and rec.calls[-1][:2] == (100, "done")


def test_each_variant_has_its_own_trim(main_media, tmp_path, monkeypatch):
    """Results that differ are each rendered and trimmed to their own music; the job's trim is
    their union (earliest start, latest end)."""
    def v2_hears_less(engine, al):
        al.engine = engine
        if engine == "v2":  # v2 "finds" only the first 9 s of the 15
            al.segments = [dataclasses.replace(s, dance_end_s=s.dance_start_s + 9.0) for s in al.segments]
        return al

    substitute_engines(monkeypatch, v2_hears_less)
    status = pipeline.process(str(main_media.video_path), str(main_media.song_path),
                              str(tmp_path / "out")).model_dump(mode="json")
    trims = {e: status["variants"][e]["trim"] for e in ("modular", "v2")}
    assert not any(v["same_as"] for v in status["variants"].values())
    assert trims["modular"]["music_end_s"] == pytest.approx(MUSIC_AT_S + MUSIC_LEN_S, abs=0.2)
    assert trims["v2"]["music_end_s"] == pytest.approx(MUSIC_AT_S + 9.0, abs=0.01)
    for eng, trim in trims.items():
        assert trim["end_s"] == pytest.approx(trim["music_end_s"] + 1.0, abs=1e-3)
        render = status["variants"][eng]["render"]
        assert render["end_s"] == pytest.approx(trim["end_s"], abs=1e-3)
        assert media.probe(status[f"{eng}_output"]).video_duration_s == pytest.approx(
            render["end_s"] - render["start_s"], abs=0.1)
    top = status["trim"]
    assert top["start_s"] == min(t["start_s"] for t in trims.values())
    assert top["end_s"] == max(t["end_s"] for t in trims.values())
    assert top["music_start_s"] == min(t["music_start_s"] for t in trims.values())
    assert top["music_end_s"] == max(t["music_end_s"] for t in trims.values())
    assert not any(n["code"] == "same_result" for n in status["notices"])


def test_progress_of_the_concurrent_pipelines(main_run):
    """Both pipelines report from their own threads; the calls come one at a time, only go up,
    name a stage of the pipeline furthest behind, and follow align -> render -> done."""
    status, calls, _ = main_run
    assert {"align_modular", "align_v2"} & {s for _, s, _ in calls}
    stages = [s for _, s, _ in calls]
    first_render = next(i for i, s in enumerate(stages) if s.startswith("render_"))
    assert all(not s.startswith("render_") or i >= first_render for i, s in enumerate(stages))
    assert all(s.startswith(("render_", "trim", "done")) for s in stages[first_render:])
    assert all(not s.startswith("align_") for s in stages[first_render:])
    assert set(status["timings"]) >= {"inputs", "analysis", "align_modular", "align_v2", "render_modular",
                                      "render_v2"}
    # the two pipelines ran at the same time (the alignments overlap)
    (a0, a1), (b0, b1) = status["timings"]["align_modular"], status["timings"]["align_v2"]
    assert max(a0, b0) < min(a1, b1)


def test_threads_report_one_at_a_time(main_media, tmp_path):
    rec = Recorder()
    pipeline.process(str(main_media.video_path), str(main_media.song_path), str(tmp_path / "out"), on_progress=rec)
    assert rec.overlaps == 0
    assert {"beatsync-modular", "beatsync-v2"} <= rec.threads
    pcts = [p for p, _, _ in rec.calls]
    assert pcts == sorted(pcts)


def test_a_failure_stops_the_other_pipeline(main_media, tmp_path):
    """A failure that is not an engine's (here: the beat-grid file cannot be written) ends the job
    with that error, stops the pipelines before they write anything, and leaves no thread or
    ffmpeg running."""
    with pytest.raises(FileNotFoundError):
        pipeline.process(str(main_media.video_path), str(main_media.song_path), str(tmp_path / "out"),
                         beatgrid_path=str(tmp_path / "missing" / "beatgrid.json"))
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    assert not [t for t in threading.enumerate() if t.name.startswith("beatsync-")]
    assert not ffmpeg_children()


def head_sound(path, *, a: float, b: float, offset_s: float = 0.0) -> np.ndarray:
    """Mono sound of ``path`` from its time ``a - offset_s`` to ``b - offset_s``."""
    y, origin, _ = decoded(path, SONG_SR)
    return y[int((a - offset_s - origin) * SONG_SR):int((b - offset_s - origin) * SONG_SR)]


def similar(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    return float(x @ y) / float(np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)


def test_original_fill_with_trim_keeps_the_room_sound_in_place(main_run, main_media, tmp_path):
    """fill="original" on a trimmed output (its first sample is dance time start_s > 0): the kept
    margin before the music is the class's own sound at the same dance time, in both outputs."""
    status, _ = run(main_media, tmp_path / "out", fill="original")
    for eng in ("modular", "v2"):
        start = status["variants"][eng]["render"]["start_s"]
        assert start > 3.0
        check_sync(status, main_media, eng)
        out_head = head_sound(status[f"{eng}_output"], a=start + 0.1, b=MUSIC_AT_S - 0.1, offset_s=start)
        src_head = head_sound(main_media.video_path, a=start + 0.1, b=MUSIC_AT_S - 0.1)
        assert similar(out_head, src_head) > 0.9
        rms_out, rms_src = (float(np.sqrt(np.mean(x**2))) for x in (out_head, src_head))
        assert 0.7 <= rms_out / rms_src <= 1.4


def test_original_blocks_are_the_decoded_sound_from_the_start(main_media, tmp_path):
    """The streamed original sound is the decoded sound at the song's rate, sample for sample, from
    the output's first sample on; when the recording's sound starts after the picture, silence first."""
    inp = pipeline.load_inputs(str(main_media.video_path), str(main_media.song_path), pipeline.Progress(None))
    whole = media.decode_audio(inp.dance_path, sr=inp.song_sr, mono=False, info=inp.dance)
    got = np.concatenate(list(pipeline.original_blocks(inp, 4.0)), axis=1)
    k0 = int(round((4.0 - inp.dance.audio_origin_s) * inp.song_sr))
    assert np.array_equal(got, whole[:, k0:])
    late = make_media(tmp_path, delay_s=0.3, seed=7)
    inp = pipeline.load_inputs(str(late.video_path), str(late.song_path), pipeline.Progress(None))
    assert inp.dance.audio_origin_s > 0.2  # (0.3 s, less the AAC encoder's own delay)
    whole = media.decode_audio(inp.dance_path, sr=inp.song_sr, mono=False, info=inp.dance)
    got = np.concatenate(list(pipeline.original_blocks(inp, 0.0)), axis=1)
    lead = int(round(inp.dance.audio_origin_s * inp.song_sr))
    assert not got[:, :lead].any() and np.array_equal(got[:, lead:], whole)


def test_same_result_rules():
    seg = Segment(dance_start_s=5.0, dance_end_s=20.0, bgm_start_s=0.0, rate=1.0)
    a = Alignment(engine="modular", offset_s=5.0, tempo_ratio=1.0, confidence=1.0, segments=[seg])

    def b(**change):
        return Alignment(engine="v2", offset_s=5.0, tempo_ratio=1.0, confidence=0.9,
                         segments=[dataclasses.replace(seg, **change)])

    assert pipeline.same_result(a, b())
    assert pipeline.same_result(a, b(dance_start_s=5.0009, bgm_start_s=0.0009))  # the same line, 0.9 ms on
    assert not pipeline.same_result(a, b(dance_end_s=20.002))
    assert not pipeline.same_result(a, b(bgm_start_s=0.0015))
    assert not pipeline.same_result(a, b(rate=1.00001))  # 0.15 ms at 15 s, but another rate
    assert not pipeline.same_result(a, b(mode="stretch"))
    two = b()
    two.segments.append(Segment(dance_start_s=25.0, dance_end_s=30.0, bgm_start_s=0.0, rate=1.0))
    assert not pipeline.same_result(a, two)

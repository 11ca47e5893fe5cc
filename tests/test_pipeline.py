"""`pipeline.process` end to end on small real files (written with ffmpeg through mediagen).

The class video is 30 s of testsrc2 at 30 fps (keyframe every 15 frames); its sound is a room
recording of the song (bgm 0-15 s played at dance 5-20 s) with talking all along. Each output
is decoded and cross-correlated with the clean song: the song must be heard at the right time
relative to the output's first picture frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import songgen as sg
from mediagen import parabolic_offset
from songgen import ClassMedia

from beatsync import media, pipeline
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
    status = pipeline.process(str(m.video_path), str(m.song_path), str(out), options=Options.from_dict(options),
                              on_progress=lambda p, s, msg: calls.append((p, s, msg)))
    return status, calls


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

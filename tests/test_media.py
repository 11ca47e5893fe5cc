"""Tests of beatsync.media on small synthetic files made with the imageio-ffmpeg binary."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import av
import imageio_ffmpeg
import mediagen
import numpy as np
import pytest
from mediagen import CLICK_TIMES_S, ffmpeg_children

from beatsync.errors import MediaError, ParameterError
from beatsync.media import (
    CutPlan,
    black_frames,
    decode_audio,
    ffmpeg_exe,
    frame_times,
    keyframe_times,
    mux,
    plan_cut,
    probe,
    require_audio,
    require_video,
    run_ffmpeg,
    stream_audio,
)

TOL_S = 0.001  # the click-timing contract: +-1 ms


# container -> (video encoder, default audio codec name as probed)
DANCE_CONTAINERS = {
    "mp4": ("libx264", "aac"),
    "mov": ("libx264", "aac"),
    "m4v": ("libx264", "aac"),
    "mkv": ("libx264", "aac"),
    "webm": ("libvpx-vp9", "opus"),
    "avi": ("mjpeg", "pcm_s16le"),
}
SONG_CODECS = {
    "mp3": "mp3",
    "m4a": "aac",
    "wav": "pcm_s16le",
    "flac": "flac",
    "ogg": "vorbis",
    "opus": "opus",
    "mp4": "aac",
}
VIDEO_CODEC_NAMES = {"libx264": "h264", "libvpx-vp9": "vp9", "mjpeg": "mjpeg"}


def clicks_at(y: np.ndarray, *, sr: int, origin_s: float, expected_s) -> list[float]:
    """Dance times of the clicks found in decoded ``y`` near ``expected_s``; minus the expectation."""
    return [mediagen.find_click(y, sr=sr, near_s=t - origin_s) + origin_s - t for t in expected_s]


def assert_one_line(err: MediaError, name: str) -> None:
    msg = str(err)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert name in msg
    assert os.sep not in msg.replace(name, "")  # base name only, no folders


def gray_frame_at(path, dance_s: float, *, start_s: float) -> np.ndarray:
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            if abs(frame.time - start_s - dance_s) < 1e-3:
                return frame.to_ndarray(format="gray")
    raise AssertionError(f"no frame at {dance_s}")


def md5(a: np.ndarray) -> str:
    return hashlib.md5(a.tobytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# ffmpeg runner
# --------------------------------------------------------------------------------------------


def test_ffmpeg_is_the_wheel_binary():
    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    system = shutil.which("ffmpeg")
    assert system is None or os.path.realpath(system) != os.path.realpath(ffmpeg_exe())


def test_run_ffmpeg_failure_is_one_line_with_base_name(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(MediaError) as exc:
        run_ffmpeg(["-i", str(missing), "-f", "null", "-"], what="Reading nowhere.mp4")
    assert exc.value.code == "ffmpeg_failed"
    assert str(exc.value).startswith("Reading nowhere.mp4 failed: ")
    assert_one_line(exc.value, "nowhere.mp4")


def test_ffmpeg_dies_with_its_jobs_process_group():
    """The task system kills a job's process group (time limit, cancel, a dead worker): the job's
    ffmpeg must be in that group, or it would outlive the job and write into a retried attempt."""
    import subprocess
    import sys

    script = (
        "import threading, time\n"
        "from beatsync.media import ffmpeg as f\n"
        "t = threading.Thread(target=f.run_ffmpeg, args=(['-re', '-f', 'lavfi', '-i', 'sine=d=60', '-f', 'null', '-'],),"
        " kwargs={'what': 'Waiting'}, daemon=True)\n"
        "t.start()\n"
        "time.sleep(60)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)  # as the supervisor starts a job
    try:
        deadline = time.monotonic() + 60  # a fresh Python starting on a loaded machine
        while not ffmpeg_children(job.pid) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        kids = ffmpeg_children(job.pid)
        assert len(kids) == 1, f"the job's ffmpeg is not running (job exit code {job.poll()}, children {kids})"
        ffmpeg_pid = kids[0]
        assert os.getpgid(ffmpeg_pid) == job.pid, "ffmpeg is not in its job's process group"
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(ffmpeg_pid, 0)
                state = Path(f"/proc/{ffmpeg_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (ProcessLookupError, FileNotFoundError):
                break
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("ffmpeg outlived its job's process group")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_ffmpeg_killed_from_outside_says_the_signal(sig):
    """ffmpeg ended by a signal from someone else (SIGKILL: the kernel's out-of-memory killer, an
    operator; or a crash): "ffmpeg_killed" with the signal's number, reaped. (SIGTERM is not one of
    them: ffmpeg catches it and exits with an error code.)"""
    errors = []

    def slow():
        try:
            run_ffmpeg(["-re", "-f", "lavfi", "-i", "sine=d=30", "-f", "null", "-"], what="Waiting", step="render")
        except MediaError as e:
            errors.append(e)

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 10
    while not ffmpeg_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid, = ffmpeg_children()
    os.kill(pid, sig)
    thread.join(10)
    assert not thread.is_alive()
    assert errors and errors[0].code == "ffmpeg_killed", errors
    if sig == signal.SIGKILL:
        assert str(errors[0]) == "Waiting was killed by signal 9"
    assert errors[0].params["signal"] == int(sig), errors[0].params
    assert errors[0].params["step"] == "render"
    assert not ffmpeg_children()


# --------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(DANCE_CONTAINERS))
def test_probe_dance_containers(make_class_video, ext):
    vcodec, acodec = DANCE_CONTAINERS[ext]
    path = make_class_video(ext, vcodec=vcodec, size=(160, 120), fps=25.0, duration_s=3.0)
    info = probe(path)
    assert info.path == str(path) and info.size_bytes == path.stat().st_size
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    v, a = info.video, info.audio
    assert v.codec == VIDEO_CODEC_NAMES[vcodec]
    assert (v.width, v.height, v.rotation) == (160, 120, 0)
    assert v.fps == pytest.approx(25.0)
    assert v.start_s == pytest.approx(0.0, abs=1e-3) and not v.vfr and v.pix_fmt
    assert a.codec == acodec and a.sample_rate == 48000 and a.channels == 2
    assert abs(info.audio_origin_s) < TOL_S
    assert require_audio(info) is a and require_video(info) is v


@pytest.mark.parametrize("fmt", sorted(SONG_CODECS))
def test_probe_song_formats(make_song, fmt):
    path, _ = make_song(fmt, duration_s=3.0, sr=44100)
    info = probe(path)
    assert info.video is None
    assert info.audio.codec == SONG_CODECS[fmt]
    assert info.audio.sample_rate == (48000 if fmt == "opus" else 44100)
    assert info.audio.channels == 2
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert info.audio_origin_s == 0.0
    with pytest.raises(MediaError) as exc:
        require_video(info)
    assert exc.value.code == "no_video"


@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_cover_art_is_not_a_video(make_song, tmp_path, fmt):
    path, _ = make_song(fmt, duration_s=2.0)
    covered = mediagen.add_cover_art(path, tmp_path / f"covered.{fmt}")
    with av.open(str(covered)) as c:
        assert len(c.streams.video) == 1  # the cover is there...
    info = probe(covered)
    assert info.video is None and info.audio is not None  # ...but is not the dance picture
    assert info.audio_origin_s == 0.0


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_from_display_matrix(make_class_video, rotation):
    path = make_class_video("mp4", size=(160, 96), rotation=rotation, duration_s=1.0)
    v = probe(path).video
    assert v.rotation == rotation
    assert (v.width, v.height) == (160, 96)  # coded size
    swapped = rotation in (90, 270)
    assert (v.display_width, v.display_height) == ((96, 160) if swapped else (160, 96))


def test_vfr_is_detected(make_class_video):
    assert probe(make_class_video("mp4", vfr=True, duration_s=2.0)).video.vfr
    assert not probe(make_class_video("mp4", duration_s=2.0)).video.vfr


# --------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------


def _probe_error(path) -> MediaError:
    with pytest.raises(MediaError) as exc:
        probe(path)
    assert_one_line(exc.value, os.path.basename(path))
    return exc.value


def test_missing_and_empty_files(tmp_path):
    assert _probe_error(tmp_path / "gone.mp4").code == "file_missing"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    err = _probe_error(empty)
    assert err.code == "empty_file"


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50, encoding="utf-8")
    err = _probe_error(fake)
    assert err.code == "not_media"
    assert str(err) == "notes.mp4 is not a sound or video file that can be played."


def test_subtitles_only_file_has_no_streams(tmp_path):
    subs = tmp_path / "lyrics.mp4"
    subs.write_text("1\n00:00:00,500 --> 00:00:01,500\nhello\n", encoding="utf-8")
    err = _probe_error(subs)
    assert err.code == "no_streams"


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-at-end", "faststart"])
def test_truncated_mp4(make_class_video, tmp_path, faststart):
    extra = ["-movflags", "+faststart"] if faststart else []
    full = make_class_video("mp4", duration_s=3.0, vargs=extra)
    cut = tmp_path / "upload.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    err = _probe_error(cut)
    assert err.code == "truncated"
    assert str(err).startswith("upload.mp4 is incomplete")
    if faststart:  # the index is there: it tells how much of the data is (about half of 3 s)
        assert 0.8 < err.params["playable_s"] < 2.2 and err.params["duration_s"] == pytest.approx(3.0, abs=0.1)
    else:  # the index (at the end) is cut off: nothing plays
        assert err.params["playable_s"] == 0


def test_video_without_audio(make_class_video):
    path = make_class_video("mp4", audio=False, duration_s=1.0)
    info = probe(path)
    assert info.audio is None and info.video is not None and info.audio_origin_s == 0.0
    for call in (lambda: require_audio(info, "dance video"), lambda: decode_audio(path, sr=16000)):
        with pytest.raises(MediaError) as exc:
            call()
        assert exc.value.code == "no_audio"
        assert str(exc.value) == f"{path.name} has no sound track"


def test_undecodable_sound_is_decode_failed(make_class_video, tmp_path):
    path = make_class_video("mp4", duration_s=2.0)
    info = probe(path)
    mediagen.zero_mdat(path)  # same index, garbage data
    with pytest.raises(MediaError) as exc:
        decode_audio(path, sr=16000, info=info)
    assert exc.value.code == "decode_failed"
    assert str(exc.value).startswith(f"could not decode the sound of {path.name}: ")
    assert_one_line(exc.value, path.name)


# --------------------------------------------------------------------------------------------
# keyframes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "gop", "bframes"), [("mp4", 15, 3), ("mkv", 20, None), ("webm", 25, None)])
def test_keyframe_times_match_gop(make_class_video, ext, gop, bframes):
    vcodec = "libvpx-vp9" if ext == "webm" else "libx264"
    path = make_class_video(
        ext, vcodec=vcodec, gop=gop, bframes=bframes, fps=30.0, duration_s=3.0, audio=False
    )
    kf = keyframe_times(path)
    expected = np.arange(0, 90, gop) / 30.0
    np.testing.assert_allclose(kf, expected, atol=1e-3)
    ft = frame_times(path)
    assert len(ft) == 90 and np.all(np.diff(ft) > 0)


def test_keyframe_times_demux_without_decoding(make_class_video):
    path = make_class_video("mp4", size=(320, 240), gop=30, duration_s=20.0, audio=False)
    t = time.perf_counter()
    kf = keyframe_times(path)
    t_demux = time.perf_counter() - t
    assert len(kf) == 20
    t = time.perf_counter()
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(c.streams.video[0]))
    t_decode = time.perf_counter() - t
    assert n == 600
    assert t_demux < 0.25 * t_decode, (t_demux, t_decode)  # far cheaper than decoding the frames


# --------------------------------------------------------------------------------------------
# decode_audio timing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(DANCE_CONTAINERS))
def test_click_timing_dance_containers(make_class_video, ext):
    vcodec, _ = DANCE_CONTAINERS[ext]
    path = make_class_video(ext, vcodec=vcodec, sr=44100)
    info = probe(path)
    for sr in (22050, 48000):
        y = decode_audio(path, sr=sr, info=info)
        errors = clicks_at(y, sr=sr, origin_s=info.audio_origin_s, expected_s=CLICK_TIMES_S)
        assert np.all(np.abs(errors) < TOL_S), (sr, errors)


@pytest.mark.parametrize("fmt", sorted(SONG_CODECS))
def test_click_timing_song_formats(make_song, fmt):
    path, _ = make_song(fmt, sr=44100)
    info = probe(path)
    for sr in (22050, 44100):
        y = decode_audio(path, sr=sr, info=info)
        assert info.audio_origin_s == 0.0
        errors = clicks_at(y, sr=sr, origin_s=0.0, expected_s=CLICK_TIMES_S)
        assert np.all(np.abs(errors) < TOL_S), (sr, errors)


@pytest.mark.parametrize(
    ("ext", "acodec", "delay_s", "tol_s"),
    [
        ("mp4", "aac", 0.3, TOL_S),
        ("mp4", "aac", -0.2, TOL_S),
        ("mov", "pcm_s16le", 0.3, TOL_S),
        ("mkv", "aac", 0.3, TOL_S),
        ("mkv", "aac", -0.2, TOL_S),
        ("webm", "libopus", -0.2, TOL_S),
        # Matroska keeps whole milliseconds and ffmpeg's muxer rounds the Opus codec delay: the file
        # itself says the sound starts 1 ms later than the encoder was told (see decode_audio).
        ("webm", "libopus", 0.3, 0.0015),
    ],
)
def test_click_timing_when_sound_and_picture_start_apart(make_class_video, ext, acodec, delay_s, tol_s):
    vcodec = "libvpx-vp9" if ext == "webm" else "libx264"
    path = make_class_video(ext, vcodec=vcodec, acodec=["-c:a", acodec], audio_delay_s=delay_s, bframes=2)
    info = probe(path)
    assert info.audio_origin_s == pytest.approx(delay_s, abs=0.03)  # AAC priming shows in mp4 (see report)
    y = decode_audio(path, sr=48000, info=info)
    errors = clicks_at(
        y, sr=48000, origin_s=info.audio_origin_s, expected_s=[t + delay_s for t in CLICK_TIMES_S]
    )
    assert np.all(np.abs(errors) < tol_s), errors


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_gap_in_sound_timestamps_is_filled(make_class_video, ext):
    """A recording that drops 0.5 s of sound after 1.5 s: later sound stays at its dance time."""
    path = make_class_video(ext, audio_gap=(1.5, 0.5))
    info = probe(path)
    y = decode_audio(path, sr=22050, info=info)
    expected = [CLICK_TIMES_S[0], CLICK_TIMES_S[1] + 0.5]
    errors = clicks_at(y, sr=22050, origin_s=info.audio_origin_s, expected_s=expected)
    assert np.all(np.abs(errors) < TOL_S), errors


@pytest.mark.parametrize("sr", [44100, 48000])
def test_mp3_in_avi_has_the_encoder_delay(make_class_video, sr):
    """Documented bias: AVI has no gapless info, so LAME's 1105 samples of delay stay in."""
    path = make_class_video("avi", vcodec="mjpeg", sr=sr, acodec=["-c:a", "libmp3lame", "-b:a", "192k"])
    info = probe(path)
    y = decode_audio(path, sr=sr, info=info)
    errors = clicks_at(y, sr=sr, origin_s=info.audio_origin_s, expected_s=CLICK_TIMES_S)
    np.testing.assert_allclose(errors, 1105 / sr, atol=1e-4)


def test_decode_audio_shapes_rates_and_channels(make_song, tmp_path):
    sr_in = 44100
    y = mediagen.music(2.0, sr=sr_in, level=0.3, channels=2)
    y[1] *= 0.25  # channels differ
    path = mediagen.write_song(tmp_path / "two.flac", y, sr=sr_in)
    info = probe(path)
    stereo = decode_audio(path, sr=sr_in, mono=False, info=info)
    assert stereo.dtype == np.float32 and stereo.shape == y.shape
    np.testing.assert_allclose(stereo, y, atol=1e-4)  # flac is lossless (16 bit)
    mono = decode_audio(path, sr=16000, info=info)
    assert mono.dtype == np.float32 and mono.ndim == 1 and abs(len(mono) - 32000) <= 2
    expect = y.mean(axis=0)[::441][:200]
    got = mono[::160][:200]
    assert np.corrcoef(expect, got)[0, 1] > 0.95
    mono_path = mediagen.write_song(tmp_path / "one.wav", y[:1], sr=sr_in)
    assert decode_audio(mono_path, sr=8000, mono=False).shape == (1, 16000)


def test_decode_audio_grows_buffer_when_duration_is_wrong(make_song, monkeypatch):
    path, _ = make_song("wav", duration_s=3.0)
    info = probe(path)
    short = type(info)(
        **{
            **info.__dict__,
            "duration_s": 0.1,
            "audio": type(info.audio)(**{**info.audio.__dict__, "duration_s": 0.1}),
        }
    )
    monkeypatch.setattr("beatsync.media.audio._CHUNK_BYTES", 4096)
    y = decode_audio(path, sr=44100, info=short)
    assert len(y) == 3 * 44100


@pytest.mark.parametrize(("ext", "block"), [("wav", 1000), ("mp3", 1 << 16), ("mkv", 4093)])
def test_stream_audio_is_decode_audio_in_blocks(make_song, make_class_video, ext, block):
    """Streamed in blocks, the sound is sample for sample what `decode_audio` gives (same timeline)."""
    path = make_class_video("mkv", duration_s=3.0) if ext == "mkv" else make_song(ext, duration_s=3.0)[0]
    info = probe(path)
    whole = decode_audio(path, sr=44100, mono=False, info=info)
    blocks = list(stream_audio(path, sr=44100, info=info, block=block))
    assert all(b.shape == (whole.shape[0], block) for b in blocks[:-1])
    assert np.array_equal(np.concatenate(blocks, axis=1), whole)
    mono = np.concatenate(list(stream_audio(path, sr=22050, mono=True, info=info, block=block)), axis=1)
    assert mono.shape[0] == 1 and np.array_equal(mono[0], decode_audio(path, sr=22050, info=info))


def test_stream_audio_closed_early_stops_ffmpeg(make_song):
    path, _ = make_song("wav", duration_s=4.0)
    blocks = stream_audio(path, sr=44100, block=1000)
    next(blocks)
    assert len(ffmpeg_children()) == 1
    blocks.close()
    assert not ffmpeg_children()


def test_stream_audio_failure_is_decode_failed(make_class_video, tmp_path):
    src = make_class_video("mp4", duration_s=2.0)
    info = probe(src)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(src.read_bytes())
    mediagen.zero_mdat(broken)
    with pytest.raises(MediaError) as exc:
        list(stream_audio(broken, sr=44100, info=info))
    assert exc.value.code == "decode_failed"
    assert not ffmpeg_children()


# --------------------------------------------------------------------------------------------
# black frames
# --------------------------------------------------------------------------------------------


def test_black_frames_head_and_tail(make_class_video):
    fps = 30.0
    path = make_class_video(
        "mp4", fps=fps, gop=30, black_head_s=1.0, black_tail_s=0.6, duration_s=4.0, audio=False
    )
    info = probe(path)
    head, tail = black_frames(path, info=info, head_until_s=2.0, tail_from_s=2.5)
    assert head == pytest.approx(1.0, abs=1 / fps + 1e-6)
    assert tail == pytest.approx(3.4, abs=1 / fps + 1e-6)


def test_black_frames_none(make_class_video):
    path = make_class_video("mkv", fps=25.0, gop=25, duration_s=2.0, audio=False)
    info = probe(path)
    head, tail = black_frames(path, info=info, head_until_s=1.0, tail_from_s=1.0)
    assert head == 0.0
    assert tail == pytest.approx(2.0, abs=1e-3)


# --------------------------------------------------------------------------------------------
# plan_cut
# --------------------------------------------------------------------------------------------


def test_plan_cut_snaps_to_keyframe_at_or_before(make_class_video):
    path = make_class_video("mp4", gop=15, fps=30.0, duration_s=4.0, audio=False)
    info = probe(path)
    kf = keyframe_times(path)
    for wanted, expected in [(1.3, 1.0), (1.5, 1.5), (1.4999999, 1.5), (0.2, 0.0), (3.9, 3.5)]:
        plan = plan_cut(info, start_s=wanted, end_s=4.0, keyframes=kf)
        assert plan.copy_video and plan.reason == ""
        assert plan.start_s == pytest.approx(expected, abs=1e-9)
    assert plan_cut(info, start_s=1.3, end_s=99.0).end_s == pytest.approx(4.0, abs=1e-3)  # clamped


def test_plan_cut_reencode_snaps_to_frame(make_class_video):
    path = make_class_video("avi", vcodec="mjpeg", fps=25.0, duration_s=3.0, audio=False)
    plan = plan_cut(probe(path), start_s=1.31, end_s=2.5)
    assert not plan.copy_video and "mjpeg" in plan.reason
    assert plan.start_s == pytest.approx(1.28)  # frame 32 at 25 fps: the frame at or before


# --------------------------------------------------------------------------------------------
# mux
# --------------------------------------------------------------------------------------------


def _render(src, out, *, click_track, start_s=1.3, end_s=3.8, sr=44100, channels=2, **kw):
    info = probe(src)
    plan = plan_cut(info, start_s=start_s, end_s=end_s)
    song = click_track(plan.duration_s + 0.5, sr=sr, channels=channels)
    progress = []
    result = mux(
        video_path=src,
        info=info,
        plan=plan,
        audio=song,
        sr=sr,
        out_path=out,
        on_progress=progress.append,
        **kw,
    )
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    return info, plan, result, probe(out)


def _assert_click_sync(out_info):
    y = decode_audio(out_info.path, sr=48000, info=out_info)
    errors = clicks_at(y, sr=48000, origin_s=out_info.audio_origin_s, expected_s=CLICK_TIMES_S)
    assert np.all(np.abs(errors) < TOL_S), errors


@pytest.mark.parametrize(
    ("ext", "kw"),
    [
        ("mp4", {"bframes": 3}),
        ("mkv", {"bframes": 3}),
        ("webm", {"vcodec": "libvpx-vp9"}),
        ("mp4", {"audio_delay_s": -0.2}),  # picture starts 0.2 s into the file
        ("mov", {"audio_delay_s": 0.3, "rotation": 270}),
        ("mp4", {"vcodec": "libx265"}),
    ],
    ids=["mp4-bframes", "mkv-bframes", "webm-vp9", "mp4-late-picture", "mov-rotated", "mp4-hevc"],
)
def test_mux_stream_copy_keeps_frames_and_sync(make_class_video, click_track, tmp_path, ext, kw):
    src = make_class_video(ext, gop=30, fps=30.0, duration_s=5.0, **kw)
    out = tmp_path / "out.mp4"
    info, plan, result, out_info = _render(src, out, click_track=click_track)
    assert plan.start_s == pytest.approx(1.0, abs=1e-6)  # 1.3 is not a keyframe: snapped back
    assert result["video"] == "copy" and result["audio_codec"] == "aac"
    assert (result["sample_rate"], result["channels"]) == (44100, 2)
    assert out_info.video.codec == info.video.codec and out_info.video.rotation == info.video.rotation
    assert (out_info.audio.codec, out_info.audio.sample_rate, out_info.audio.channels) == ("aac", 44100, 2)
    assert abs(out_info.video.start_s) < 1e-6 and abs(out_info.audio_origin_s) < TOL_S
    # same pictures: first frame identical, frame count matches (B-frames may add 2 at the end)
    src_ft = frame_times(src) - info.video.start_s
    n_src = int(np.sum((src_ft >= plan.start_s - 1e-6) & (src_ft < plan.end_s - 1e-6)))
    assert n_src <= len(frame_times(out)) <= n_src + 2
    first_src = gray_frame_at(src, plan.start_s, start_s=info.video.start_s)
    first_out = gray_frame_at(out, 0.0, start_s=out_info.video.start_s)
    assert md5(first_src) == md5(first_out)
    _assert_click_sync(out_info)
    with av.open(str(out)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
        if info.video.codec == "hevc":
            assert c.streams.video[0].codec_tag == "hvc1"  # what Apple players need
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_mux_keeps_vfr_timestamps(make_class_video, click_track, tmp_path):
    src = make_class_video("mp4", vfr=True, gop=30, fps=30.0, duration_s=4.0)
    info, plan, result, out_info = _render(src, tmp_path / "vfr_out.mp4", click_track=click_track)
    assert result["video"] == "copy" and out_info.video.vfr
    src_ft = frame_times(src) - info.video.start_s
    src_ft = src_ft[(src_ft >= plan.start_s - 1e-6) & (src_ft < plan.end_s)] - plan.start_s
    out_ft = frame_times(out_info.path)
    np.testing.assert_allclose(out_ft[: len(src_ft)], src_ft, atol=1e-3)
    _assert_click_sync(out_info)


def test_mux_drops_other_streams(make_class_video, click_track, tmp_path):
    src = mediagen.add_subtitle_track(make_class_video("mp4", gop=30, duration_s=4.0), tmp_path / "subs.mkv")
    with av.open(str(src)) as c:
        assert len(c.streams.subtitles) == 1
    _, _, _, out_info = _render(src, tmp_path / "nosubs.mp4", click_track=click_track)
    with av.open(out_info.path) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]


@pytest.mark.parametrize(
    ("ext", "vcodec", "rotation"),
    [("avi", "mjpeg", 0), ("webm", "libvpx", 90)],
    ids=["mjpeg-avi", "vp8-webm-rotated"],
)
def test_mux_reencodes_what_mp4_cannot_copy(make_class_video, click_track, tmp_path, ext, vcodec, rotation):
    src = make_class_video(ext, vcodec=vcodec, rotation=rotation, fps=25.0, gop=25, duration_s=4.0)
    info, plan, result, out_info = _render(src, tmp_path / "x264.mp4", click_track=click_track, channels=1)
    assert result["video"] == "x264" and result["reason"] and result["channels"] == 1
    assert plan.start_s == pytest.approx(1.28)  # re-encoding cuts at the frame at or before 1.3 s
    assert out_info.video.codec == "h264" and out_info.video.pix_fmt == "yuv420p"
    assert out_info.video.rotation == rotation
    assert out_info.audio.channels == 1
    # the first output picture is the source frame at plan.start_s (lossy: compare to neighbours)
    first_out = gray_frame_at(out_info.path, 0.0, start_s=out_info.video.start_s).astype(float)
    diffs = [
        np.abs(gray_frame_at(src, plan.start_s + k / 25.0, start_s=info.video.start_s) - first_out).mean()
        for k in (-1, 0, 1)
    ]
    assert diffs[1] < min(diffs[0], diffs[2]) / 2
    _assert_click_sync(out_info)


def test_mux_failure_leaves_nothing_behind(make_class_video, click_track, tmp_path):
    src = make_class_video("webm", vcodec="libvpx", duration_s=2.0)
    info = probe(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.mp4"
    forced = CutPlan(start_s=0.0, end_s=1.5, copy_video=True)  # vp8 cannot be copied into mp4
    with pytest.raises(MediaError) as exc:
        mux(video_path=src, info=info, plan=forced, audio=click_track(2.0), sr=44100, out_path=out)
    assert exc.value.code == "encode_failed"  # named after the class video, not the output
    assert str(exc.value).startswith(f"The result video could not be written from {src.name}: ")
    assert exc.value.params["name"] == src.name and "partial" not in str(exc.value)
    assert_one_line(exc.value, src.name)
    assert list(out_dir.iterdir()) == []
    with pytest.raises(MediaError) as exc:
        mux(
            video_path=src,
            info=info,
            plan=forced,
            audio=click_track(2.0),
            sr=44100,
            out_path=tmp_path / "no" / "x.mp4",
        )
    assert exc.value.code == "write_failed"


def test_mux_cancelled_leaves_nothing_behind(make_class_video, click_track, tmp_path):
    src = make_class_video("avi", vcodec="mjpeg", size=(640, 360), duration_s=20.0)  # ~2 s to re-encode
    info = probe(src)
    plan = plan_cut(info, start_s=0.0, end_s=20.0)
    out = tmp_path / "cancelled.mp4"

    def cancel(fraction):  # ffmpeg killed from outside while it writes
        if fraction < 1.0:
            for pid in ffmpeg_children():
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(MediaError) as exc:
        mux(
            video_path=src,
            info=info,
            plan=plan,
            audio=click_track(20.0),
            sr=44100,
            out_path=out,
            on_progress=cancel,
        )
    assert exc.value.code == "ffmpeg_killed"
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".avi"] == []


def _blocks(audio: np.ndarray, size: int, *, closed: list | None = None):
    try:
        for i in range(0, audio.shape[1], size):
            yield audio[:, i : i + size]
    finally:
        if closed is not None:
            closed.append(True)


def test_mux_streams_blocks_as_it_writes_an_array(make_class_video, click_track, tmp_path):
    """The sound given as blocks of any length (made while ffmpeg runs) gives the same file sound
    as the whole array; a shorter sound is padded with silence, a longer one cut."""
    src = make_class_video("mp4", gop=30, fps=30.0, duration_s=5.0)
    info = probe(src)
    plan = plan_cut(info, start_s=1.3, end_s=3.8)
    song = click_track(plan.duration_s + 0.5)
    whole = mux(video_path=src, info=info, plan=plan, audio=song, sr=44100, out_path=tmp_path / "whole.mp4")
    closed, progress = [], []
    streamed = mux(video_path=src, info=info, plan=plan, audio=_blocks(song, 7777, closed=closed), channels=2,
                   sr=44100, out_path=tmp_path / "streamed.mp4", on_progress=progress.append)
    assert streamed == whole and closed == [True]
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    a = decode_audio(tmp_path / "whole.mp4", sr=44100, mono=False)
    b = decode_audio(tmp_path / "streamed.mp4", sr=44100, mono=False)
    assert a.shape == b.shape and np.array_equal(a, b)
    _assert_click_sync(probe(tmp_path / "streamed.mp4"))
    short = mux(video_path=src, info=info, plan=plan, audio=_blocks(song[:, :22050], 1000), channels=2, sr=44100,
                out_path=tmp_path / "short.mp4")
    assert short["duration_s"] == plan.duration_s
    y = decode_audio(tmp_path / "short.mp4", sr=44100, mono=False)
    assert y.shape[1] >= int(plan.duration_s * 44100) - 2048 and not y[:, 30000:].any()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(ParameterError):
        mux(video_path=src, info=info, plan=plan, audio=_blocks(song, 1000), sr=44100, out_path=tmp_path / "x.mp4")


def test_mux_blocks_failing_stop_ffmpeg_and_leave_nothing(make_class_video, click_track, tmp_path):
    """When making the sound fails half way, ffmpeg is stopped (not left to finish a file with the
    sound cut short), the error is the sound's own, and nothing is left behind."""
    src = make_class_video("mp4", gop=30, duration_s=4.0)
    info = probe(src)
    plan = plan_cut(info, start_s=0.0, end_s=4.0)

    def failing():
        yield click_track(1.0)
        raise ValueError("the sound could not be made")

    with pytest.raises(ValueError, match="could not be made"):
        mux(video_path=src, info=info, plan=plan, audio=failing(), channels=2, sr=44100,
            out_path=tmp_path / "failed.mp4")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".mp4" and p != src] == []
    assert not ffmpeg_children()


def test_mux_ffmpeg_failing_while_sound_streams(make_class_video, click_track, tmp_path):
    """ffmpeg exiting at once (it cannot write this picture into mp4) while a long sound is being
    written: the writer stops at the broken pipe, the error is ffmpeg's, the blocks are closed."""
    src = make_class_video("webm", vcodec="libvpx", duration_s=2.0)
    info = probe(src)
    forced = CutPlan(start_s=0.0, end_s=120.0, copy_video=True)  # vp8 cannot be copied into mp4
    closed = []
    with pytest.raises(MediaError) as exc:
        mux(video_path=src, info=info, plan=forced, audio=_blocks(click_track(120.0), 4096, closed=closed),
            channels=2, sr=44100, out_path=tmp_path / "result.mp4")
    assert exc.value.code == "encode_failed"
    assert closed == [True] and not ffmpeg_children()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".mp4"] == []

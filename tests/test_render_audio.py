"""The sound track of an output: the song laid out along segments, stretched or resampled."""

import numpy as np
import pytest
from mediagen import add_clicks, find_click

from beatsync.align.result import Segment
from beatsync.render_audio import build_track, song_piece, wsola

SR = 44100


def clicks_song(duration_s: float, times: list[float], channels: int = 2) -> np.ndarray:
    y = np.zeros((channels, int(duration_s * SR)), np.float32)
    return add_clicks(y, sr=SR, times_s=times)


@pytest.mark.parametrize("rate", [0.8, 0.85, 0.95])
def test_wsola_keeps_timing_within_a_few_ms(rate):
    """Pitch-kept stretching keeps the song within its bound of t / rate: 6 ms of splice search
    plus half a frame (23 ms) times 1 - rate."""
    times = [1.0 + 0.73 * k for k in range(12)]
    x = clicks_song(11.0, times)
    y = wsola(x, sr=SR, rate=rate)
    assert y.shape == (2, round(x.shape[1] / rate))
    for t in times:
        got = find_click(y[0], sr=SR, near_s=t / rate, search_s=0.05)
        assert abs(got - t / rate) <= 0.006 + 0.0233 * (1 - rate) + 0.0005, (t, got, t / rate)


def test_wsola_keeps_the_pitch():
    """A 440 Hz tone stays at 440 Hz (a resampler would move it to 440 * rate)."""
    t = np.arange(3 * SR) / SR
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)[None, :]
    y = wsola(x, sr=SR, rate=0.8)[0, SR // 2: SR // 2 + SR]
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.fft.rfftfreq(len(y), 1 / SR)[int(np.argmax(spec))] == pytest.approx(440, abs=3)


def test_song_piece_speed_mode_resamples_on_the_line():
    """At 90 % speed, a click at song time s is heard (s - start) / 0.9 after the piece starts."""
    times = [5.0, 8.0, 12.0]
    x = clicks_song(20.0, times)
    piece = song_piece(x, sr=SR, bgm_start_s=4.0, duration_s=10.0, rate=0.9, mode="speed")
    assert piece.shape == (2, 10 * SR)
    for s in times:
        assert find_click(piece[0], sr=SR, near_s=(s - 4.0) / 0.9) == pytest.approx((s - 4.0) / 0.9, abs=1e-4)


def test_build_track_follows_segments_and_fills_gaps():
    """Two run-throughs: each plays its part of the song; the pause gets the original recording."""
    song = clicks_song(30.0, [3.0, 10.0, 15.0])
    segs = [Segment(dance_start_s=2.0, dance_end_s=12.0, bgm_start_s=1.0, rate=1.0),
            Segment(dance_start_s=15.0, dance_end_s=25.0, bgm_start_s=8.0, rate=1.0)]
    start, end = 1.0, 26.0
    original = np.full((2, int((end - start) * SR)), 0.01, np.float32)
    track = build_track(song, sr=SR, segments=segs, start_s=start, end_s=end, fill=original)
    assert track.shape == (2, int(25.0 * SR))
    # song 3.0 at dance 2 + (3 - 1) = 4.0; song 10.0 at 15 + (10 - 8) = 17.0; output time = dance - start
    assert find_click(track[0], sr=SR, near_s=3.0) == pytest.approx(3.0, abs=1e-4)
    assert find_click(track[0], sr=SR, near_s=16.0) == pytest.approx(16.0, abs=1e-4)
    # song 10.0 lies in the first segment's song range (1..11) at dance 11.0 -> output 10.0
    assert find_click(track[0], sr=SR, near_s=10.0) == pytest.approx(10.0, abs=1e-4)
    # the pause (dance 12-15) carries the original recording, not silence
    pause = track[:, int((13.0 - start) * SR): int((14.0 - start) * SR)]
    assert np.allclose(pause, 0.01, atol=1e-6)
    # without fill the pause is silent
    silent = build_track(song, sr=SR, segments=segs, start_s=start, end_s=end)
    assert not silent[:, int((13.0 - start) * SR): int((14.0 - start) * SR)].any()

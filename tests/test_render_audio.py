"""The sound track of an output: the song laid out along segments, stretched or resampled."""

import numpy as np
import pytest
from mediagen import add_clicks, find_click

from beatsync.align.result import Segment
from beatsync.render_audio import PieceStream, build_track, song_piece, track_blocks, wsola

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


# ----------------------------------------------------------------------------- streaming, block by block


def music_song(duration_s: float, channels: int = 2) -> np.ndarray:
    from mediagen import music

    return music(duration_s, sr=SR, seed=5, channels=channels)


def read_in(stream: PieceStream, sizes) -> np.ndarray:
    """Read ``stream`` to its end in chunks of the given sizes (cycled)."""
    parts, i = [], 0
    while stream.given < stream.n_out:
        parts.append(stream.read(sizes[i % len(sizes)]))
        i += 1
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize(("rate", "mode"), [(1.0, "speed"), (0.9, "speed"), (1.04, "speed"), (0.85, "stretch"),
                                            (1.0 + 1e-4, "speed"), (0.8, "stretch")],
                         ids=["copy", "slower", "faster", "stretch", "drift", "stretch-80"])
@pytest.mark.parametrize(("bgm_start_s", "duration_s"), [(3.0, 12.3), (-0.7, 6.0), (26.0, 8.0)],
                         ids=["inside", "before-song", "past-song-end"])
def test_piece_stream_gives_the_one_shot_samples(rate, mode, bgm_start_s, duration_s):
    """`PieceStream` read in any chunk sizes is `song_piece` sample for sample (resampled, copied
    and pitch-kept pieces; starting before the song and running past its end)."""
    song = music_song(30.0)
    whole = song_piece(song, sr=SR, bgm_start_s=bgm_start_s, duration_s=duration_s, rate=rate, mode=mode)
    for sizes in ([SR * 10], [997, 4410, 1], [len(whole[0])]):
        got = read_in(PieceStream(song, sr=SR, bgm_start_s=bgm_start_s, duration_s=duration_s, rate=rate,
                                  mode=mode), sizes)
        assert got.shape == whole.shape
        assert np.array_equal(got, whole), (sizes, float(np.abs(got - whole).max()))


def test_streamed_wsola_is_wsola():
    """The pitch-kept stretcher, frame by frame from a window of the song, is `wsola` exactly."""
    from beatsync.render_audio import _Window, _WsolaStream

    song = music_song(9.0)
    for rate in (0.8, 0.97, 1.1):
        stream = _WsolaStream(_Window(song, 0, song.shape[1]), sr=SR, rate=rate)
        parts = []
        while (y := stream.pull()) is not None:
            parts.append(y)
        assert np.array_equal(np.concatenate(parts, axis=1), wsola(song, sr=SR, rate=rate)), rate


def one_shot_track(song, *, segments, start_s, end_s):
    """The track as build_track made it before streaming: each segment's whole `song_piece`,
    faded where it starts/stops inside the track, added in place (the reference)."""
    n = int(round((end_s - start_s) * SR))
    out = np.zeros((song.shape[0], n), np.float32)
    for seg in segments:
        a, b = max(seg.dance_start_s, start_s), min(seg.dance_end_s, end_s)
        if b - a <= 0:
            continue
        i0 = int(round((a - start_s) * SR))
        piece = song_piece(song, sr=SR, bgm_start_s=seg.bgm_time(a), duration_s=b - a, rate=seg.rate,
                           mode=seg.mode)[:, :n - i0]
        k = min(int(0.01 * SR), piece.shape[1] // 2)
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        if k and a > start_s + 1e-6:
            piece[:, :k] *= ramp
        if k and b < end_s - 1e-6:
            piece[:, -k:] *= ramp[::-1]
        out[:, i0:i0 + piece.shape[1]] += piece
    return np.clip(out, -1.0, 1.0)


#: run-throughs at several speeds, pitch moved or kept, starting and ending inside 10-s blocks and
#: on a block boundary, back to back (an edit) and one past the end of the track
SEGMENTS = [Segment(dance_start_s=1.3, dance_end_s=10.0, bgm_start_s=0.5, rate=1.0),
            Segment(dance_start_s=10.0, dance_end_s=23.71, bgm_start_s=15.0, rate=0.9, mode="stretch"),
            Segment(dance_start_s=25.05, dance_end_s=38.2, bgm_start_s=2.0, rate=0.93),
            Segment(dance_start_s=41.0, dance_end_s=70.0, bgm_start_s=0.0, rate=1.02, mode="stretch")]


@pytest.mark.parametrize("block_s", [10.0, 3.7, 0.25, 1 / SR], ids=["10s", "3.7s", "0.25s", "one-sample"])
def test_track_blocks_join_sample_exactly(block_s):
    """However long the blocks, the streamed track is the one-shot track sample for sample."""
    song = music_song(40.0)
    start, end = 0.6, 52.3
    if block_s < 0.01:  # one sample at a time is slow: a short span, still across segment edges
        start, end = 9.9, 10.1
    whole = one_shot_track(song, segments=SEGMENTS, start_s=start, end_s=end)
    blocks = list(track_blocks(song, sr=SR, segments=SEGMENTS, start_s=start, end_s=end, block_s=block_s))
    assert {b.shape[1] for b in blocks[:-1]} == {int(round(block_s * SR))}
    got = np.concatenate(blocks, axis=1)
    assert got.shape == whole.shape
    assert np.array_equal(got, whole), float(np.abs(got - whole).max())
    assert np.array_equal(build_track(song, sr=SR, segments=SEGMENTS, start_s=start, end_s=end), whole)


def test_fill_streams_in_blocks_of_any_length():
    """The original recording given as blocks of other lengths (as a decoder gives them), and in
    another channel count, fills the gaps exactly as the whole array does; the cross-fade is the
    10-ms moving average of where the song is missing."""
    song = music_song(40.0)
    start, end = 0.6, 52.3
    n = int(round((end - start) * SR))
    rng = np.random.default_rng(2)
    original = (0.1 * rng.standard_normal((1, n - 5000))).astype(np.float32)  # mono, and shorter than the track
    whole = build_track(song, sr=SR, segments=SEGMENTS, start_s=start, end_s=end, fill=original)
    blocks = (original[:, i:i + 12345] for i in range(0, original.shape[1], 12345))
    got = np.concatenate(list(track_blocks(song, sr=SR, segments=SEGMENTS, start_s=start, end_s=end, fill=blocks,
                                           block_s=10.0)), axis=1)
    assert np.array_equal(got, whole)
    # against the plain definition: song * (1 - gap) + original * gap, gap = box-filtered "no song here"
    song_only = one_shot_track(song, segments=SEGMENTS, start_s=start, end_s=end)
    covered = np.zeros(n, bool)
    for seg in SEGMENTS:
        a, b = max(seg.dance_start_s, start), min(seg.dance_end_s, end)
        covered[int(round((a - start) * SR)):int(round((a - start) * SR)) + int(round((b - a) * SR))] = True
    k = int(0.01 * SR)
    gap = np.convolve((~covered).astype(np.float64), np.ones(k) / k, mode="same")
    f = np.zeros((2, n))
    f[:, :original.shape[1]] = original
    np.testing.assert_allclose(whole, np.clip(song_only * (1 - gap) + f * gap, -1, 1), atol=1e-6)

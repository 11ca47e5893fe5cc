"""Build the sound track of an output: the clean song laid out along the class video's timeline.

Pure numpy on arrays. Speed changes that move the pitch are resampled (soxr); pitch-kept ones
use a WSOLA time stretcher whose splice search is bounded to a few milliseconds, so the song's
timing never wanders from the alignment by more than that (general-purpose stretchers such as
ffmpeg's ``atempo`` drift by tens of milliseconds locally).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import soxr

from beatsync.align.result import Segment

FADE_S = 0.01


def _fade(x: np.ndarray, n: int, *, head: bool, tail: bool) -> None:
    n = min(n, x.shape[-1] // 2)
    if n <= 0:
        return
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    if head:
        x[..., :n] *= ramp
    if tail:
        x[..., -n:] *= ramp[::-1]


def wsola(x: np.ndarray, *, sr: int, rate: float, max_shift_s: float = 0.006) -> np.ndarray:
    """Time-stretch ``x`` (channels, n) to play ``rate`` times as fast with the pitch kept.

    Output sample k carries the input near sample ``k * rate``: frames of ~46 ms are overlap-added
    at a fixed output hop, each centred on its nominal input position give or take
    ``max_shift_s`` (the position whose start best continues the previous frame's waveform). So
    the song's timing is off by at most ``max_shift_s`` plus half a frame times ``1 - rate``
    (10.6 ms at 80 %), typically a few ms.

    Returns (channels, round(n / rate)) float32.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    ch, n = x.shape
    N = 1 << int(np.ceil(np.log2(0.046 * sr)))
    H = N // 2
    D = max(1, int(max_shift_s * sr))
    m = int(round(n / rate))
    out = np.zeros((ch, m + N), np.float32)
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)).astype(np.float32)  # periodic: sums to 1 at hop N/2
    mono = x.mean(axis=0)
    padded = np.pad(mono, (D, N + D))
    xp = np.pad(x, ((0, 0), (0, N)))
    nfft = scipy.fft.next_fast_len(H + 2 * D + H)
    prev = None
    for k in range(m // H + 1):
        # the frame's centre (output k*H + N/2) carries the input at that time * rate
        nominal = max(0, int(round((k * H + N / 2) * rate - N / 2)))
        if nominal >= n:
            break
        pos = nominal
        if prev is not None:
            target = padded[prev + H + D: prev + H + D + H]  # how the previous frame's input goes on
            region = padded[nominal: nominal + 2 * D + H]  # candidates: nominal - D .. nominal + D
            if target.any() and region.any():
                c = scipy.fft.irfft(scipy.fft.rfft(region, nfft) * np.conj(scipy.fft.rfft(target, nfft)), nfft)
                pos = nominal - D + int(np.argmax(c[:2 * D + 1]))
                pos = min(max(pos, 0), n - 1)
        out[:, k * H: k * H + N] += xp[:, pos:pos + N] * win
        prev = pos
    return out[:, :m]


def song_piece(bgm: np.ndarray, *, sr: int, bgm_start_s: float, duration_s: float, rate: float,
               mode: str) -> np.ndarray:
    """The song as heard during ``duration_s`` dance seconds from BGM time ``bgm_start_s`` at ``rate``.

    Parameters
    ----------
    bgm : (channels, n) float32 song at ``sr`` Hz.
    rate : BGM seconds per dance second (0.9 = the class played it at 90 %).
    mode : "speed" (resample: pitch follows tempo) or "stretch" (keep pitch: WSOLA).

    Returns (channels, round(duration_s * sr)) float32; silence where the song has no samples.
    """
    ch = bgm.shape[0]
    n_out = int(round(duration_s * sr))
    out = np.zeros((ch, n_out), np.float32)
    if n_out <= 0:
        return out
    # source range in BGM samples (a little extra for the resampler's edges)
    pad = int(0.05 * sr)
    src_lo = int(np.floor(bgm_start_s * sr)) - pad
    src_hi = int(np.ceil((bgm_start_s + duration_s * rate) * sr)) + pad
    a, b = max(0, src_lo), min(bgm.shape[1], src_hi)
    if b <= a:
        return out
    src = np.zeros((ch, src_hi - src_lo), np.float32)
    src[:, a - src_lo:b - src_lo] = bgm[:, a:b]
    frac0 = bgm_start_s * sr - src_lo  # source position (samples) of the wanted start
    if abs(rate - 1.0) * duration_s < 2e-5:  # drifts less than a sample at 48 kHz: no resampling
        i0 = int(round(frac0))
        piece = src[:, i0:i0 + n_out]
    elif mode == "stretch" and abs(rate - 1.0) > 0.005:
        st = wsola(src, sr=sr, rate=rate)  # src played at `rate` with the pitch kept
        i0 = int(round(frac0 / rate))
        piece = st[:, i0:i0 + n_out]
    else:
        # played at `rate`: one dance second consumes `rate` song seconds -> resample by 1/rate
        rs = soxr.resample(src.T, sr, sr / rate, quality="VHQ").T.astype(np.float32)
        i0 = int(round(frac0 / rate))
        piece = rs[:, i0:i0 + n_out]
    out[:, :piece.shape[1]] = piece
    return out


def build_track(bgm: np.ndarray, *, sr: int, segments: list[Segment], start_s: float, end_s: float,
                fill: np.ndarray | None = None) -> np.ndarray:
    """The output's audio for dance time [start_s, end_s): the song along each segment.

    Parameters
    ----------
    bgm : (channels, n) song at ``sr``.
    segments : where and how the song plays (dance times in seconds).
    start_s, end_s : dance-time span of the output; sample 0 plays at ``start_s``.
    fill : optional (channels, m) original recording at ``sr`` whose sample 0 is at ``start_s``,
        used where no segment plays (instead of silence).

    Returns (channels, round((end_s - start_s) * sr)) float32.
    """
    ch = bgm.shape[0]
    n = int(round((end_s - start_s) * sr))
    out = np.zeros((ch, n), np.float32)
    covered = np.zeros(n, bool)
    fade = int(FADE_S * sr)
    for seg in segments:
        a = max(seg.dance_start_s, start_s)
        b = min(seg.dance_end_s, end_s)
        if b - a <= 0:
            continue
        i0 = int(round((a - start_s) * sr))
        piece = song_piece(bgm, sr=sr, bgm_start_s=seg.bgm_time(a), duration_s=b - a, rate=seg.rate,
                           mode=seg.mode)
        piece = piece[:, :n - i0]
        # fade only where the song really starts/stops inside the output
        _fade(piece, fade, head=a > start_s + 1e-6, tail=b < end_s - 1e-6)
        out[:, i0:i0 + piece.shape[1]] += piece
        covered[i0:i0 + piece.shape[1]] = True
    if fill is not None:
        f = np.zeros((ch, n), np.float32)
        src = fill if fill.shape[0] == ch else np.repeat(fill.mean(axis=0, keepdims=True), ch, axis=0)
        m = min(n, src.shape[1])
        f[:, :m] = src[:, :m]
        gap = (~covered).astype(np.float32)
        if fade > 1:
            gap = np.convolve(gap, np.ones(fade, np.float32) / fade, mode="same")
        out = out * (1.0 - gap) + f * gap if covered.any() else f
    np.clip(out, -1.0, 1.0, out=out)
    return out

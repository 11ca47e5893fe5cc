"""A first estimate of where the song plays, a fraction of a second after the analysis: what a sync
preview can play while the engines are still working.

One FFT cross-correlation of the whole fine onset envelopes at normal speed (`lag_scores`, as
`beatsync.align.lines.envelope_lines` ranks offsets, 5.8 ms resolution; the envelopes are the ones
the engines compute anyway, so they are computed once) gives the best constant offset.
It is kept only when it stands far out of the correlation's spread (a robust z-score, and clearly
above the next best offset): measured on generated classes and a real 3-minute class, the right
song scores 29-31 and an unrelated one (at another tempo or the same) at most 5.3, so a class played at another speed, or a wrong
song, gives no estimate rather than a wrong one. Where the music is heard is then read from 1-s
windows (0.5 s apart) of the same envelopes at that offset (normalised correlation above `MUSIC_NCC`).

It is an estimate, not a result: one line, normal speed, no run-throughs or edits, no sample
precision. The engines' alignments replace it as soon as they are known.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from beatsync.align.lines import Signals, top_peaks
from beatsync.align.result import Alignment, Segment

#: the engine name of the estimate
QUICK = "quick"
#: the best offset's robust z-score must reach this ...
MIN_Z = 12.0
#: ... and beat the next best offset (0.3 s or more away) by this factor
MIN_RATIO = 1.12
#: windows whose envelopes correlate at least this well at the offset hear the music
MUSIC_NCC = 0.3
WINDOW_S = 1.0
#: music windows further apart than this are not joined into one stretch
MAX_GAP_S = 3.0


def _robust_z(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    med = float(np.median(finite))
    mad = 1.4826 * float(np.median(np.abs(finite - med))) or 1e-9
    return (values - med) / mad


def music_span(sig: Signals, offset_s: float, *, window_s: float = WINDOW_S) -> tuple[float, float] | None:
    """The stretch of the recording (dance seconds) that hears the song at ``offset_s`` (normal
    speed): from the first to the last window whose envelopes correlate (the longest run of such
    windows, gaps up to `MAX_GAP_S` joined); None when no window does."""
    fs = sig.env_rate
    a, b = sig.envelope("dance"), sig.envelope("bgm")
    n = max(1, int(round(window_s * fs)))
    lag = int(round(offset_s * fs))
    hits = []
    first, stop = max(0, lag), min(a.shape[1], lag + b.shape[1]) - n  # where both have a window
    for i0 in range(first, stop + 1, max(1, n // 2)):  # half-overlapping windows
        j0 = i0 - lag
        x = a[:, i0:i0 + n].ravel().astype(np.float64)
        y = b[:, j0:j0 + n].ravel().astype(np.float64)
        x -= x.mean()
        y -= y.mean()
        den = float(np.linalg.norm(x) * np.linalg.norm(y))
        if den > 0 and float(x @ y) / den >= MUSIC_NCC:
            hits.append(i0 / fs)
    if not hits:
        return None
    runs, start, last = [], hits[0], hits[0]
    for t in hits[1:]:
        if t - last > MAX_GAP_S:
            runs.append((start, last + window_s))
            start = t
        last = t
    runs.append((start, last + window_s))
    return max(runs, key=lambda r: r[1] - r[0])


def quick_alignment(sig: Signals) -> Alignment | None:
    """The first estimate (engine ``"quick"``, one segment at normal speed) on the recording's own
    timeline (0 = its first sample), or None when no offset is clear enough (see the module)."""
    fs = sig.env_rate
    lags, scores = lag_scores(sig.envelope("dance"), sig.envelope("bgm"), fs)
    if len(scores) < 3:
        return None
    z = _robust_z(scores)
    peaks = [p for p in top_peaks(z, 2, int(0.3 * fs)) if p >= 0]
    if not peaks:
        return None
    z_best = float(z[peaks[0]])
    z_next = float(z[peaks[1]]) if len(peaks) > 1 else 0.0
    if z_best < MIN_Z or z_best < MIN_RATIO * z_next:
        return None
    offset = float(lags[peaks[0]] / fs)
    span = music_span(sig, offset)
    if span is None:
        return None
    start = max(0.0, span[0], offset)
    end = min(sig.dance_dur, span[1], offset + sig.bgm_dur)
    if end - start < 2.0:
        return None
    seg = Segment(dance_start_s=start, dance_end_s=end, bgm_start_s=start - offset, rate=1.0, mode="speed")
    confidence = min(1.0, max(0.0, (z_best - MIN_Z) / MIN_Z))
    return Alignment(engine=QUICK, offset_s=offset, tempo_ratio=1.0, confidence=round(confidence, 3),
                     segments=[seg], diagnostics={"z": round(z_best, 2), "z_next": round(z_next, 2)})


def lag_scores(a: np.ndarray, b: np.ndarray, fs: float, *, min_overlap_s: float = 8.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(lags in frames, scores): the overlap-normalised correlation of the envelopes ``a`` (the
    recording) and ``b`` (the song) at every lag with enough overlap, as `envelope_lines` ranks it
    (lag L: recording frame i holds song frame i - L)."""
    na, nb = a.shape[1], b.shape[1]
    nfft = scipy.fft.next_fast_len(na + nb - 1)
    c = scipy.fft.irfft((scipy.fft.rfft(a, nfft, axis=1) * np.conj(scipy.fft.rfft(b, nfft, axis=1))).sum(axis=0),
                        nfft)
    lags = np.concatenate([np.arange(-(nb - 1), 0), np.arange(0, na)])
    vals = np.concatenate([c[nfft - (nb - 1):], c[:na]])
    overlap = np.minimum(na, lags + nb) - np.maximum(0, lags)
    ok = overlap >= min(min_overlap_s * fs, 0.5 * min(na, nb))
    return lags[ok], vals[ok] / np.sqrt(overlap[ok])

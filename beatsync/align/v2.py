"""The ``v2`` engine: beat-grid alignment.

1. Beat-track both recordings (dynamic programming on the onset envelope).
2. Summarise each beat by its harmony and rhythm (beat-synchronous chroma and band flux). Counting
   in beats makes the comparison independent of the playback speed, so no rate search is needed.
3. Cross-correlate the two beat sequences over the beat index (one FFT): each strong peak pairs
   dance beats with song beats; a robust line through the paired beat *times* gives offset and
   rate (so practice speed comes out of the beat grid itself).
4. Refine each candidate with fine onset-envelope correlation (a few ms), then pick and segment
   exactly as the modular engine does.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft

from beatsync.align.lines import (
    Line,
    Signals,
    assemble,
    envelope_lines,
    refine,
    robust_line,
    screen_and_refine,
    subtract,
)
from beatsync.align.result import Alignment
from beatsync.analysis import Features, local_normalize

SCREEN = (4.0, 2.0, 0.3, 0.015)
FINE = (4.0, 1.0, 0.25, 0.008)
MAX_REFINED = 3


def beat_sync(f: Features, beats_s: np.ndarray) -> np.ndarray:
    """Mean chroma and band flux over each beat interval, shape (20, n_beats - 1), normalised."""
    fr = np.clip(np.round(beats_s * f.frame_rate).astype(int), 0, f.n_frames)
    X = np.vstack([f.chroma, f.flux])
    cs = np.concatenate([np.zeros((X.shape[0], 1)), np.cumsum(X, axis=1)], axis=1)
    lens = np.maximum(np.diff(fr), 1)
    sync = (cs[:, fr[1:]] - cs[:, fr[:-1]]) / lens
    return local_normalize(sync, width=8)


def _adjust(beats: np.ndarray, factor: int) -> np.ndarray:
    """Double (factor 2) the beat grid by inserting midpoints."""
    if factor == 2 and len(beats) > 1:
        mids = 0.5 * (beats[1:] + beats[:-1])
        return np.sort(np.concatenate([beats, mids]))
    return beats


def beat_lines(sig: Signals, *, k: int = 8) -> tuple[list[Line], dict]:
    fd, fb = sig.features()
    td, bd, tg, bg = sig.beats()
    info = {"tempo_dance": round(td, 2), "tempo_bgm": round(tg, 2), "beats_dance": len(bd), "beats_bgm": len(bg)}
    if len(bd) < 8 or len(bg) < 8 or td <= 0 or tg <= 0:
        return [], info
    ratio = td / tg
    if ratio < 0.65:  # the dance grid is at half the song's tempo
        bd = _adjust(bd, 2)
        ratio *= 2
    elif ratio > 1.5:
        bg = _adjust(bg, 2)
        ratio /= 2
    if 0.7 < ratio < 1.1:
        info["tempo_ratio"] = round(float(ratio), 4)
    Sd, Sg = beat_sync(fd, bd), beat_sync(fb, bg)
    nd, ng = Sd.shape[1], Sg.shape[1]
    nfft = scipy.fft.next_fast_len(nd + ng)
    c = scipy.fft.irfft((scipy.fft.rfft(Sg, nfft, axis=1) * np.conj(scipy.fft.rfft(Sd, nfft, axis=1))).sum(axis=0), nfft)
    # c[s] = sum_i Sd[i] . Sg[i + s], shifts s in [-(nd-1), ng-1]
    shifts = np.concatenate([np.arange(-(nd - 1), 0), np.arange(0, ng)])
    vals = np.concatenate([c[nfft - (nd - 1):], c[:ng]])
    overlap = np.minimum(nd, ng - shifts) - np.maximum(0, -shifts)
    vals = np.where(overlap >= min(16, min(nd, ng) // 2), vals / np.sqrt(np.maximum(overlap, 1)), -np.inf)
    lines = []
    for _ in range(k):
        p = int(np.argmax(vals))
        if not np.isfinite(vals[p]):
            break
        s = int(shifts[p])
        vals[max(0, p - 2): p + 3] = -np.inf
        i = np.arange(max(0, -s), min(nd, ng - s))
        t, tau = bd[i], bg[i + s]
        a, r, inl = robust_line(t, tau, np.ones(len(t)), tol=0.06, min_span=8.0)
        if inl.sum() < 6 or not 0.7 < r < 1.1:
            continue
        lines.append(Line(offset=float(-a / r), rate=float(r), score=float(inl.sum())))
    info["candidates"] = len(lines)
    return lines, info


def align(dance: np.ndarray, bgm: np.ndarray, *, sr: int, signals: Signals | None = None) -> Alignment:
    """Align ``dance`` with ``bgm`` (mono, ``sr`` Hz) on their beat grids. See module docstring."""
    from beatsync.align.decide import decide

    t0 = time.perf_counter()
    sig = signals if signals is not None else Signals(dance, bgm, sr=sr)
    fd, fb = sig.features()
    lines, info = beat_lines(sig)
    # the whole-recording envelope correlation at the beat-derived rate adds the sharpest offsets
    # ... at the beat-derived rate, the tempo ratio, and normal speed (the common case, and the
    # fallback when a noisy recording's beat grid is off)
    # (a beat grid tracked at another metrical level, e.g. 2/3 of the tempo, gives a rate a few
    # percent off: scan a little around the tempo ratio too)
    rates: list[float] = []
    r0 = info.get("tempo_ratio")
    scan = [r0 * (1 + 0.005 * k) for k in range(-4, 5)] if r0 and abs(r0 - 1) > 0.01 else []
    for r in [ln.rate for ln in lines[:1]] + ([r0] if r0 else []) + [1.0] + scan:
        if 0.7 < r < 1.1 and all(abs(r / q - 1) > 0.002 for q in rates):
            rates.append(r)
    extra = sorted((e for r in rates for e in envelope_lines(sig, r, k=3)), key=lambda e: -e.score)
    for e in extra[:10]:
        if all(abs(e.offset - ln.offset) > 0.05 or abs(e.rate / ln.rate - 1) > 0.002 for ln in lines):
            lines.append(e)
    # the beat-rate lines are refined on fine onset envelopes, which do not care about pitch
    fits = screen_and_refine(sig, lines, keep=MAX_REFINED,
                             refine_one=lambda ln, fine: refine(sig, ln, method="onset", params=FINE if fine else SCREEN))
    result = assemble(sig, fits)
    # another run-through hides behind the strongest one in every correlation over the whole
    # recording: look again at what no segment explains
    claimed = [(s.dance_start_s, s.dance_end_s) for s in result.segments]
    free = sum(b - a for a, b in subtract(claimed, 0.0, sig.dance_dur))
    if result.segments and free >= 8.0:
        more = [e for r in {round(s.rate, 6) for s in result.segments}
                for e in envelope_lines(sig, r, k=3, exclude=claimed, min_overlap_s=4.0)]
        extra = [refine(sig, ln, method="onset", params=FINE) for ln in more]
        if extra:
            result = assemble(sig, fits + extra)
            lines = lines + more
    return decide("v2", result, lines, info, t0)

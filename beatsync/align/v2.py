"""The ``v2`` engine: beat-grid alignment.

1. Beat-track both recordings (dynamic programming on the onset envelope).
2. Summarise each beat by its harmony and rhythm (beat-synchronous chroma and band flux). Counting
   in beats makes the comparison independent of the playback speed, so no rate search is needed.
3. Cross-correlate the two beat sequences over the beat index (one FFT): each strong peak pairs
   dance beats with song beats; a robust line through the paired beat *times* gives offset and
   rate (so practice speed comes out of the beat grid itself). Whole-recording onset-envelope
   correlations at those rates add the sharpest offsets, and the chunk votes over the rates that
   the modular engine also uses add theirs (candidates.py).
4. The same global choice of structure as the modular engine (structure.py), then every segment is
   refined on fine onset envelopes (a few ms) and verified (segments.py).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import scipy.fft

from beatsync.align.candidates import vote_lines, wave_lines
from beatsync.align.lines import Line, Signals, envelope_lines, robust_line, top_peaks
from beatsync.align.result import Alignment
from beatsync.align.segments import REFINE_ONSET, solve
from beatsync.analysis import Features, beat_track, local_normalize, tempo_candidates
from beatsync.contract import V2


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


def beat_lines(sig: Signals, *, k: int = 8, span: tuple[float, float] | None = None,
               tempo: float | None = None) -> tuple[list[Line], dict]:
    """Lines from the beat grids: both recordings' beat-synchronous features cross-correlated over the beat
    index, each strong peak's paired beat times fitted by a line. With ``span``, only that stretch of the
    recording is beat-tracked (its own tempo: a slow run-through next to a full-speed one), at ``tempo``
    (BPM, within 3 %) if given."""
    fd, fb = sig.features()
    td, bd, tg, bg = sig.beats()
    if span is not None and tg > 0:
        a, b = (int(round(x * fd.frame_rate)) for x in span)
        lo, hi = (0.97 * tempo, 1.03 * tempo) if tempo else (0.74 * tg, 1.06 * tg)
        td, bd = beat_track(fd.onset[a:b], frame_rate=fd.frame_rate, tempo_min=lo, tempo_max=hi)
        bd = bd + a / fd.frame_rate
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
    for p in top_peaks(vals, k, 2):
        if p < 0:
            break
        s = int(shifts[p])
        i = np.arange(max(0, -s), min(nd, ng - s))
        t, tau = bd[i], bg[i + s]
        a, r, inl = robust_line(t, tau, np.ones(len(t)), tol=0.06, min_span=8.0)
        if inl.sum() < 6 or not 0.7 < r < 1.1:
            continue
        lines.append(Line(offset=float(-a / r), rate=float(r), score=float(inl.sum()), source="beats"))
    info["candidates"] = len(lines)
    return lines, info


def rates_for(lines: list[Line], info: dict) -> list[float]:
    """Rates at which to correlate the whole envelopes: the best beat line's, the tempo ratio, normal
    speed, and a little around the tempo ratio (a beat grid tracked at another metrical level gives a
    rate a few percent off)."""
    rates: list[float] = []
    r0 = info.get("tempo_ratio")
    scan = [r0 * (1 + 0.005 * k) for k in range(-4, 5)] if r0 and abs(r0 - 1) > 0.01 else []
    for r in [ln.rate for ln in lines[:1]] + ([r0] if r0 else []) + [1.0] + scan:
        if 0.7 < r < 1.1 and all(abs(r / q - 1) > 0.002 for q in rates):
            rates.append(r)
    return rates


def propose(sig: Signals, *, span: tuple[float, float] | None = None,
            explained: list[tuple[float, float]] = ()) -> tuple[list[Line], dict]:
    """Candidate lines: from the beat grids (of ``span`` of the recording only, if given: at each of its
    likeliest tempos) and from whole-recording envelope correlations at their rates (blanking what is
    ``explained``)."""
    if span is None:
        lines, info = beat_lines(sig)
    else:
        fd, _ = sig.features()
        tg = sig.beats()[2]
        a, b = (int(round(x * fd.frame_rate)) for x in span)
        lines, info = [], {}
        for tempo in tempo_candidates(fd.onset[a:b], frame_rate=fd.frame_rate, tempo_min=0.74 * tg,
                                      tempo_max=1.06 * tg) if tg > 0 else []:
            more, got = beat_lines(sig, span=span, tempo=tempo, k=4)
            lines += more
            info = info or got
    # a song whose bars repeat gives every bar's offset nearly the same onset correlation: keep more of
    # them when looking at a part of the recording (the waveform check ranks them)
    k, keep = (3, 10) if span is None else (6, 16)
    extra = sorted((e for r in rates_for(lines, info) for e in envelope_lines(sig, r, k=k, exclude=list(explained))),
                   key=lambda e: -e.score)
    out = lines + extra[:keep]
    # beats do not say whether the pitch moved with the tempo: away from normal speed, try both
    return out + [replace(ln, mode="stretch") for ln in out if abs(ln.rate - 1.0) > 0.03], info


def align(dance: np.ndarray, bgm: np.ndarray, *, sr: int, signals: Signals | None = None) -> Alignment:
    """Align ``dance`` with ``bgm`` (mono, ``sr`` Hz) on their beat grids. See module docstring."""
    from beatsync.align.decide import decide

    t0 = time.perf_counter()
    sig = signals if signals is not None else Signals(dance, bgm, sr=sr)
    lines, info = propose(sig)

    def more_lines(free, explained):
        # candidates for the stretches no chosen line explains (``free``): a run-through at another speed
        # gets its own beat grid; the chunk search over the rates finds one whose beat grid is noisy (a
        # teacher counting at another tempo); the waveform search finds music far under the noise
        return ([ln for a, b in free for ln in propose(sig, span=(a, b), explained=explained)[0]]
                + vote_lines(sig, within=free, explained=explained) + wave_lines(sig, within=free))

    # first candidates: the beat-grid lines (they give each run-through's rate) and the chunk-vote lines
    # (shared with the modular engine: they find the right bar of a song that repeats itself bar after bar)
    result = solve(sig, lines + vote_lines(sig), method_for=lambda ln: REFINE_ONSET, more_lines=more_lines)
    info["path"] = result.path
    return decide(V2, result, result.lines, info, t0)

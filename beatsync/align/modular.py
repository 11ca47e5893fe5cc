"""The ``modular`` engine: multi-feature fusion, FFT cross-correlation, sample-precise refinement.

1. Features of both recordings (onset and band flux = rhythm, chroma = harmony, MFCC = timbre),
   each locally normalised so that room, speaker and phone colouring drop out.
2. For each candidate playback rate (practice speed 0.76x-1.04x, pitch moved or kept), the
   recording is cut into overlapping chunks, each chunk is warped to the BGM's time scale and
   cross-correlated with the *whole* BGM by FFT (all lags at once, no grid search over offsets);
   the per-group normalised correlations are fused.
3. Every chunk's best peaks vote for a line (offset, rate); strong lines become candidates, the
   chunks behind each give a least-squares rate. Several lines = several run-throughs, or a
   repeated chorus.
4. Each candidate is refined on the waveforms by windowed GCC-PHAT against the BGM resampled to the
   line's rate (sample precision), or on fine onset envelopes when the pitch was kept; a robust
   line fit over the windows gives offset and rate, and the windows that agree give the segments.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft

from beatsync.align.lines import Fit, Line, Signals, assemble, envelope_lines, refine, screen_and_refine
from beatsync.align.result import Alignment
from beatsync.analysis import Features, local_normalize

#: candidate playback rates (class speed / file speed); 1.0 is always included
RATE_GRID = tuple(sorted({1.0, *np.round(np.arange(0.76, 1.045, 0.012), 4).tolist()}))
CHUNK_S = 8.0
CHUNK_HOP_S = 4.0
GROUP_WEIGHTS = {"rhythm": 0.4, "chroma": 0.35, "timbre": 0.25}

# refinement passes: (window s, hop s, max lag s, inlier tolerance s); the first pass screens every
# candidate line, the second refines the best few. A wide lag range in every pass keeps chance
# agreement rare (a window agrees by chance with probability ~ tolerance / max lag).
WAVE_SCREEN = (1.5, 1.5, 0.3, 0.005)
WAVE_FINE = (1.0, 0.5, 0.25, 0.002)
ONSET_SCREEN = (4.0, 2.0, 0.3, 0.015)
ONSET_FINE = (4.0, 0.5, 0.25, 0.008)
MAX_REFINED = 3


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    n = x.shape[-1] // k
    return x[..., : n * k].reshape(*x.shape[:-1], n, k).mean(axis=-1)


def _groups(f: Features, *, pool: int, width: int) -> dict[str, np.ndarray]:
    rhythm = np.vstack([f.onset[None, :], f.flux])
    out = {"rhythm": rhythm, "chroma": f.chroma, "timbre": f.mfcc}
    return {k: local_normalize(_pool(v, pool), width=width) for k, v in out.items()}


def _warp(x: np.ndarray, rate: float) -> np.ndarray:
    """Resample a (C, n) feature sequence from dance time to BGM time (BGM frame j <- dance frame j / rate)."""
    n = x.shape[1]
    m = int(np.floor((n - 1) * rate)) + 1
    pos = np.arange(m) / rate
    i0 = np.minimum(pos.astype(int), n - 2)
    fr = (pos - i0).astype(np.float32)
    return x[:, i0] * (1 - fr) + x[:, i0 + 1] * fr


def _peaks(c: np.ndarray, k: int, sep: int) -> list[int]:
    c = c.copy()
    out = []
    for _ in range(k):
        p = int(np.argmax(c))
        if not np.isfinite(c[p]) or c[p] <= 0:
            break
        out.append(p)
        c[max(0, p - sep): p + sep + 1] = -np.inf
    return out


def coarse_lines(fd: Features, fb: Features, *, max_lines: int = 8) -> tuple[list[Line], dict]:
    """Candidate lines from chunk-vs-whole-BGM correlation over the rate grid, strongest first."""
    pool = 2
    fps = fd.frame_rate / pool
    width = int(round(1.5 * fps))
    gd = _groups(fd, pool=pool, width=width)
    gb = _groups(fb, pool=pool, width=width)
    nb = gb["rhythm"].shape[1]
    nd = gd["rhythm"].shape[1]
    W = int(round(min(CHUNK_S, 0.5 * nb / fps, max(2.0, nd / fps / 2)) * fps))
    H = max(1, int(round(min(CHUNK_HOP_S, W / fps / 2) * fps)))
    if nb < W + 2 or nd < 4:
        return [], {"reason": "too short"}
    N = scipy.fft.next_fast_len(nb + W)
    FB = {g: scipy.fft.rfft(v, N, axis=1, workers=-1) for g, v in gb.items()}
    EB = {}
    for g, v in gb.items():
        cs = np.concatenate([[0.0], np.cumsum((v.astype(np.float64) ** 2).sum(axis=0))])
        e = cs[W:] - cs[:-W]  # energy of the BGM window starting at each lag (nb - W + 1 lags)
        EB[g] = np.maximum(e, 0.05 * np.median(e) + 1e-9)
    nlag = nb - W + 1
    peaks = []  # (variant, t_center_dance, tau_center, ncc)
    variants = []

    def group_ncc(v: np.ndarray, g: str, starts: np.ndarray) -> np.ndarray:
        chunks = np.zeros((len(starts), v.shape[0], W), np.float32)
        for j, s in enumerate(starts):
            seg = v[:, s:s + W]
            chunks[j, :, :seg.shape[1]] = seg
        ec = (chunks.astype(np.float64) ** 2).sum(axis=(1, 2)) + 1e-9
        FC = scipy.fft.rfft(chunks, N, axis=2, workers=-1)
        num = scipy.fft.irfft((np.conj(FC) * FB[g][None]).sum(axis=1), N, axis=1, workers=-1)[:, :nlag]
        return num / np.sqrt(ec[:, None] * EB[g][None, :])

    for r in RATE_GRID:
        semis = 12 * np.log2(r)
        modes = [("speed", int(round(semis)))]
        if abs(semis) >= 0.5:
            modes.append(("stretch", 0))
        m = int(np.floor((nd - 1) * r)) + 1
        starts = np.arange(0, max(1, m - W + 1), H)
        shared = sum(wgt * group_ncc(_warp(gd[g], r), g, starts) for g, wgt in GROUP_WEIGHTS.items() if g != "chroma")
        chroma_w = _warp(gd["chroma"], r)
        for mode, roll in modes:
            fused = shared + GROUP_WEIGHTS["chroma"] * group_ncc(np.roll(chroma_w, -roll, axis=0), "chroma", starts)
            vi = len(variants)
            variants.append((r, mode))
            for j, s in enumerate(starts):
                t_c = (s + W / 2) / fps / r
                for p in _peaks(fused[j], 5, int(fps)):
                    peaks.append((vi, t_c, (p + W / 2) / fps, float(fused[j, p])))
    if not peaks:
        return [], {"reason": "no peaks"}
    P = np.array(peaks)
    lines: list[Line] = []
    alive = np.ones(len(P), bool)
    bin_s = 1.0 / fps
    first_score = None
    for _ in range(max_lines):
        best = None
        for vi, (r, _mode) in enumerate(variants):
            sel = alive & (P[:, 0] == vi)
            if not sel.any():
                continue
            off = P[sel, 1] - P[sel, 2] / r
            b = np.round(off / bin_s).astype(int)
            val = np.maximum(P[sel, 3], 0)
            lo = b.min()
            acc = np.bincount(b - lo, weights=val)
            acc = np.convolve(acc, [0.5, 1.0, 0.5], mode="same")
            k = int(np.argmax(acc))
            if best is None or acc[k] > best[0]:
                best = (float(acc[k]), vi, (k + lo) * bin_s)
        if best is None:
            break
        score, vi, off = best
        if first_score is None:
            first_score = score
        elif score < 0.2 * first_score:
            break
        r, mode = variants[vi]
        sel = alive & (P[:, 0] == vi) & (np.abs(P[:, 1] - P[:, 2] / r - off) <= 1.6 * bin_s)
        t, tau = P[sel, 1], P[sel, 2]
        # one vote per chunk
        _, first = np.unique(np.round(t, 3), return_index=True)
        t, tau = t[first], tau[first]
        if len(t) < 2 and lines:
            break
        rate = r
        if len(t) >= 3 and np.ptp(t) >= 20.0:
            slope, icpt = np.polyfit(t, tau, 1)
            if 0.7 < slope < 1.1 and abs(slope / r - 1) < 0.02:
                rate = float(slope)
        offset = float(np.median(t - tau / rate))
        lines.append(Line(offset=offset, rate=rate, mode=mode, score=score))
        # retire every peak (any variant) that this line explains
        pred = (P[:, 1] - offset) * rate
        alive &= ~(np.abs(P[:, 2] - pred) < 1.0)
    return lines, {"fps": fps, "chunk_frames": W, "n_variants": len(variants), "n_peaks": len(P)}


def with_envelope_candidates(sig: Signals, lines: list[Line], *, max_total: int = 10) -> list[Line]:
    """Add the best whole-recording onset-envelope offsets at each distinct candidate rate.

    When a song repeats bar after bar, the coarse chunk votes can favour a shifted copy; the fine
    envelope correlation over the whole overlap usually ranks the true offset first.
    """
    rates: list[tuple[float, str]] = []
    for ln in lines[:3]:
        if all(abs(ln.rate / r - 1) > 0.002 or m != ln.mode for r, m in rates):
            rates.append((ln.rate, ln.mode))
    extra = [e for r, m in rates for e in envelope_lines(sig, r, mode=m, k=4)]
    out = list(lines[:max_total - min(len(extra), 6)])
    for e in sorted(extra, key=lambda x: -x.score):
        if len(out) >= max_total:
            break
        if all(abs(e.offset - ln.offset) > 0.05 or abs(e.rate / ln.rate - 1) > 0.002 for ln in out):
            out.append(e)
    return out


def refine_line(sig: Signals, line: Line, *, fine: bool) -> Fit:
    if line.mode == "speed":
        return refine(sig, line, method="wave", params=WAVE_FINE if fine else WAVE_SCREEN)
    return refine(sig, line, method="onset", params=ONSET_FINE if fine else ONSET_SCREEN)


def align(dance: np.ndarray, bgm: np.ndarray, *, sr: int, signals: Signals | None = None) -> Alignment:
    """Align ``dance`` (the class recording) with ``bgm`` (the clean song), both mono at ``sr`` Hz.

    Raises `beatsync.errors.AlignmentError` when the song is not found.
    """
    from beatsync.align.decide import decide

    t0 = time.perf_counter()
    sig = signals if signals is not None else Signals(dance, bgm, sr=sr)
    fd, fb = sig.features()
    lines, info = coarse_lines(fd, fb)
    lines = with_envelope_candidates(sig, lines)
    fits = screen_and_refine(sig, lines, refine_one=lambda ln, fine: refine_line(sig, ln, fine=fine),
                             keep=MAX_REFINED)
    result = assemble(sig, fits)
    return decide("modular", result, lines, info, t0)

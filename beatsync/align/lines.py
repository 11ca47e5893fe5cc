"""What both engines share: a candidate *line* (rate + offset), its refinement by windowed
cross-correlation, and the step from refined lines to segments, confidence and alternatives.

A line maps dance time ``t`` to BGM time ``tau = (t - offset) * rate``. Once the BGM is resampled
onto the dance time scale (by ``1 / rate``), the line becomes a pure delay, so every refinement is
a set of windowed delay estimates ``delta(t)`` followed by a robust straight-line fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.fft
import soxr

from beatsync.align.result import Alternative, Segment
from beatsync.analysis import Features, features, local_normalize, power_spectrogram, track_pair

#: frame hop (samples at the analysis rate) of the fine onset envelopes used for beat-level refinement
FINE_HOP = 128
#: number of frequency bands of the fine onset envelopes
ENV_BANDS = 6


@dataclass
class Line:
    """A hypothesis: dance time t hears BGM time (t - offset) * rate."""

    offset: float
    rate: float
    mode: str = "speed"  # or "stretch"
    score: float = 0.0  # coarse evidence (sum of chunk correlations), engine-specific scale

    def bgm_time(self, t):
        return (np.asarray(t) - self.offset) * self.rate

    def dance_time(self, tau):
        return self.offset + np.asarray(tau) / self.rate


@dataclass
class Fit:
    """A refined line with the per-window evidence behind it."""

    line: Line
    centers: np.ndarray  # window centres, dance seconds
    strength: np.ndarray  # plain normalised correlation at the peak per window (how alike, -1..1)
    inlier: np.ndarray  # bool per window
    valid: np.ndarray  # bool per window: the window maps inside the BGM
    win_s: float

    @property
    def n_inliers(self) -> int:
        return int(np.count_nonzero(self.inlier & self.valid))


class Signals:
    """Both recordings at the analysis rate, with what refinement needs cached per rate."""

    def __init__(self, dance: np.ndarray, bgm: np.ndarray, *, sr: int):
        self.sr = sr
        self.dance = np.asarray(dance, dtype=np.float32)
        self.bgm = np.asarray(bgm, dtype=np.float32)
        self.dance_dur = len(self.dance) / sr
        self.bgm_dur = len(self.bgm) / sr
        self._bgm_r: dict[float, np.ndarray] = {}
        self._env: dict[str, np.ndarray] = {}
        self._feats: tuple[Features, Features] | None = None
        self._beats: tuple[float, np.ndarray, float, np.ndarray] | None = None

    def features(self) -> tuple[Features, Features]:
        """Frame features of (dance, bgm), computed once and shared by every engine."""
        if self._feats is None:
            self._feats = (features(self.dance, sr=self.sr), features(self.bgm, sr=self.sr))
        return self._feats

    def beats(self) -> tuple[float, np.ndarray, float, np.ndarray]:
        """`track_pair` of the features (dance tempo, beats, song tempo, beats), computed once: v2 and the
        beat-grid data both use it."""
        if self._beats is None:
            self._beats = track_pair(*self.features())
        return self._beats

    def bgm_resampled(self, rate: float) -> np.ndarray:
        """The BGM played at ``rate`` (resampled by 1/rate), so one sample = 1/sr dance seconds."""
        key = round(rate, 7)
        if key not in self._bgm_r:
            if abs(rate - 1.0) < 1e-7:
                self._bgm_r[key] = self.bgm
            else:
                if len(self._bgm_r) > 2:
                    self._bgm_r.pop(next(iter(self._bgm_r)))
                self._bgm_r[key] = soxr.resample(self.bgm, self.sr, self.sr / rate, quality="HQ").astype(np.float32)
        return self._bgm_r[key]

    def envelope(self, which: str) -> np.ndarray:
        """Fine onset envelopes (hop FINE_HOP) of "dance" or "bgm": (ENV_BANDS, n), locally normalised.

        Several bands rather than one sum: a repeated bar with the same drums but another melody
        still differs in the upper bands.
        """
        if which not in self._env:
            y = self.dance if which == "dance" else self.bgm
            S = power_spectrogram(y, n_fft=1024, hop_length=FINE_HOP)
            nb = S.shape[0]
            edges = np.unique(np.geomspace(4, nb - 1, 25).astype(int))
            bands = np.add.reduceat(S, edges[:-1], axis=0)
            lb = np.log1p(1e4 * bands / max(float(bands.max()), 1e-12))
            fl = np.zeros_like(lb)
            fl[:, 1:] = np.maximum(lb[:, 1:] - lb[:, :-1], 0)
            groups = np.array_split(np.arange(fl.shape[0]), ENV_BANDS)
            env = np.stack([fl[g].mean(axis=0) for g in groups])
            self._env[which] = local_normalize(env, width=int(0.5 * self.sr / FINE_HOP))
        return self._env[which]

    def envelope_warped(self, rate: float) -> np.ndarray:
        """The BGM's envelopes moved onto the dance time scale for ``rate`` (frame k <- BGM time k * rate / fs)."""
        eb = self.envelope("bgm")
        k = np.arange(int(eb.shape[1] / rate) + 1) * rate
        x = np.arange(eb.shape[1])
        return np.stack([np.interp(k, x, row, right=0.0) for row in eb]).astype(np.float32)

    @property
    def env_rate(self) -> float:
        return self.sr / FINE_HOP


# ----------------------------------------------------------------------------- whole-recording correlation


def envelope_lines(sig: Signals, rate: float, *, mode: str = "speed", k: int = 6, sep_s: float = 0.3,
                   min_overlap_s: float = 8.0, exclude: list[tuple[float, float]] = ()) -> list[Line]:
    """The ``k`` best constant offsets at ``rate`` from one FFT cross-correlation of the whole fine
    onset envelopes (5.8 ms resolution): sharp enough to tell apart bars that repeat, which the
    coarse chunk features cannot."""
    fs = sig.env_rate
    a = sig.envelope("dance")
    if exclude:  # look only at the parts of the recording nobody explains yet
        a = a.copy()
        for t0, t1 in exclude:
            a[:, max(0, int(t0 * fs)):max(0, int(t1 * fs))] = 0.0
    b = sig.envelope_warped(rate)
    na, nb = a.shape[1], b.shape[1]
    nfft = scipy.fft.next_fast_len(na + nb - 1)
    c = scipy.fft.irfft((scipy.fft.rfft(a, nfft, axis=1) * np.conj(scipy.fft.rfft(b, nfft, axis=1))).sum(axis=0), nfft)
    # c[L] (L mod nfft) = sum_i a[i] b[i - L]; lags L in [-(nb-1), na-1]
    lags = np.concatenate([np.arange(-(nb - 1), 0), np.arange(0, na)])
    vals = np.concatenate([c[nfft - (nb - 1):], c[:na]])
    if exclude:  # frames of the recording that take part at each lag
        m = np.any(a != 0, axis=0).astype(np.float64)
        cm = np.concatenate([[0.0], np.cumsum(m)])
        overlap = cm[np.clip(lags + nb, 0, na)] - cm[np.clip(lags, 0, na)]
    else:
        overlap = np.minimum(na, lags + nb) - np.maximum(0, lags)
    ok = overlap >= min(min_overlap_s * fs, 0.5 * min(na, nb))
    vals = np.where(ok, vals / np.sqrt(np.maximum(overlap, 1)), -np.inf)
    out = []
    sep = int(sep_s * fs)
    for _ in range(k):
        p = int(np.argmax(vals))
        if not np.isfinite(vals[p]):
            break
        out.append(Line(offset=float(lags[p] / fs), rate=rate, mode=mode, score=float(vals[p])))
        vals[max(0, p - sep): p + sep + 1] = -np.inf
    return out


# ----------------------------------------------------------------------------- windowed delays


def _windowed_delays(a: np.ndarray, b: np.ndarray, shift: float | np.ndarray, starts: np.ndarray, *, n: int,
                     max_lag: int, phat: bool, band: tuple[int, int] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delay of ``a[:, s:s+n]`` against ``b`` around the predicted position ``s - shift`` for each start s.

    ``a`` and ``b`` are (channels, samples); channels are correlated separately and summed.
    ``shift`` may be one number or one per window.
    Returns (delta, quality, ncc): ``a[:, i] ~ b[:, i - shift - delta]`` in samples (fractional), a
    peak-to-sidelobe quality (peak height over the RMS of the search range), and the plain
    normalised correlation of the two windows at the peak (how alike they are, -1..1).
    """
    a = np.atleast_2d(a)
    b = np.atleast_2d(b)
    C = a.shape[0]
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (len(starts),))
    Ss = np.floor(shifts).astype(np.int64)
    fs_ = shifts - Ss
    m = n + 2 * max_lag
    nfft = scipy.fft.next_fast_len(n + m)
    deltas = np.full(len(starts), np.nan)
    qual = np.zeros(len(starts))
    ncc = np.zeros(len(starts))
    taper = np.hanning(n).astype(np.float32) if phat else np.ones(n, np.float32)
    batch = max(1, int(2**21 // (nfft * C)))  # ~16 MB per complex block: bounded memory
    for k0 in range(0, len(starts), batch):
        st = starts[k0:k0 + batch]
        A = np.zeros((len(st), C, n), np.float32)
        B = np.zeros((len(st), C, m), np.float32)
        for j, s in enumerate(st):
            A[j] = a[:, s:s + n] * taper
            lo = s - Ss[k0 + j] - max_lag
            src_lo, src_hi = max(0, lo), min(b.shape[1], lo + m)
            if src_hi > src_lo:
                B[j, :, src_lo - lo:src_hi - lo] = b[:, src_lo:src_hi]
        FA = scipy.fft.rfft(A, nfft, axis=2, workers=-1)
        FB = scipy.fft.rfft(B, nfft, axis=2, workers=-1)
        G = np.conj(FA) * FB
        if phat:
            G /= np.abs(G) + 1e-3 * (np.abs(G).mean(axis=2, keepdims=True) + 1e-20)
            if band is not None:
                G[:, :, :band[0]] = 0
                G[:, :, band[1]:] = 0
            G = G.sum(axis=1)
        else:
            na = np.sqrt((A**2).sum(axis=(1, 2))) + 1e-9
            nb = np.sqrt((B**2).sum(axis=(1, 2)) / m * n) + 1e-9
            G = G.sum(axis=1) / (na * nb)[:, None]
        c = scipy.fft.irfft(G, nfft, axis=1, workers=-1)[:, :2 * max_lag + 1]
        for j in range(len(st)):
            cj = c[j]
            p = int(np.argmax(cj))
            rms = float(np.sqrt(np.mean(cj**2))) + 1e-12
            qual[k0 + j] = cj[p] / rms
            d = 0.0
            if 0 < p < len(cj) - 1:
                y0, y1, y2 = cj[p - 1], cj[p], cj[p + 1]
                den = y0 - 2 * y1 + y2
                if den < 0:
                    d = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
            deltas[k0 + j] = max_lag - fs_[k0 + j] - (p + d)
            if phat:
                aw, bw = A[j].ravel(), B[j, :, p:p + n].ravel()
                ncc[k0 + j] = float(aw @ bw) / (float(np.sqrt((aw @ aw) * (bw @ bw))) + 1e-12)
            else:
                ncc[k0 + j] = cj[p]
    return deltas, qual, ncc


def measure(sig: Signals, line: Line, *, method: str, t_lo: float, t_hi: float, win_s: float, hop_s: float,
            max_lag_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windowed delays of the dance against the BGM predicted by ``line`` over dance time [t_lo, t_hi].

    ``method`` "wave": GCC-PHAT on the waveforms (sample precision; needs the pitch to follow the
    tempo, i.e. mode "speed"); "onset": normalised correlation of fine onset envelopes (works for
    both modes, precision of a few ms).

    Returns (centers_s, delays_s, quality, ncc, valid) with valid = the window maps inside the BGM.
    """
    if method == "wave":
        fs = sig.sr
        a = sig.dance
        b = sig.bgm_resampled(line.rate)
    else:
        fs = sig.env_rate
        a = sig.envelope("dance")
        b = sig.envelope_warped(line.rate)
    n = max(8, int(round(win_s * fs)))
    hop = max(1, int(round(hop_s * fs)))
    lo = max(0, int(round(t_lo * fs)))
    hi = min(a.shape[-1] - n, int(round(t_hi * fs)) - n)
    if hi < lo:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool)
    starts = np.arange(lo, hi + 1, hop)
    shift = line.offset * fs
    max_lag = max(2, int(round(max_lag_s * fs)))
    band = None
    if method == "wave":
        nfft = scipy.fft.next_fast_len(n + n + 2 * max_lag)
        band = (int(100 * nfft / fs), int(5000 * nfft / fs))
    deltas, qual, ncc = _windowed_delays(a, b, shift, starts, n=n, max_lag=max_lag, phat=(method == "wave"),
                                         band=band)
    centers = (starts + n / 2) / fs
    tau = line.bgm_time(centers)
    half = win_s / 2 * line.rate
    valid = (tau - half >= 0) & (tau + half <= sig.bgm_dur)
    return centers, deltas / fs, qual, ncc, valid


def robust_line(t: np.ndarray, d: np.ndarray, w: np.ndarray, *, tol: float, min_span: float = 4.0,
                rng_seed: int = 0, iters: int = 300) -> tuple[float, float, np.ndarray]:
    """Fit d = a + b * t robustly (RANSAC on pairs, then weighted least squares on the inliers).

    Returns (a, b, inlier mask). ``tol`` is the inlier distance in the units of d.
    """
    n = len(t)
    if n == 0:
        return 0.0, 0.0, np.zeros(0, bool)
    rng = np.random.default_rng(rng_seed)
    best = (-1.0, 0.0, 0.0)
    if n >= 2:
        i = rng.integers(0, n, iters)
        j = rng.integers(0, n, iters)
        ok = np.abs(t[i] - t[j]) >= min(min_span, 0.5 * (t.max() - t.min()) + 1e-9)
        i, j = i[ok], j[ok]
        if len(i):
            b = (d[j] - d[i]) / (t[j] - t[i])
            a = d[i] - b * t[i]
            res = np.abs(d[None, :] - (a[:, None] + b[:, None] * t[None, :]))
            score = ((res < tol) * w[None, :]).sum(axis=1)
            k = int(np.argmax(score))
            best = (float(score[k]), float(a[k]), float(b[k]))
    # constant-delay hypotheses (rate already right): robust when few windows agree
    for k in range(n):
        s = float(((np.abs(d - d[k]) < tol) * w).sum())
        if s > best[0] + 1e-9:
            best = (s, float(d[k]), 0.0)
    _, a, b = best
    inl = np.abs(d - (a + b * t)) < tol
    for _ in range(3):
        if inl.sum() >= 3 and np.ptp(t[inl]) > 1.0:
            W = w[inl]
            X = np.stack([np.ones(inl.sum()), t[inl]], axis=1)
            coef = np.linalg.lstsq(X * W[:, None] ** 0.5, d[inl] * W**0.5, rcond=None)[0]
            a, b = float(coef[0]), float(coef[1])
        elif inl.any():
            a, b = float(np.average(d[inl], weights=w[inl])), 0.0
        inl = np.abs(d - (a + b * t)) < tol
    return a, b, inl


def screen_and_refine(sig: Signals, lines: list[Line], *, refine_one, keep: int) -> list[Fit]:
    """Screen every candidate line cheaply, refine the ``keep`` best finely; return all fits
    (the refined ones first, duplicates of a better fit dropped).

    ``refine_one(line, fine: bool) -> Fit`` is the engine's refinement.
    """
    screened = dedupe([refine_one(ln, False) for ln in lines])
    screened.sort(key=lambda f: -fit_score(f, sig=sig))
    return dedupe([refine_one(f.line, True) for f in screened[:keep]]) + screened[keep:]


def refine(sig: Signals, line: Line, *, method: str, params: tuple[float, float, float, float]) -> Fit:
    """Refine ``line`` by windowed delays over the whole recording; ``params`` = (win_s, hop_s,
    max_lag_s, tol_s)."""
    win_s, hop_s, max_lag_s, tol_s = params
    c, d, q, ncc, valid = measure(sig, line, method=method, t_lo=0.0, t_hi=sig.dance_dur, win_s=win_s, hop_s=hop_s,
                                  max_lag_s=max_lag_s)
    if len(c) == 0:
        return Fit(line, c, ncc, np.zeros(0, bool), valid, win_s)
    use = valid & np.isfinite(d)
    w = np.clip(q - 2.0, 0.05, None)
    a, b, inl_use = robust_line(c[use], d[use], w[use], tol=tol_s)
    inl = np.zeros(len(c), bool)
    inl[np.flatnonzero(use)] = inl_use
    if inl.sum() >= 2:
        # delay a + b t: dance at t hears the predicted BGM at t - a - b t
        line = Line(offset=(line.offset + a) / (1 - b), rate=line.rate * (1 - b), mode=line.mode, score=line.score)
    return Fit(line, c, ncc, inl, valid, win_s)


# ----------------------------------------------------------------------------- verification

#: short-window waveform check: window length, lag search, null shifts (s)
VERIFY_WIN_S = 0.25
VERIFY_LAG_S = 0.025
VERIFY_NULL_SHIFTS_S = (0.31, -0.43, 0.57)
#: share of windows that must be clearly alike (beyond the null's 90th percentile)
VERIFY_MIN_STRONG = 0.2


def _short_ncc(sig: Signals, fit: Fit, t: np.ndarray, dt: float = 0.0) -> np.ndarray:
    """Best waveform correlation (within a few ms of lag) of short windows centred at dance times
    ``t`` with the song where ``fit``'s line (moved by ``dt`` s) puts it; NaN where out of range."""
    sr = sig.sr
    n = int(VERIFY_WIN_S * sr)
    lag = int(VERIFY_LAG_S * sr)
    starts = np.round((t - VERIFY_WIN_S / 2) * sr).astype(np.int64)
    ok = (starts >= 0) & (starts + n <= len(sig.dance))
    out = np.full(len(t), np.nan)
    if not ok.any():
        return out
    if fit.line.mode == "stretch":
        b = sig.bgm
        # window start s (dance) <-> song sample at the line's song time of the window centre
        shift = starts[ok] - (fit.line.bgm_time(t[ok] + dt) * sr - n / 2)
    else:
        b = sig.bgm_resampled(fit.line.rate)
        shift = np.full(int(ok.sum()), (fit.line.offset + dt) * sr)
    _, _, ncc = _windowed_delays(sig.dance, b, shift, starts[ok], n=n, max_lag=lag, phat=True)
    out[ok] = ncc
    return out


def _sub_windows(fit: Fit, centers: np.ndarray) -> np.ndarray:
    """Three short windows inside each analysis window, away from its centre (independent-ish)."""
    return (centers[:, None] + np.array([-0.5, 0.0, 0.5])[None, :] * fit.win_s * 0.6).ravel()


def verify(sig: Signals, fit: Fit, *, max_windows: int = 40) -> dict:
    """Is the song's *waveform* really in the recording along this line?

    Rhythm alone can line up two different songs at a similar tempo; waveforms cannot. Short
    windows of the recording are compared with the song where the line puts it (resampled for
    "speed", untouched for "stretch", whose pitch-kept splicing only preserves the waveform
    locally), searching a few ms of lag; the same is done at deliberately wrong places (the null).
    Returns {"true", "null", "strong", "strong_null", "ok"}: median best correlations, the share
    of windows above the null's 90th percentile (at least 0.15), and whether the line stands out.
    """
    idx = np.flatnonzero(fit.inlier & fit.valid)
    if len(idx) < 3:
        return {"true": 0.0, "null": 0.0, "ok": False}
    centers = fit.centers[idx]
    if len(centers) > max_windows:
        centers = centers[np.linspace(0, len(centers) - 1, max_windows).astype(int)]
    t = _sub_windows(fit, centers)
    on = _short_ncc(sig, fit, t)
    off = np.concatenate([_short_ncc(sig, fit, t, dt) for dt in VERIFY_NULL_SHIFTS_S])
    on, off = on[np.isfinite(on)], off[np.isfinite(off)]
    if len(on) < 3 or len(off) < 3:
        return {"true": 0.0, "null": 0.0, "ok": False}
    # a real match has many windows that are clearly alike; a chance one (same tempo, similar
    # drums) only nudges the typical window: count the windows above what chance reaches
    strong = max(0.15, float(np.percentile(off, 90)))
    frac_on, frac_off = float(np.mean(on > strong)), float(np.mean(off > strong))
    true, null = float(np.median(on)), float(np.median(off))
    ok = frac_on >= max(VERIFY_MIN_STRONG, 2.5 * frac_off) and true > null
    return {"true": round(true, 4), "null": round(null, 4), "strong": round(frac_on, 3),
            "strong_null": round(frac_off, 3), "ok": bool(ok)}


def wave_strength(sig: Signals, fit: Fit) -> np.ndarray:
    """Per analysis window: how alike the waveforms are on the line (0 where it does not agree).

    One scale for every fit, whatever its method, so that lines can be compared window by window.
    """
    out = np.zeros(len(fit.centers))
    idx = np.flatnonzero(fit.inlier & fit.valid)
    if len(idx):
        v = _short_ncc(sig, fit, _sub_windows(fit, fit.centers[idx])).reshape(len(idx), 3)
        out[idx] = np.nan_to_num(np.nanmedian(np.where(np.isfinite(v), v, np.nan), axis=1), nan=0.0) \
            if np.isfinite(v).any() else 0.0
    return np.clip(out, 0.0, None)


# ----------------------------------------------------------------------------- segments


def runs_of(fit: Fit, *, max_gap_s: float = 4.0, min_inliers: int = 3) -> list[tuple[float, float, float]]:
    """Contiguous stretches where the fit's windows agree: [(start_s, end_s, match_fraction)]."""
    idx = np.flatnonzero(fit.inlier & fit.valid)
    if len(idx) == 0:
        return []
    out = []
    group = [idx[0]]
    for k in idx[1:]:
        if fit.centers[k] - fit.centers[group[-1]] <= max_gap_s:
            group.append(k)
        else:
            out.append(group)
            group = [k]
    out.append(group)
    res = []
    half = fit.win_s / 2
    for g in out:
        if len(g) < min_inliers:
            continue
        a, b = fit.centers[g[0]] - half, fit.centers[g[-1]] + half
        inside = fit.valid & (fit.centers >= fit.centers[g[0]]) & (fit.centers <= fit.centers[g[-1]])
        res.append((float(a), float(b), len(g) / max(1, int(inside.sum()))))
    return res


def to_segment(line: Line, start: float, end: float, match: float, *, dance_dur: float, bgm_dur: float) -> Segment | None:
    """A Segment for dance [start, end] on ``line``, clipped to the video and to the BGM file."""
    lo = max(start, 0.0, float(line.dance_time(0.0)))
    hi = min(end, dance_dur, float(line.dance_time(bgm_dur)))
    if hi - lo < 0.5:
        return None
    return Segment(dance_start_s=lo, dance_end_s=hi, bgm_start_s=float(line.bgm_time(lo)), rate=line.rate,
                   mode=line.mode, match=float(match))


def subtract(ranges: list[tuple[float, float]], a: float, b: float) -> list[tuple[float, float]]:
    """[a, b] minus the union of ``ranges``."""
    out = [(a, b)]
    for r0, r1 in ranges:
        nxt = []
        for x0, x1 in out:
            if r1 <= x0 or r0 >= x1:
                nxt.append((x0, x1))
                continue
            if r0 > x0:
                nxt.append((x0, r0))
            if r1 < x1:
                nxt.append((r1, x1))
        out = nxt
    return out


def boundary_evidence(fit: Fit, sig: Signals) -> int:
    """How many of the line's music edges fall where the song file itself begins or ends (0..2).

    With a song whose sections repeat exactly, several lines explain the middle equally well;
    the one on which the music starts at the song's start (or stops at its end) inside the video
    is the natural reading.
    """
    runs = runs_of(fit)
    if not runs:
        return 0
    n = 0
    song_start = float(fit.line.dance_time(0.0))
    song_end = float(fit.line.dance_time(sig.bgm_dur))
    if song_start > 1.0 and abs(runs[0][0] - song_start) < 1.5 + fit.win_s / 2:
        n += 1
    if song_end < sig.dance_dur - 1.0 and abs(runs[-1][1] - song_end) < 1.5 + fit.win_s / 2:
        n += 1
    return n


#: how far (s) an edge may move outward when the waveforms keep matching beyond a run
EDGE_EXTEND_S = 30.0


def refine_edges(sig: Signals, fit: Fit, start: float, end: float, *, lo_limit: float = 0.0,
                 hi_limit: float = np.inf) -> tuple[float, float]:
    """Sharpen where the song starts and stops around [start, end] (edges of window-level runs).

    Short windows around each edge measure how alike the two waveforms are on the fitted line;
    the edge is where that stays below 30 % of the way from the chance level to the level just
    inside, for several windows in a row (talk over the first bars must not push the edge later).
    An edge may move outward as far as the waveforms keep matching (a noisy stretch where the
    coarser windows lost the song), up to EDGE_EXTEND_S and never past ``lo_limit``/``hi_limit``
    (another segment) or the song's own ends.
    """
    short, hop = VERIFY_WIN_S, 0.1
    reach = fit.win_s
    bgm_rms = float(np.sqrt(np.mean(sig.bgm**2))) + 1e-9

    def level(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Window centres and waveform likeness on the line (inf where the song is too quiet to tell)."""
        c = np.arange(lo + short / 2, hi - short / 2 + 1e-9, hop)
        v = np.nan_to_num(_short_ncc(sig, fit, c), nan=0.0)
        tau = fit.line.bgm_time(c)
        inside = (tau - short / 2 >= 0) & (tau + short / 2 <= sig.bgm_dur)
        # where the song itself is quiet (a soft intro) nothing can be told: count it as playing
        i0 = np.clip(((tau - short / 2) * sig.sr).astype(int), 0, len(sig.bgm))
        i1 = np.clip(((tau + short / 2) * sig.sr).astype(int), 0, len(sig.bgm))
        quiet = np.array([np.sqrt(np.mean(sig.bgm[a:b] ** 2)) if b > a else 0.0 for a, b in zip(i0, i1, strict=True)])
        return c, np.where(inside & (quiet < 0.1 * bgm_rms), np.inf, np.where(inside, v, 0.0))

    def last_quiet(v: np.ndarray, thr: float, run: int = 6) -> int | None:
        """Index of the innermost window of the innermost run of ``run`` windows below thr (v ordered outward->inward)."""
        below = v < thr
        for k in range(len(v) - run, -1, -1):
            if below[k:k + run].all():
                return k + run - 1
        return None

    song_start = float(fit.line.dance_time(0.0))
    song_end = float(fit.line.dance_time(sig.bgm_dur))
    # reference: how alike the waveforms are across the run, and by chance
    probe = np.linspace(start + short, end - short, 40) if end - start > 2 * short else np.array([])
    on = np.nan_to_num(_short_ncc(sig, fit, probe), nan=0.0) if len(probe) else np.zeros(0)
    off = np.nan_to_num(_short_ncc(sig, fit, probe, VERIFY_NULL_SHIFTS_S[0]), nan=0.0) if len(probe) else on
    if len(on) < 5 or np.median(on) <= np.median(off):
        return start, end
    null = float(np.median(off))
    thr = null + 0.3 * (float(np.median(on)) - null)
    # start: scan from a little inside the run outward (earlier)
    lo, hi = max(0.0, lo_limit, song_start, start - max(reach, EDGE_EXTEND_S)), min(end, start + 2 * reach)
    c, v = level(lo, hi)
    if len(c):
        k = last_quiet(v, thr)
        start = float(c[k] + short / 2) if k is not None else lo
    # end: scan from a little inside the run outward (later)
    lo, hi = max(start, end - 2 * reach), min(sig.dance_dur, hi_limit, song_end, end + max(reach, EDGE_EXTEND_S))
    c, v = level(lo, hi)
    if len(c):
        k = last_quiet(v[::-1], thr)
        end = float(c[::-1][k] - short / 2) if k is not None else hi
    # the song's own first and last samples are natural edges: snap to them when close
    if song_start > 0.0 and abs(start - song_start) <= reach:
        start = song_start
    if song_end < sig.dance_dur and abs(end - song_end) <= reach:
        end = song_end
    return start, end


@dataclass
class Assembled:
    segments: list[Segment]
    alternatives: list[Alternative]
    confidence: float
    evidence: dict


def claimed_mask(centers: np.ndarray, claimed: list[tuple[float, float]]) -> np.ndarray:
    m = np.zeros(len(centers), bool)
    for a, b in claimed:
        m |= (centers >= a) & (centers <= b)
    return m


def fit_score(fit: Fit, claimed: list[tuple[float, float]] = (), sig: Signals | None = None) -> float:
    """Evidence for a line on the time nobody has claimed yet.

    Each agreeing window adds how alike the two recordings are there (plain correlation at the
    found delay); each window where the line says the song should be heard but nothing agrees
    subtracts half of a typical agreeing window. A line through a repeated section that is only
    partly alike, or that predicts music where the class was silent, loses to the true one.
    """
    if len(fit.centers) == 0:
        return 0.0
    free = fit.valid & ~claimed_mask(fit.centers, list(claimed))
    inl = fit.inlier & free
    if not inl.any():
        return 0.0
    st = np.clip(fit.strength, 0.0, None)
    typical = float(np.median(st[inl]))
    score = float(st[inl].sum()) - 0.5 * typical * int(np.count_nonzero(free & ~fit.inlier))
    if sig is not None:
        score *= 1.0 + 0.1 * boundary_evidence(fit, sig)
    return score


def verdicts_true(verdicts: list[dict]) -> float:
    """Waveform similarity of the best verified line so far."""
    return max((v["true"] for v in verdicts if v.get("ok")), default=0.0)


#: candidate lines examined by `assemble` (the best by evidence)
MAX_LINES = 8


def verify_mode(sig: Signals, fit: Fit) -> tuple[Fit, dict]:
    """`verify`, and at practice speed also with the other pitch mode: keep whichever matches."""
    check = verify(sig, fit)
    if abs(fit.line.rate - 1.0) > 0.01:
        other = replace(fit, line=replace(fit.line, mode="stretch" if fit.line.mode == "speed" else "speed"))
        check2 = verify(sig, other)
        if check2["ok"] and (not check["ok"] or check2["true"] > check["true"]):
            return other, check2
    return fit, check


def dedupe(fits: list[Fit], *, tol_s: float = 0.02) -> list[Fit]:
    """Drop fits that converged onto the same line as a better one (same placement within tol_s)."""
    order = sorted(fits, key=lambda f: -f.n_inliers)
    out: list[Fit] = []
    for f in order:
        mid = float(np.median(f.centers)) if len(f.centers) else 0.0
        if all(abs(float(f.line.bgm_time(mid) - g.line.bgm_time(mid))) > tol_s * f.line.rate
               or abs(f.line.rate / g.line.rate - 1) > 0.001 for g in out):
            out.append(f)
    return out


def _smooth_evidence(sig: Signals, f: Fit, span_s: float = 2.5) -> np.ndarray:
    e = wave_strength(sig, f)
    hop = float(np.median(np.diff(f.centers))) if len(f.centers) > 1 else 1.0
    width = max(1, int(round(span_s / hop)))
    if len(e) < width:
        return e
    return np.convolve(e, np.ones(width) / width, mode="same")


def exclusive(sig: Signals, fits: list[Fit], *, ratio: float = 0.8) -> list[Fit]:
    """Each window belongs to the line(s) that explain it best.

    A line keeps an agreeing window only where its (smoothed) waveform similarity is at least
    ``ratio`` of the best other line's there: a repeated section that half-matches under another run-through
    is left to that run-through, while two placements that match equally well both keep it (and
    the choice between them shows up as an alternative).
    """
    ev = [_smooth_evidence(sig, f) if runs_of(f) else np.zeros(len(f.centers)) for f in fits]
    out = []
    for i, f in enumerate(fits):
        if len(f.centers) == 0:
            out.append(f)
            continue
        best_other = np.zeros(len(f.centers))
        for j, g in enumerate(fits):
            if j == i or len(g.centers) == 0:
                continue
            best_other = np.maximum(best_other, np.interp(f.centers, g.centers, ev[j], left=0.0, right=0.0))
        keep = ev[i] >= ratio * best_other
        out.append(replace(f, inlier=f.inlier & keep))
    return out


def assemble(sig: Signals, fits: list[Fit], *, min_match: float = 0.3, min_inliers: int = 5) -> Assembled:
    """Turn refined candidate lines into segments, alternatives and a calibrated confidence.

    Each window first belongs to the line(s) whose waveform matches best there (`exclusive`).
    Then, greedily, the line with the most evidence on unclaimed time, if its waveform really
    matches (verified against a null), claims the stretches where it agrees; the next line gets
    what is left (another run-through). Verified lines that claim nothing but explain the main
    segment's stretch nearly as well become ``alternatives``.

    Confidence = agreement inside the main segment (share of its windows that match, and how
    many) times how clearly it beats the best alternative placement of the same stretch.
    """
    # the pitch mode decides how waveforms compare: settle it first (practice speed only)
    settled = [verify_mode(sig, f)[0] if runs_of(f) and abs(f.line.rate - 1.0) > 0.01 else f
               for f in dedupe(fits)]
    fits = exclusive(sig, settled)
    claimed: list[tuple[float, float]] = []
    segments: list[Segment] = []
    seg_fit: list[Fit] = []
    verdicts: list[dict] = []
    verified: list[Fit] = []
    remaining = list(fits)
    while remaining and len(verdicts) < MAX_LINES:
        scores = [fit_score(f, claimed, sig) for f in remaining]
        k = int(np.argmax(scores))
        f = remaining.pop(k)
        if not any(r[2] >= min_match for r in runs_of(f)):
            continue
        check = verify(sig, f)
        if verified and check["true"] < 0.35 * verdicts_true(verdicts):
            # far less alike than the line already found: a chance rhythmic match, not another
            # run-through of the same recording conditions
            check = dict(check, ok=False, weak=True)
        verdicts.append({"offset_s": round(f.line.offset, 4), "rate": round(f.line.rate, 6), "mode": f.line.mode,
                         **check})
        if not check["ok"]:
            continue
        verified.append(f)
        for a, b, match in runs_of(f):
            if match < min_match:
                continue
            for x0, x1 in subtract(claimed, a, b):
                cnt = int(np.count_nonzero(f.inlier & f.valid & (f.centers >= x0) & (f.centers <= x1)))
                if cnt < min_inliers or x1 - x0 < 3.0:
                    continue
                if segments and any(min(abs(x0 - c1), abs(x1 - c0)) < 1.0 for c0, c1 in claimed):
                    # glued to a run-through with no pause: a repeated section of a song that goes
                    # on past the file's end (or began before it), not a restart of the music
                    continue
                left = max((c1 for c0, c1 in claimed if c1 <= x0 + 1e-6), default=0.0)
                right = min((c0 for c0, c1 in claimed if c0 >= x1 - 1e-6), default=sig.dance_dur)
                e0, e1 = refine_edges(sig, f, x0, x1, lo_limit=left, hi_limit=right)
                e0, e1 = max(e0, left), min(e1, right)
                seg = to_segment(f.line, e0, e1, match, dance_dur=sig.dance_dur, bgm_dur=sig.bgm_dur)
                if seg is not None:
                    segments.append(seg)
                    seg_fit.append(f)
                    claimed.append((seg.dance_start_s, seg.dance_end_s))
    segments_sorted = sorted(zip(segments, seg_fit, strict=True), key=lambda x: x[0].dance_start_s)
    if not segments_sorted:
        best = max((f.n_inliers for f in fits), default=0)
        return Assembled([], [], 0.0, {"best_inliers": best, "verification": verdicts})
    main_seg, main = max(segments_sorted, key=lambda x: x[0].dance_end_s - x[0].dance_start_s)
    span = (main_seg.dance_start_s, main_seg.dance_end_s)

    def evidence_on_span(f: Fit) -> float:
        m = f.inlier & f.valid & (f.centers >= span[0]) & (f.centers <= span[1])
        return float(np.clip(f.strength[m], 0, None).sum())

    main_ev = evidence_on_span(main) + 1e-9
    in_main = main.valid & (main.centers >= span[0]) & (main.centers <= span[1])
    main_inl = int(np.count_nonzero(main.inlier & in_main))
    used = {id(f) for f in seg_fit}
    alts: list[tuple[Alternative, int]] = []
    for f in verified:
        if id(f) in used:
            continue
        if abs(f.line.offset - main.line.offset) < 0.3 and abs(f.line.rate / main.line.rate - 1) < 0.005:
            continue
        rho = evidence_on_span(f) / main_ev
        if rho >= 0.3:
            alts.append((Alternative(offset_s=float(f.line.offset), tempo_ratio=float(f.line.rate),
                                     score=float(min(rho, 1.0))), boundary_evidence(f, sig)))
    alts.sort(key=lambda x: -x[0].score)
    uniq: list[tuple[Alternative, int]] = []
    for a, be in alts:
        if all(abs(a.offset_s - u.offset_s) > 0.3 for u, _ in uniq):
            uniq.append((a, be))
    match = main_seg.match
    c_fit = float(np.clip((match - 0.15) / 0.45, 0.0, 1.0)) * float(np.clip(main_inl / 8.0, 0.0, 1.0))
    top = uniq[0][0].score if uniq else 0.0
    c_amb = float(np.clip((1.0 - top) / 0.3, 0.0, 1.0))
    if uniq and boundary_evidence(main, sig) > uniq[0][1]:
        c_amb = max(c_amb, 0.45)  # the song's own start/end inside the video decides between them
    evidence = {"main_inliers": main_inl, "main_match": round(match, 4), "top_alternative": round(top, 4),
                "c_fit": round(c_fit, 4), "c_ambiguity": round(c_amb, 4), "verification": verdicts,
                "main_strength": round(float(np.median(main.strength[main.inlier & in_main])), 4)
                if main_inl else 0.0}
    return Assembled([s for s, _ in segments_sorted], [a for a, _ in uniq[:5]], c_fit * c_amb, evidence)

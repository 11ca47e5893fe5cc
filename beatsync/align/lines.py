"""What the engines share: the recordings with their cached analyses (`Signals`), a candidate
*line* (rate + offset), and its measurement by windowed cross-correlation.

A line maps dance time ``t`` to BGM time ``tau = (t - offset) * rate``. Once the BGM is resampled
onto the dance time scale (by ``1 / rate``), the line becomes a pure delay, so every measurement
is a set of windowed delay estimates ``delta(t)`` followed by a robust straight-line fit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft
import scipy.special
import soxr

from beatsync.analysis import Features, beat_track, features, local_normalize, project_spectrogram, track_pair

#: frame hop (samples at the analysis rate) of the fine onset envelopes used for beat-level work
FINE_HOP = 128
#: number of frequency bands of the fine onset envelopes
ENV_BANDS = 6
#: lowest and highest playback rates considered (class speed / file speed)
RATE_MIN, RATE_MAX = 0.74, 1.07
#: sample rate of the cheap waveform comparisons (detection, not precision)
LOW_SR = 8000
#: song signals are prepared for rates in steps of this (a 2-s window at 22 kHz then drifts < 1 sample)
RATE_STEP = 2e-5


@dataclass(frozen=True)
class Line:
    """A hypothesis: dance time t hears BGM time (t - offset) * rate."""

    offset: float
    rate: float
    mode: str = "speed"  # or "stretch" (tempo changed, pitch kept)
    score: float = 0.0  # evidence from the step that proposed it, step-specific scale
    #: where it came from ("votes", "envelope", "beats", "wave"); a "wave" line is already sample-exact
    source: str = ""

    def bgm_time(self, t):
        return (np.asarray(t) - self.offset) * self.rate

    def dance_time(self, tau):
        return self.offset + np.asarray(tau) / self.rate

    def same_as(self, other: Line, *, at: float, tol_s: float = 0.02) -> bool:
        """Whether ``other`` plays the song the same way around dance time ``at``: at the same place
        (within ``tol_s``), rate and (away from normal speed) pitch mode."""
        return (abs(float(self.bgm_time(at) - other.bgm_time(at))) <= tol_s * self.rate
                and abs(self.rate / other.rate - 1) <= 0.001
                and (self.mode == other.mode or abs(self.rate - 1.0) <= 0.01))


def top_peaks(x: np.ndarray, k: int, sep: int) -> np.ndarray:
    """Indices of the ``k`` highest values of ``x`` along its last axis, at least ``sep`` + 1 apart
    (the best first; greedy: each pick blanks ``sep`` samples either side). Non-finite values are
    never picked; a row with fewer than ``k`` finite peaks gets ``-1`` in the remaining places.

    ``x`` is 1-D (returns ``(k,)``) or 2-D (one search per row, returns ``(rows, k)``).
    """
    flat = np.atleast_2d(np.asarray(x, dtype=np.float64)).copy()
    rows, n = flat.shape
    out = np.full((rows, k), -1, dtype=np.int64)
    r = np.arange(rows)
    offs = np.arange(-sep, sep + 1)
    for j in range(k):
        p = np.argmax(flat, axis=1)
        ok = np.isfinite(flat[r, p])
        out[ok, j] = p[ok]
        if not ok.any():
            break
        idx = np.clip(p[:, None] + offs[None, :], 0, n - 1)
        flat[r[:, None], idx] = -np.inf
    return out[0] if np.ndim(x) == 1 else out


@dataclass(frozen=True)
class SongSide:
    """What `Signals` computes from the song alone (`song_side`): its frame features, its fine onset
    envelopes (`fine_envelope`) and its beats. Given to `Signals` when already known (a song that an
    earlier job analysed, `beatsync.songcache`), so that nothing of the song is computed again."""

    features: Features
    envelope: np.ndarray  # (ENV_BANDS, n) float32
    tempo_bpm: float
    beats_s: np.ndarray  # seconds, `beat_track` of ``features.onset``


def song_side(bgm: np.ndarray, *, sr: int) -> SongSide:
    """The song's `SongSide`: exactly what a `Signals` without one computes from it."""
    bgm = np.asarray(bgm, dtype=np.float32)
    f = features(bgm, sr=sr)
    tempo, beats = beat_track(f.onset, frame_rate=f.frame_rate)
    return SongSide(features=f, envelope=fine_envelope(bgm, sr=sr), tempo_bpm=float(tempo), beats_s=beats)


def fine_envelope(y: np.ndarray, *, sr: int) -> np.ndarray:
    """Fine onset envelopes (hop FINE_HOP) of a recording: (ENV_BANDS, n), locally normalised.

    Several bands rather than one sum: a repeated bar with the same drums but another melody
    still differs in the upper bands.
    """
    n_fft = 1024
    nb = n_fft // 2 + 1
    edges = np.unique(np.geomspace(4, nb - 1, 25).astype(int))
    bank = np.zeros((len(edges) - 1, nb), np.float32)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        bank[i, a:b] = 1.0
    bank[-1, edges[-1]:] = 1.0
    lb, _ = project_spectrogram(y, bank, n_fft=n_fft, hop_length=FINE_HOP)
    lb *= np.float32(1e4 / max(float(lb.max()), 1e-12))  # in place: an hour's bands are large
    np.log1p(lb, out=lb)
    groups = np.array_split(np.arange(lb.shape[0]), ENV_BANDS)
    env = np.zeros((ENV_BANDS, lb.shape[1]), np.float32)
    for k, g in enumerate(groups):  # the mean rise of each group's bands
        for i in g:
            env[k, 1:] += np.maximum(lb[i, 1:] - lb[i, :-1], 0)
        env[k] /= len(g)
    return local_normalize(env, width=int(0.5 * sr / FINE_HOP))


class Signals:
    """Both recordings at the analysis rate, with what the engines need cached (safe to share between
    threads: each cached item is computed once, by whichever thread asks first). ``song``: what is
    computed from the song alone, if already known (`SongSide`); the same numbers either way."""

    def __init__(self, dance: np.ndarray, bgm: np.ndarray, *, sr: int, song: SongSide | None = None):
        self.sr = sr
        self.dance = np.asarray(dance, dtype=np.float32)
        self.bgm = np.asarray(bgm, dtype=np.float32)
        self.dance_dur = len(self.dance) / sr
        self.bgm_dur = len(self.bgm) / sr
        self._cache: dict = {}
        self._locks: dict = {}
        self._lock = threading.Lock()
        self._bgm_r: dict[tuple, np.ndarray] = {}  # song signals per (kind, rate), least recently used first
        if song is not None:
            self._cache.update({("features", "bgm"): song.features, ("envelope", "bgm"): song.envelope,
                                "song_beats": (song.tempo_bpm, song.beats_s)})

    def _cached(self, key, compute):
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                value = compute()
                with self._lock:
                    self._cache[key] = value
        return self._cache[key]

    def _signal(self, which: str) -> np.ndarray:
        return self.dance if which == "dance" else self.bgm

    def features(self) -> tuple[Features, Features]:
        """Frame features of (dance, bgm), each computed once and shared by every engine."""
        return tuple(self._cached(("features", w), lambda w=w: features(self._signal(w), sr=self.sr))
                     for w in ("dance", "bgm"))

    def votes(self):
        """`beatsync.align.candidates.chunk_votes` of the features (or None), computed once: every engine
        that searches the rates over chunks shares them."""
        from beatsync.align.candidates import chunk_votes

        return self._cached("votes", lambda: chunk_votes(*self.features()))

    def beats(self) -> tuple[float, np.ndarray, float, np.ndarray]:
        """`track_pair` of the features (dance tempo, beats, song tempo, beats), computed once: v2 and the
        beat-grid data both use it."""
        return self._cached("beats", lambda: track_pair(*self.features(), song_beats=self._song_beats()))

    def _song_beats(self) -> tuple[float, np.ndarray]:
        def compute():
            fb = self.features()[1]
            return beat_track(fb.onset, frame_rate=fb.frame_rate)

        return self._cached("song_beats", compute)

    def _per_rate(self, kind: str, rate: float, compute) -> np.ndarray:
        """A song signal prepared for ``rate``: the last few of each kind are kept (each is a copy of
        the song)."""
        key = (kind, round(rate, 7))
        with self._lock:
            got = self._bgm_r.pop(key, None)
            if got is not None:
                self._bgm_r[key] = got  # most recently used last
                return got
        y = compute()
        with self._lock:
            mine = [k for k in self._bgm_r if k[0] == kind]
            for k in mine[: max(0, len(mine) - 3)]:
                del self._bgm_r[k]
            self._bgm_r[key] = y
        return y

    def bgm_resampled(self, rate: float) -> np.ndarray:
        """The BGM played at ``rate`` (resampled by 1/rate), so one sample = 1/sr dance seconds."""
        if abs(rate - 1.0) < 1e-7:
            return self.bgm
        return self._per_rate("wave", rate, lambda: soxr.resample(self.bgm, self.sr, self.sr / rate, quality="HQ")
                              .astype(np.float32))

    def envelope(self, which: str) -> np.ndarray:
        """`fine_envelope` of "dance" or "bgm", computed once."""
        return self._cached(("envelope", which), lambda: fine_envelope(self._signal(which), sr=self.sr))

    def envelope_warped(self, rate: float) -> np.ndarray:
        """The BGM's envelopes moved onto the dance time scale for ``rate`` (frame k <- BGM time k * rate / fs)."""
        eb = self.envelope("bgm")
        if abs(rate - 1.0) < 1e-9:
            return eb
        return self._per_rate("onset", rate, lambda: _warp_frames(eb, rate))

    def song_loudness(self) -> tuple[np.ndarray, float]:
        """RMS of the song per 0.25 s (frames at 4 Hz), and its median over the frames that are not silent:
        where the song itself is quiet, nothing can tell whether it plays."""
        def compute():
            n = self.sr // 4
            m = len(self.bgm) // n
            rms = np.sqrt(np.mean(self.bgm[: m * n].reshape(m, n).astype(np.float64) ** 2, axis=1))
            loud = rms[rms > 1e-4]
            return rms, float(np.median(loud)) if len(loud) else 0.0

        return self._cached("loudness", compute)

    def song_is_quiet(self, tau: np.ndarray, *, level: float = 0.1) -> np.ndarray:
        """Per BGM time: the song around it is below ``level`` times its typical loudness."""
        rms, typical = self.song_loudness()
        i = np.clip((np.asarray(tau) * 4).astype(int), 0, max(0, len(rms) - 1))
        return rms[i] < level * typical if len(rms) else np.ones(np.shape(tau), bool)

    @property
    def env_rate(self) -> float:
        return self.sr / FINE_HOP

    def low(self, which: str) -> np.ndarray:
        """The waveform of "dance" or "bgm" at LOW_SR (the band that carries most music, for cheap
        waveform comparisons)."""
        return self._cached(("low", which), lambda: soxr.resample(
            self._signal(which), self.sr, LOW_SR, quality="LQ").astype(np.float32))

    def compared(self, kind: str, rate: float) -> tuple[np.ndarray, np.ndarray, float]:
        """What a `Method` of ``kind`` compares for a line at ``rate``: (dance signal, song signal on
        the dance time scale, their sample rate)."""
        if kind == "wave":
            return self.dance, self.bgm_resampled(rate), self.sr
        if kind == "spectrum":
            fd, fb = self.features()
            a = self._cached("spectrum", lambda: local_normalize(fd.logmel, width=int(fd.frame_rate)))
            b = self._cached("spectrum_bgm", lambda: local_normalize(fb.logmel, width=int(fb.frame_rate)))
            if abs(rate - 1.0) > 1e-9:
                b = self._per_rate("spectrum", rate, lambda: _warp_frames(b, rate))
            return a, b, fd.frame_rate
        if kind == "wave_low":
            b = self.low("bgm")
            if abs(rate - 1.0) > 1e-7:
                b = self._per_rate("wave_low", rate, lambda: soxr.resample(b, LOW_SR, LOW_SR / rate, quality="LQ")
                                   .astype(np.float32))
            return self.low("dance"), b, LOW_SR
        return self.envelope("dance"), self.envelope_warped(rate), self.env_rate

    def dance_samples(self, kind: str) -> int:
        """Length of the dance signal that a `Method` of ``kind`` compares (samples or frames)."""
        return self.compared(kind, 1.0)[0].shape[-1]

    def placed(self, kind: str, line: Line, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float,
                                                                                  np.ndarray, float]:
        """Windows of ``n`` samples at ``starts`` of the dance signal of ``kind``, and where ``line`` puts
        the song for each: (dance signal, song signal, sample rate, per-window shift for `windowed_delays`,
        dance seconds per song-signal second).

        The song signal is prepared for a rate rounded to RATE_STEP, so that lines a hair apart share it
        (within a window the difference is a fraction of a sample), and each window is placed where the
        line puts its centre. A pitch-kept line keeps the song's waveform only locally: its waveform
        windows are compared with the song itself, not resampled.
        """
        local = kind in ("wave", "wave_low") and line.mode == "stretch"
        r_b = 1.0 if local else round(line.rate / RATE_STEP) * RATE_STEP
        a, b, fs = self.compared(kind, r_b)
        centre = (np.asarray(starts) + n / 2) / fs
        shift = np.asarray(starts) + n / 2 - line.bgm_time(centre) * fs / r_b
        return a, b, fs, shift, r_b / line.rate


def _warp_frames(x: np.ndarray, rate: float) -> np.ndarray:
    """A (channels, n) frame sequence of the song moved onto the dance time scale for ``rate`` (frame k <-
    song frame k * rate), linearly interpolated, zero past the end."""
    k = np.arange(int(x.shape[1] / rate) + 1) * rate
    i = np.arange(x.shape[1])
    return np.stack([np.interp(k, i, row, right=0.0) for row in x]).astype(np.float32)


# ----------------------------------------------------------------------------- whole-recording correlation


def envelope_lines(sig: Signals, rate: float, *, mode: str = "speed", k: int = 6, sep_s: float = 0.3,
                   min_overlap_s: float = 8.0, exclude: list[tuple[float, float]] = ()) -> list[Line]:
    """The ``k`` best constant offsets at ``rate`` from one FFT cross-correlation of the whole fine
    onset envelopes (5.8 ms resolution): sharp enough to tell apart bars that repeat, which the
    coarse chunk features cannot. ``exclude`` blanks stretches of the recording (already explained)."""
    fs = sig.env_rate
    a = sig.envelope("dance")
    if exclude:
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
    return [Line(offset=float(lags[p] / fs), rate=rate, mode=mode, score=float(vals[p]), source="envelope")
            for p in top_peaks(vals, k, int(sep_s * fs)) if p >= 0]


# ----------------------------------------------------------------------------- windowed delays


@dataclass
class Delays:
    """Per-window results of `windowed_delays` (all in samples of the signals compared)."""

    delta: np.ndarray  # a[:, i] ~ b[:, i - shift - delta]: the delay at the correlation peak (fractional)
    quality: np.ndarray  # peak height over the RMS of the correlation over the search range
    ncc: np.ndarray  # plain normalised correlation of the two windows at the peak (how alike, -1..1)
    curve: np.ndarray | None  # (windows, 2 * max_lag + 1): the correlation at every lag searched


def windowed_delays(a: np.ndarray, b: np.ndarray, shift: float | np.ndarray, starts: np.ndarray, *, n: int,
                    max_lag: int, phat: bool, band: tuple[int, int] | None = None,
                    keep_curves: bool = False, beta: float = 1.0) -> Delays:
    """Delay of ``a[:, s:s+n]`` against ``b`` around the predicted position ``s - shift`` for each start s.

    ``a`` and ``b`` are (channels, samples); channels are correlated separately and summed.
    ``shift`` may be one number or one per window. ``phat`` whitens the cross-spectrum (GCC-PHAT:
    a sharp peak for a copy of the same waveform), restricted to FFT bins ``band`` if given; ``beta``
    below 1 whitens only partly (magnitude ** (1 - beta) kept: timing and spectral shape both count).
    """
    a = np.atleast_2d(a)
    b = np.atleast_2d(b)
    C = a.shape[0]
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (len(starts),))
    Ss = np.floor(shifts).astype(np.int64)
    fs_ = shifts - Ss
    m = n + 2 * max_lag
    L = 2 * max_lag + 1
    nfft = scipy.fft.next_fast_len(n + m)
    out = Delays(np.full(len(starts), np.nan), np.zeros(len(starts)), np.zeros(len(starts)),
                 np.zeros((len(starts), L), np.float32) if keep_curves else None)
    # lag index p <-> delay max_lag - p (minus the fractional part of the shift)
    taper = np.hanning(n).astype(np.float32) if phat else np.ones(n, np.float32)
    batch = max(1, int(2**21 // (nfft * C)))  # ~16 MB per complex block: bounded memory
    for k0 in range(0, len(starts), batch):
        st = starts[k0:k0 + batch]
        nb_ = len(st)
        A = np.zeros((nb_, C, n), np.float32)
        B = np.zeros((nb_, C, m), np.float32)
        for j, s in enumerate(st):
            A[j] = a[:, s:s + n] * taper
            lo = s - Ss[k0 + j] - max_lag
            src_lo, src_hi = max(0, lo), min(b.shape[1], lo + m)
            if src_hi > src_lo:
                B[j, :, src_lo - lo:src_hi - lo] = b[:, src_lo:src_hi]
        FA = scipy.fft.rfft(A, nfft, axis=2, workers=-1)
        FB = scipy.fft.rfft(B, nfft, axis=2, workers=-1)
        G = np.conj(FA) * FB
        del FA, FB
        if phat:
            mag = np.abs(G) + 1e-3 * (np.abs(G).mean(axis=2, keepdims=True) + 1e-20)
            G /= mag if beta == 1.0 else mag**beta
            if band is not None:
                G[:, :, :band[0]] = 0
                G[:, :, band[1]:] = 0
            G = G.sum(axis=1)
        else:
            na = np.sqrt((A**2).sum(axis=(1, 2))) + 1e-9
            nb = np.sqrt((B**2).sum(axis=(1, 2)) / m * n) + 1e-9
            G = G.sum(axis=1) / (na * nb)[:, None]
        c = scipy.fft.irfft(G, nfft, axis=1, workers=-1)[:, :L]
        del G
        rows = np.arange(nb_)
        p = np.argmax(c, axis=1)
        pk = c[rows, p]
        sl = slice(k0, k0 + nb_)
        out.quality[sl] = pk / (np.sqrt(np.mean(c**2, axis=1)) + 1e-12)
        inner = (p > 0) & (p < L - 1)
        pc = np.clip(p, 1, L - 2)
        y0, y1, y2 = c[rows, pc - 1], c[rows, pc], c[rows, pc + 1]
        den = y0 - 2 * y1 + y2
        d = np.where(inner & (den < 0), np.clip(0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), -0.5, 0.5), 0.0)
        out.delta[sl] = max_lag - fs_[sl] - (p + d)
        if keep_curves:
            out.curve[sl] = c
        if phat:  # how alike the two windows are at the found delay (plain correlation)
            win = np.lib.stride_tricks.sliding_window_view(B, n, axis=2)  # (batch, C, L, n)
            bw = win[rows, :, p, :]  # (batch, C, n)
            num = np.einsum("jcn,jcn->j", A, bw)
            den_ = np.sqrt(np.einsum("jcn,jcn->j", A, A) * np.einsum("jcn,jcn->j", bw, bw)) + 1e-12
            out.ncc[sl] = num / den_
        else:
            out.ncc[sl] = pk
    return out


@dataclass
class Fit:
    """A line measured window by window over a span of the recording."""

    line: Line
    centers: np.ndarray  # window centres, dance seconds
    resid: np.ndarray  # measured delay minus the line's, seconds (NaN where not measured)
    strength: np.ndarray  # plain normalised correlation at the peak per window (how alike, -1..1)
    z: np.ndarray  # correlation at the line's delay as a z-score over the window's lags (evidence)
    inlier: np.ndarray  # bool per window: the measured delay lies on the line
    valid: np.ndarray  # bool per window: its centre maps inside the BGM
    win_s: float
    method: str
    tol_s: float
    #: (windows, lags) correlation around the measured line, sampled at ``fs``, centre ``max_lag`` (for
    #: envelopes and spectra: normalised, -1..1; for waveforms whitened)
    curves: np.ndarray | None = None
    fs: float = 0.0
    max_lag: int = 0
    measured: Line | None = None  # the line the windows were placed on (``line`` is the fitted one)

    @property
    def n_inliers(self) -> int:
        return int(np.count_nonzero(self.inlier & self.valid))

    def select(self, keep: np.ndarray) -> Fit:
        return replace(self, centers=self.centers[keep], resid=self.resid[keep], strength=self.strength[keep],
                       z=self.z[keep], inlier=self.inlier[keep], valid=self.valid[keep],
                       curves=None if self.curves is None else self.curves[keep])


@dataclass(frozen=True)
class Method:
    """How windows are compared: ``kind`` "wave" (GCC-PHAT on the waveforms: sample precision; needs
    the pitch to follow the tempo, mode "speed"), "wave_low" (the same on the waveforms at LOW_SR: a
    cheap detector), "onset" (normalised correlation of fine onset envelopes: both modes, a few ms) or
    "spectrum" (of log-mel spectrograms frame by frame: where the pitch was kept, the spectrum of every
    moment is the song's, so it tells sections apart that share a beat); window length, hop, lag search
    and inlier tolerance in seconds."""

    kind: str
    win_s: float
    hop_s: float
    max_lag_s: float
    tol_s: float


def valid_span(sig: Signals, line: Line, *, margin_s: float = 0.0) -> tuple[float, float]:
    """Dance times over which ``line`` maps inside the song (and the recording)."""
    lo = max(0.0, float(line.dance_time(0.0)) - margin_s)
    hi = min(sig.dance_dur, float(line.dance_time(sig.bgm_dur)) + margin_s)
    return lo, hi


def measure(sig: Signals, line: Line, method: Method, *, span: tuple[float, float] | None = None,
            max_windows: int | None = None, centers: np.ndarray | None = None) -> Fit:
    """Windowed delays of the dance against the BGM predicted by ``line`` over dance times ``span``
    (default: wherever the line maps inside the song). Window *centres* lie on a grid of
    ``method.hop_s`` (at ``(k + 1/2) * hop_s``), so that fits of different lines and methods compare
    window by window. With ``max_windows``, a long span is sampled evenly by at most that many windows.
    ``centers`` measures just the windows centred there instead. ``inlier`` is relative to ``line`` itself
    (see `refit`)."""
    fs = sig.compared(method.kind, 1.0)[2]
    lo_s, hi_s = span if span is not None else valid_span(sig, line, margin_s=method.win_s / 2)
    n = max(8, int(round(method.win_s * fs)))
    hop = method.hop_s
    first = int(np.ceil(max(lo_s, method.win_s / 2) / hop - 0.5 - 1e-9))
    last = int(np.floor(min(hi_s, sig.dance_dur - method.win_s / 2) / hop - 0.5 + 1e-9))
    k = np.arange(max(first, 0), last + 1)
    mids = (k + 0.5) * hop if centers is None else np.asarray(centers, dtype=np.float64)
    starts = np.round((mids - method.win_s / 2) * fs).astype(np.int64)
    starts = starts[(starts >= 0) & (starts + n <= sig.dance_samples(method.kind))]
    if max_windows is not None and len(starts) > max_windows:
        starts = starts[np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(int))]
    empty = np.zeros(0)
    if len(starts) == 0:
        return Fit(line, empty, empty, empty, empty, np.zeros(0, bool), np.zeros(0, bool), method.win_s,
                   method.kind, method.tol_s)
    max_lag = max(2, int(round(method.max_lag_s * fs)))
    band = None
    phat = method.kind in ("wave", "wave_low")
    if phat:
        nfft = scipy.fft.next_fast_len(n + n + 2 * max_lag)
        band = (int(100 * nfft / fs), int(min(5000, 0.45 * fs) * nfft / fs))
    a, b, fs, shift, scale = sig.placed(method.kind, line, starts, n)
    dl = windowed_delays(a, b, shift, starts, n=n, max_lag=max_lag, phat=phat, band=band, keep_curves=True)
    centers = (starts + n / 2) / fs
    resid = dl.delta / fs * scale
    tau = line.bgm_time(centers)
    valid = (tau >= 0) & (tau <= sig.bgm_dur)  # at least half the window hears the song
    zt = max(1, int(round(method.tol_s * fs)))
    z = standardised(dl.curve)[:, max_lag - zt:max_lag + zt + 1].max(axis=1)
    inlier = np.isfinite(resid) & (np.abs(resid) < method.tol_s)
    return Fit(line, centers, resid, dl.ncc, z, inlier, valid, method.win_s, method.kind, method.tol_s,
               curves=dl.curve, fs=fs, max_lag=max_lag, measured=line)


def standardised(curves: np.ndarray) -> np.ndarray:
    """Correlation curves as z-scores over their lags (row by row)."""
    c = np.asarray(curves, dtype=np.float64)
    return (c - c.mean(axis=1, keepdims=True)) / (c.std(axis=1, keepdims=True) + 1e-12)


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
    close = np.abs(d[:, None] - d[None, :]) < tol
    s = (close * w[None, :]).sum(axis=1)
    k = int(np.argmax(s))
    if s[k] > best[0] + 1e-9:
        best = (float(s[k]), float(d[k]), 0.0)
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


def refit(fit: Fit, *, keep_rate: bool = False) -> Fit:
    """The straight line through the windows of ``fit`` that agree (robust), with every window's
    residual, inlier flag and z-score recomputed for that line. ``keep_rate`` fits the offset only."""
    use = fit.valid & np.isfinite(fit.resid)
    if use.sum() < 2:
        return fit
    t, d = fit.centers[use], fit.resid[use]
    w = np.clip(np.nan_to_num(fit.z[use], nan=0.0) - 2.0, 0.05, None)  # clearer peaks weigh more
    if keep_rate:
        close = np.abs(d[:, None] - d[None, :]) < fit.tol_s
        k = int(np.argmax((close * w[None, :]).sum(axis=1)))
        inl = np.abs(d - d[k]) < fit.tol_s
        a, b = float(np.average(d[inl], weights=w[inl])), 0.0
    else:
        a, b, inl = robust_line(t, d, w, tol=fit.tol_s)
    if inl.sum() < 2:
        return fit
    old = fit.line
    # delay a + b t: dance at t hears the predicted BGM at t - a - b t
    line = replace(old, offset=(old.offset + a) / (1 - b), rate=old.rate * (1 - b))
    shift = a + b * fit.centers  # the new line's delay relative to the old, per window
    resid = fit.resid - shift
    return replace(fit, line=line, resid=resid, z=z_at(fit, line),
                   inlier=np.isfinite(resid) & (np.abs(resid) < fit.tol_s))


def delay_between(old: Line, new: Line, t: np.ndarray) -> np.ndarray:
    """The delay (s) that ``new`` predicts at dance times ``t``, measured as `Fit.resid` of ``old``."""
    return np.asarray(t) - old.dance_time(new.bgm_time(t))


#: a waveform window agrees with a line only if the two waveforms are also alike there (plain normalised
#: correlation at the found delay): whitened correlation alone lines up any sharp sounds on the same beat
#: grid (claps, a metronome) with the song's drums; unrelated sounds reach about 0.01
WAVE_ALIKE = 0.03


def agreeing(fit: Fit) -> np.ndarray:
    """The windows of ``fit`` that agree with its line: on the line, and for waveforms also alike."""
    ok = fit.inlier & fit.valid
    if fit.method in ("wave", "wave_low"):
        ok &= fit.strength >= WAVE_ALIKE
    return ok


def significance(fit: Fit, *, trials: float) -> float:
    """-log10 of the chance that as many windows of ``fit`` agree with its line (`agreeing`) by accident:
    where nothing matches, a window's delay falls within the tolerance with probability tolerance / lag
    range; the line was fitted through two of the windows and chosen among ``trials`` tries."""
    use = fit.valid & np.isfinite(fit.resid)
    n = int(use.sum())
    agree = agreeing(fit) & use
    k = int(np.count_nonzero(agree))
    if n == 0 or k <= 2 or fit.max_lag <= 0:
        return 0.0
    p0 = min(1.0, (2 * fit.tol_s * fit.fs + 1) / (2 * fit.max_lag + 1))
    with np.errstate(divide="ignore"):  # P(X >= k - 2) = P(X > k - 3), binomial (n - 2, p0)
        logp = float(np.log(scipy.special.bdtrc(k - 3, n - 2, p0))) / np.log(10)
    spread = -logp - np.log10(max(1.0, trials * n * n))
    # a short run-through on a line that maps into the song over a long stretch: its agreeing windows
    # come in one run, which chance makes only as often as n * p0 ** (run - 2)
    run = longest_run(agree[use])
    packed = -(run - 2) * np.log10(p0) - np.log10(max(1.0, trials * n)) if run > 2 else 0.0
    return float(max(0.0, spread, packed))


def longest_run(flags: np.ndarray) -> int:
    """The most True values in a stretch of ``flags`` with no two False in a row."""
    best = cur = 0
    miss = 0
    for f in flags:
        if f:
            cur += 1
            miss = 0
        else:
            miss += 1
            if miss >= 2:
                cur = 0
        best = max(best, cur)
    return best


def _at(fit: Fit, curves: np.ndarray, line: Line) -> np.ndarray:
    tol = max(1, int(round(fit.tol_s * fit.fs)))
    shift = delay_between(fit.measured, line, fit.centers)
    centre = fit.max_lag - np.round(shift * fit.fs).astype(int)  # lag index p <-> delay max_lag - p
    idx = np.clip(centre[:, None] + np.arange(-tol, tol + 1)[None, :], 0, curves.shape[1] - 1)
    v = np.take_along_axis(curves, idx, axis=1).max(axis=1).astype(np.float64)
    v[(centre < 0) | (centre >= curves.shape[1])] = 0.0
    return v


def z_at(fit: Fit, line: Line) -> np.ndarray:
    """Each window's correlation z-score where ``line`` puts the song (best within the inlier tolerance;
    0 outside the lags measured)."""
    return fit.z if fit.curves is None or fit.measured is None else _at(fit, standardised(fit.curves), line)


def corr_at(fit: Fit, line: Line) -> np.ndarray:
    """Each window's correlation itself (normalised, for envelopes and spectra) where ``line`` puts the
    song (best within the inlier tolerance; 0 outside the lags measured)."""
    return fit.strength if fit.curves is None or fit.measured is None else _at(fit, fit.curves, line)


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

"""Candidate lines: where (offset) and how fast (rate, pitch mode) the song may play in the recording.

Three sources, each good where the others are weak:

* `chunk_votes` + `hough_lines` (coarse, any rate, any structure): the recording is cut into
  overlapping chunks; each chunk, warped to the song's time scale for every rate of a grid (pitch
  moved or kept), is cross-correlated with the *whole* song by FFT on fused, locally normalised
  features (rhythm, harmony, timbre). Every chunk's best peaks vote; a Hough transform over fine
  rates and offsets turns the votes into lines. A run-through, an edit piece, a repeated section:
  each is a line with the chunks behind it.
* `envelope_lines` (lines.py): one correlation of the whole fine onset envelopes at a given rate,
  sharp enough to tell apart bars that repeat.
* `wave_lines`: whole-recording correlation of frame-whitened waveforms at normal speed: finds the
  song under noise and talk far louder than it (a copy of the same waveform adds up coherently),
  where features fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from beatsync.align.lines import LOW_SR, RATE_MAX, RATE_MIN, Line, Signals, envelope_lines, top_peaks
from beatsync.analysis import Features, local_normalize

#: candidate playback rates of the chunk search (class speed / file speed); 1.0 is always included.
#: A chunk of CHUNK_S warped at a grid rate within half a step of the true one is misplaced by at most
#: CHUNK_S / 2 * 0.009 = 36 ms at its ends, half a pooled feature frame (POOL frames of 23 ms).
RATE_STEP_GRID = 0.018
RATE_GRID = tuple(sorted({1.0, *np.round(np.arange(0.75, 1.0621, RATE_STEP_GRID), 4).tolist()}))
POOL = 3
CHUNK_S = 8.0
CHUNK_HOP_S = 4.0
GROUP_WEIGHTS = {"rhythm": 0.4, "chroma": 0.35, "timbre": 0.25}
#: peaks kept per chunk and rate variant
PEAKS_PER_CHUNK = 5
#: chunks correlated at a time (bounded memory on long recordings)
CHUNK_BATCH = 48


@dataclass
class Votes:
    """The best peaks of every chunk at every rate variant: chunk centre ``t`` (dance s), the song time
    ``tau`` there, the fused correlation ``score``, the ``variant`` index into ``variants`` ((rate, mode))
    and the ``chunk`` index."""

    t: np.ndarray
    tau: np.ndarray
    score: np.ndarray
    variant: np.ndarray
    chunk: np.ndarray
    variants: list[tuple[float, str]]
    bin_s: float  # time resolution of the correlation (s)

    def __len__(self) -> int:
        return len(self.t)

    def where(self, keep: np.ndarray) -> Votes:
        return Votes(self.t[keep], self.tau[keep], self.score[keep], self.variant[keep], self.chunk[keep],
                     self.variants, self.bin_s)


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


def rate_variants(rates=RATE_GRID) -> list[tuple[float, str, int]]:
    """(rate, mode, chroma roll in semitones) for every rate: pitch moved with the tempo ("speed", the
    harmony shifted by the rounded number of semitones) and, away from normal speed, pitch kept
    ("stretch")."""
    out = []
    for r in rates:
        semis = 12 * np.log2(r)
        out.append((r, "speed", int(round(semis))))
        if abs(semis) >= 0.5:
            out.append((r, "stretch", 0))
    return out


class _SongSide:
    """The song's feature groups in the frequency domain, and its energy at every lag (computed once)."""

    def __init__(self, gb: dict[str, np.ndarray], W: int):
        self.nb = gb["rhythm"].shape[1]
        self.W = W
        self.N = scipy.fft.next_fast_len(self.nb + W)
        self.nlag = self.nb - W + 1
        self.F = {g: scipy.fft.rfft(v, self.N, axis=1, workers=-1) for g, v in gb.items()}
        self.E = {}
        for g, v in gb.items():
            cs = np.concatenate([[0.0], np.cumsum((v.astype(np.float64) ** 2).sum(axis=0))])
            e = cs[W:] - cs[:-W]  # energy of the song window starting at each lag
            self.E[g] = np.maximum(e, 0.05 * np.median(e) + 1e-9)

    def ncc(self, v: np.ndarray, g: str, starts: np.ndarray) -> np.ndarray:
        """Normalised correlation of the chunks ``v[:, s:s+W]`` with the song at every lag: (chunks, lags)."""
        W = self.W
        chunks = np.zeros((len(starts), v.shape[0], W), np.float32)
        for j, s in enumerate(starts):
            seg = v[:, s:s + W]
            chunks[j, :, :seg.shape[1]] = seg
        ec = (chunks.astype(np.float64) ** 2).sum(axis=(1, 2)) + 1e-9
        FC = scipy.fft.rfft(chunks, self.N, axis=2, workers=-1)
        num = scipy.fft.irfft((np.conj(FC) * self.F[g][None]).sum(axis=1), self.N, axis=1, workers=-1)[:, :self.nlag]
        return (num / np.sqrt(ec[:, None] * self.E[g][None, :])).astype(np.float32)


def chunk_votes(fd: Features, fb: Features, *, rates=RATE_GRID, pool: int = POOL) -> Votes | None:
    """Every chunk of the recording against the whole song, at every rate variant: the best peaks.

    Features are pooled by ``pool`` frames (about 70 ms) and locally normalised over 1.5 s, so that
    room, speaker and phone colouring drop out. Work and memory are linear in the recording's length
    (chunks are correlated CHUNK_BATCH at a time).
    """
    fps = fd.frame_rate / pool
    width = int(round(1.5 * fps))
    gd = _groups(fd, pool=pool, width=width)
    gb = _groups(fb, pool=pool, width=width)
    nb = gb["rhythm"].shape[1]
    nd = gd["rhythm"].shape[1]
    W = int(round(min(CHUNK_S, 0.5 * nb / fps, max(2.0, nd / fps / 2)) * fps))
    H = max(1, int(round(min(CHUNK_HOP_S, W / fps / 2) * fps)))
    if nb < W + 2 or nd < 4:
        return None
    song = _SongSide(gb, W)
    variants = rate_variants(rates)
    cols: list[list] = [[], [], [], [], []]  # t, tau, score, variant, chunk
    sep = int(fps)  # peaks at least a second apart
    for r in sorted({v[0] for v in variants}):
        mine = [(i, mode, roll) for i, (rv, mode, roll) in enumerate(variants) if rv == r]
        warped = {g: _warp(gd[g], r) for g in gd}
        m = warped["rhythm"].shape[1]
        starts_all = np.arange(0, max(1, m - W + 1), H)
        for b0 in range(0, len(starts_all), CHUNK_BATCH):
            starts = starts_all[b0:b0 + CHUNK_BATCH]
            shared = sum(w * song.ncc(warped[g], g, starts) for g, w in GROUP_WEIGHTS.items() if g != "chroma")
            t_c = (starts + W / 2) / fps / r
            for vi, _mode, roll in mine:
                fused = shared + GROUP_WEIGHTS["chroma"] * song.ncc(np.roll(warped["chroma"], -roll, axis=0),
                                                                     "chroma", starts)
                fused = np.where(fused > 0, fused, -np.inf)
                pk = top_peaks(fused, PEAKS_PER_CHUNK, sep)
                rows, cols_ = np.nonzero(pk >= 0)
                p = pk[rows, cols_]
                cols[0].append(t_c[rows])
                cols[1].append((p + W / 2) / fps)
                cols[2].append(fused[rows, p])
                cols[3].append(np.full(len(p), vi))
                cols[4].append(b0 + rows)
    if not cols[0]:
        return None
    t, tau, score, var, chunk = (np.concatenate(c) for c in cols)
    return Votes(t, tau, score.astype(np.float64), var.astype(np.int64), chunk.astype(np.int64),
                 [(r, mode) for r, mode, _ in variants], 1.0 / fps)


#: relative rate steps tried around each grid rate by the Hough transform (covers half a grid step)
HOUGH_RATE_STEPS = np.linspace(-0.0096, 0.0096, 13)


def _hough_best(v: Votes) -> tuple[float, int, float, float] | None:
    """The strongest (score, variant, rate, offset) cell: votes of one variant accumulated over fine
    rates around its grid rate and offset bins of one correlation frame (lightly smoothed)."""
    best = None
    alive_score = np.maximum(v.score, 0.0)
    for vi in np.unique(v.variant):
        sel = v.variant == vi
        r0, _mode = v.variants[vi]
        t, tau, w = v.t[sel], v.tau[sel], alive_score[sel]
        for dr in HOUGH_RATE_STEPS:
            r = r0 * (1 + dr)
            b = np.round((t - tau / r) / v.bin_s).astype(np.int64)
            lo = b.min()
            acc = np.bincount(b - lo, weights=w)
            if len(acc) >= 3:
                acc = np.convolve(acc, [0.5, 1.0, 0.5], mode="same")
            k = int(np.argmax(acc))
            if best is None or acc[k] > best[0]:
                best = (float(acc[k]), int(vi), float(r), float((k + lo) * v.bin_s))
    return best


def hough_lines(votes: Votes, *, max_lines: int = 16, min_chunks: int = 2, min_share: float = 0.03) -> list[Line]:
    """Lines from the chunk votes, strongest first: take the best cell, fit its votes, retire every vote
    it explains (at any rate variant), repeat. A line needs votes from ``min_chunks`` chunks and at
    least ``min_share`` of the first line's score (a short edit piece is a small share of a long take)."""
    v = votes
    lines: list[Line] = []
    first = None
    while len(v) and len(lines) < max_lines:
        best = _hough_best(v)
        if best is None or best[0] <= 0:
            break
        score, vi, rate, off = best
        first = first if first is not None else score
        if score < min_share * first:
            break
        mode = v.variants[vi][1]
        sel = (v.variant == vi) & (np.abs(v.t - v.tau / rate - off) <= 1.6 * v.bin_s)
        t, tau, ch = v.t[sel], v.tau[sel], v.chunk[sel]
        _, one = np.unique(ch, return_index=True)  # one vote per chunk
        t, tau = t[one], tau[one]
        pred = (v.t - off) * rate
        explained = np.abs(v.tau - pred) < 1.0
        v = v.where(~explained)
        if len(t) < min_chunks:
            continue
        if len(t) >= 3 and np.ptp(t) >= 20.0:  # long enough to measure its own rate
            slope, _ = np.polyfit(t, tau, 1)
            if RATE_MIN < slope < RATE_MAX and abs(slope / rate - 1) < 0.01:
                rate = float(slope)
        off = float(np.median(t - tau / rate))
        lines.append(Line(offset=off, rate=rate, mode=mode, score=score, source="votes"))
    return lines


def rates_of(lines: list[Line], *, n: int = 3) -> list[tuple[float, str]]:
    """The distinct (rate, mode) of the first ``n`` lines, and normal speed."""
    out: list[tuple[float, str]] = []
    for r, m in [(ln.rate, ln.mode) for ln in lines[:n]] + [(1.0, "speed")]:
        if all(abs(r / q - 1) > 0.002 or m != mq for q, mq in out):
            out.append((r, m))
    return out


def vote_lines(sig: Signals, *, within: list[tuple[float, float]] | None = None,
               explained: list[tuple[float, float]] = ()) -> list[Line]:
    """Candidate lines from the chunk votes (`Signals.votes`; only the chunks ``within`` those dance spans,
    if given) and from whole-recording envelope correlations at their rates (blanking what is
    ``explained``)."""
    lines: list[Line] = []
    v = sig.votes()
    if v is not None:
        if within is not None:
            keep = np.zeros(len(v), bool)
            for a, b in within:
                keep |= (v.t >= a) & (v.t <= b)
            v = v.where(keep)
        lines = hough_lines(v) if len(v) else []
    for r, m in rates_of(lines):
        lines += envelope_lines(sig, r, mode=m, k=4, exclude=list(explained))
    return lines


def whiten(y: np.ndarray, *, sr: int, n_fft: int = 512, block: int = 4096) -> np.ndarray:
    """``y`` with every short-time spectrum flattened to unit magnitude (phase kept) above 100 Hz:
    each time-frequency cell then counts alike in a correlation, however loud the talk or noise
    over it (GCC-PHAT done frame by frame). Hann frames at half overlap, resynthesised by weighted
    overlap-add, ``block`` frames at a time in float32 (memory: the output, not the spectrogram)."""
    y = np.asarray(y, dtype=np.float32)
    hop = n_fft // 2
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    low = int(100 * n_fft / sr)
    n_frames = max(1, -(-len(y) // hop) + 1)
    yp = np.zeros((n_frames - 1) * hop + n_fft, np.float32)  # zero-padded by hop at the start
    yp[hop:hop + len(y)] = y

    def spectra(a: int) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(yp[a * hop:(min(a + block, n_frames) - 1) * hop + n_fft],
                                                          n_fft)[::hop]
        return scipy.fft.rfft(frames * win, axis=1, workers=-1)

    # the level below which a cell is not raised to unit magnitude: relative to the mean magnitude
    floor = 1e-3 * (float(np.mean([np.abs(spectra(a)).mean() for a in range(0, n_frames, block)])) + 1e-12)
    out = np.zeros(len(yp), np.float32)
    norm = np.zeros(len(yp), np.float32)
    for a in range(0, n_frames, block):
        Z = spectra(a)
        Z /= np.abs(Z) + np.float32(floor)
        Z[:, :low] = 0
        x = scipy.fft.irfft(Z, n_fft, axis=1, workers=-1) * win
        for j in range(2):  # frames of one parity do not overlap: add them at once
            rows = x[j::2]
            at, end = (a + j) * hop, (a + j) * hop + len(rows) * n_fft
            out[at:end].reshape(len(rows), n_fft)[:] += rows
            norm[at:end].reshape(len(rows), n_fft)[:] += win**2
    out[norm > 1e-6] /= norm[norm > 1e-6]
    return out[hop:hop + len(y)]


def wave_lines(sig: Signals, *, k: int = 6, block_s: float = 60.0, hop_s: float = 45.0,
               within: list[tuple[float, float]] | None = None) -> list[Line]:
    """The ``k`` best constant offsets at normal speed from a whole-recording correlation of the
    waveforms, whitened frame by frame (`whiten`) at LOW_SR, computed over blocks of the recording
    (bounded memory; blocks overlap, so that a short stretch of music lies whole inside one; a block is
    short enough that a playback clock off by 100 ppm stays coherent over it), or over the stretches
    ``within`` (dance seconds) only. Scores are z-scores over the correlation's spread, the best block's.

    A copy of the song's waveform adds up coherently over the whole overlap, so it stands out even
    when talk and noise are far louder than the music, where features fail; songs whose bars repeat
    exactly also give peaks at the repetitions, which the later steps tell apart.
    """
    b = whiten(sig.low("bgm"), sr=LOW_SR)
    dance = sig.low("dance")
    nb = len(b)
    n_block, n_hop = int(block_s * LOW_SR), int(hop_s * LOW_SR)
    found: list[tuple[float, float]] = []  # (offset s, z)
    FB = {}
    spans = [(0.0, len(dance) / LOW_SR)] if within is None else within
    starts = sorted({a0 for lo, hi in spans
                     for a0 in range(int(lo * LOW_SR), max(int(lo * LOW_SR) + 1, int(hi * LOW_SR) - (n_block - n_hop)),
                                     n_hop)})
    for a0 in starts:
        a = whiten(dance[a0:a0 + n_block], sr=LOW_SR)
        if len(a) < LOW_SR:
            continue
        n = scipy.fft.next_fast_len(len(a) + nb, real=True)
        if n not in FB:
            FB[n] = np.conj(scipy.fft.rfft(b, n))
        c = scipy.fft.irfft(scipy.fft.rfft(a, n) * FB[n], n)  # float32 throughout: bounded memory
        # c[L] = sum_i a[i] b[i - L], L in [-(nb - 1), len(a) - 1]: block sample i <-> song sample i - L
        z = np.concatenate([c[n - (nb - 1):], c[:len(a)]])
        del c
        z -= z.mean(dtype=np.float64)
        z /= z.std(dtype=np.float64) + 1e-12
        for p in top_peaks(z, k, int(0.2 * LOW_SR)):
            if p >= 0:
                found.append(((p - (nb - 1) + a0) / LOW_SR, float(z[p])))
    out: list[Line] = []
    for off, z in sorted(found, key=lambda x: -x[1]):
        if all(abs(off - ln.offset) > 0.2 for ln in out):
            out.append(Line(offset=off, rate=1.0, mode="speed", score=z, source="wave"))
        if len(out) >= k:
            break
    return out

"""Build the sound track of an output: the clean song laid out along the class video's timeline.

Pure numpy on arrays. Speed changes that move the pitch are resampled (soxr); pitch-kept ones
use a WSOLA time stretcher whose splice search is bounded to a few milliseconds, so the song's
timing never wanders from the alignment by more than that (general-purpose stretchers such as
ffmpeg's ``atempo`` drift by tens of milliseconds locally).

A track is made block by block (`track_blocks`, 10 s at a time), so rendering a long class holds
a few blocks, never the whole track: `PieceStream` gives the samples of `song_piece` in order, a
block at a time, and they are exactly the samples the one-shot `song_piece` (and `wsola`) give,
whatever the block lengths.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soxr

from beatsync.align.result import Segment

FADE_S = 0.01
#: length of the blocks `track_blocks` makes by default, seconds
BLOCK_S = 10.0
_FEED_S = 1.0  # seconds of song fed to a streaming resampler at a time


# ----------------------------------------------------------------------------- WSOLA


@dataclass(frozen=True)
class _WsolaShape:
    """Frame length ``N``, output hop ``H = N / 2``, largest splice shift ``D`` (samples), window, FFT size."""

    N: int
    H: int
    D: int
    win: np.ndarray
    nfft: int

    @classmethod
    def of(cls, sr: int, max_shift_s: float) -> _WsolaShape:
        N = 1 << int(np.ceil(np.log2(0.046 * sr)))
        H = N // 2
        D = max(1, int(max_shift_s * sr))
        win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)).astype(np.float32)  # periodic: sums to 1 at hop N/2
        return cls(N, H, D, win, scipy.fft.next_fast_len(H + 2 * D + H))


def _nominal(k: int, shape: _WsolaShape, rate: float) -> int:
    """Input position of frame ``k``: its centre (output k*H + N/2) carries the input at that time * rate."""
    return max(0, int(round((k * shape.H + shape.N / 2) * rate - shape.N / 2)))


def _best_start(target: np.ndarray, region: np.ndarray, *, nominal: int, shape: _WsolaShape, n: int) -> int:
    """Where the frame at ``nominal`` starts: the shift within +-D whose start best continues ``target``
    (how the previous frame's input goes on); ``region`` holds the mono input from nominal - D on."""
    if not (target.any() and region.any()):
        return nominal
    nfft, D = shape.nfft, shape.D
    c = scipy.fft.irfft(scipy.fft.rfft(region, nfft) * np.conj(scipy.fft.rfft(target, nfft)), nfft)
    pos = nominal - D + int(np.argmax(c[:2 * D + 1]))
    return min(max(pos, 0), n - 1)


def wsola(x: np.ndarray, *, sr: int, rate: float, max_shift_s: float = 0.006) -> np.ndarray:
    """Time-stretch ``x`` (channels, n) to play ``rate`` times as fast with the pitch kept.

    Output sample k carries the input near sample ``k * rate``: frames of ~46 ms are overlap-added
    at a fixed output hop, each centred on its nominal input position give or take
    ``max_shift_s`` (the position whose start best continues the previous frame's waveform). So
    the song's timing is off by at most ``max_shift_s`` plus half a frame times ``1 - rate``
    (10.6 ms at 80 %), typically a few ms.

    The whole signal at once; `PieceStream` makes the same samples a block at a time.

    Returns (channels, round(n / rate)) float32.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    ch, n = x.shape
    sh = _WsolaShape.of(sr, max_shift_s)
    N, H, D = sh.N, sh.H, sh.D
    m = int(round(n / rate))
    out = np.zeros((ch, m + N), np.float32)
    mono = x.mean(axis=0)
    padded = np.pad(mono, (D, N + D))
    xp = np.pad(x, ((0, 0), (0, N)))
    prev = None
    for k in range(m // H + 1):
        nominal = _nominal(k, sh, rate)
        if nominal >= n:
            break
        pos = nominal
        if prev is not None:
            target = padded[prev + H + D: prev + H + D + H]  # how the previous frame's input goes on
            region = padded[nominal: nominal + 2 * D + H]  # candidates: nominal - D .. nominal + D
            pos = _best_start(target, region, nominal=nominal, shape=sh, n=n)
        out[:, k * H: k * H + N] += xp[:, pos:pos + N] * sh.win
        prev = pos
    return out[:, :m]


class _Window:
    """Samples ``lo .. lo + n`` of ``x`` (channels, total) as a signal of its own: sample ``j`` is
    ``x[:, lo + j]``, zero outside ``0 <= j < n`` and outside ``x`` (no copy is made up front)."""

    def __init__(self, x: np.ndarray, lo: int, n: int):
        self.x, self.lo, self.n = x, lo, n
        self.channels = x.shape[0]

    def get(self, a: int, b: int) -> np.ndarray:
        """Samples ``a .. b`` (channels, b - a) float32, zeros where there are none."""
        out = np.zeros((self.channels, max(0, b - a)), np.float32)
        lo = max(a, 0, -self.lo)
        hi = min(b, self.n, self.x.shape[1] - self.lo)
        if hi > lo:
            out[:, lo - a: hi - a] = self.x[:, self.lo + lo: self.lo + hi]
        return out

    def mono(self, a: int, b: int) -> np.ndarray:
        return self.get(a, b).mean(axis=0)


class _WsolaStream:
    """`wsola` of a `_Window`, produced in order: `pull` gives the next finished stretch of output
    (H samples), None at the end. Sample for sample what `wsola` gives for the whole window."""

    def __init__(self, src: _Window, *, sr: int, rate: float, max_shift_s: float = 0.006):
        self.src, self.rate = src, rate
        self.sh = _WsolaShape.of(sr, max_shift_s)
        self.m = int(round(src.n / rate))  # output length
        self.k = 0  # next frame
        self.frames = self.m // self.sh.H + 1
        self.prev: int | None = None
        self.acc = np.zeros((src.channels, self.sh.N), np.float32)  # output k*H .. k*H + N, frames < k added
        self.given = 0  # output samples handed out
        self.ended = False

    def pull(self) -> np.ndarray | None:
        sh, src = self.sh, self.src
        N, H, D = sh.N, sh.H, sh.D
        if self.given >= self.m:
            return None
        if not self.ended and self.k < self.frames:
            nominal = _nominal(self.k, sh, self.rate)
            if nominal >= src.n:
                self.ended = True
            else:
                pos = nominal
                if self.prev is not None:
                    target = src.mono(self.prev + H, self.prev + 2 * H)
                    region = src.mono(nominal - D, nominal + D + H)
                    pos = _best_start(target, region, nominal=nominal, shape=sh, n=src.n)
                self.acc += src.get(pos, pos + N) * sh.win
                self.prev = pos
                self.k += 1
        else:
            self.ended = True
        # output k*H .. k*H + H is final once frame k is in (frame k + 1 starts after it); after the
        # last frame, all that is left is final
        done = self.acc[:, :H].copy()
        self.acc[:, :H] = self.acc[:, H:]
        self.acc[:, H:] = 0.0
        done = done[:, : self.m - self.given]
        self.given += done.shape[1]
        return done


# ----------------------------------------------------------------------------- one piece of song


def _source_span(bgm: np.ndarray, *, sr: int, bgm_start_s: float, duration_s: float, rate: float):
    """The song samples a piece reads (a little extra for the resampler's edges): (lo, hi, a, b) with
    [a, b) the part of [lo, hi) inside the song, and the source position of the piece's start."""
    pad = int(0.05 * sr)
    src_lo = int(np.floor(bgm_start_s * sr)) - pad
    src_hi = int(np.ceil((bgm_start_s + duration_s * rate) * sr)) + pad
    a, b = max(0, src_lo), min(bgm.shape[1], src_hi)
    return src_lo, src_hi, a, b, bgm_start_s * sr - src_lo


def _how(rate: float, duration_s: float, mode: str) -> str:
    if abs(rate - 1.0) * duration_s < 2e-5:  # drifts less than a sample at 48 kHz: no resampling
        return "copy"
    if mode == "stretch" and abs(rate - 1.0) > 0.005:
        return "stretch"
    return "speed"


def song_piece(bgm: np.ndarray, *, sr: int, bgm_start_s: float, duration_s: float, rate: float,
               mode: str) -> np.ndarray:
    """The song as heard during ``duration_s`` dance seconds from BGM time ``bgm_start_s`` at ``rate``.

    Parameters
    ----------
    bgm : (channels, n) float32 song at ``sr`` Hz.
    rate : BGM seconds per dance second (0.9 = the class played it at 90 %).
    mode : "speed" (resample: pitch follows tempo) or "stretch" (keep pitch: WSOLA).

    Returns (channels, round(duration_s * sr)) float32; silence where the song has no samples.
    The whole piece at once; `PieceStream` gives the same samples a block at a time.
    """
    ch = bgm.shape[0]
    n_out = int(round(duration_s * sr))
    out = np.zeros((ch, n_out), np.float32)
    if n_out <= 0:
        return out
    src_lo, src_hi, a, b, frac0 = _source_span(bgm, sr=sr, bgm_start_s=bgm_start_s, duration_s=duration_s, rate=rate)
    if b <= a:
        return out
    src = np.zeros((ch, src_hi - src_lo), np.float32)
    src[:, a - src_lo:b - src_lo] = bgm[:, a:b]
    how = _how(rate, duration_s, mode)
    if how == "copy":
        i0 = int(round(frac0))
        piece = src[:, i0:i0 + n_out]
    elif how == "stretch":
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


class PieceStream:
    """`song_piece` (same arguments), a block at a time: ``read(k)`` gives the piece's next ``k``
    samples, (channels, k) float32, zeros past its end. The samples are exactly those of `song_piece`
    (the streaming resampler and `_WsolaStream` compute what the one-shot ones do, in order), and
    nothing longer than a block (plus a second of song) is held.
    """

    def __init__(self, bgm: np.ndarray, *, sr: int, bgm_start_s: float, duration_s: float, rate: float, mode: str):
        self.channels = bgm.shape[0]
        self.n_out = max(0, int(round(duration_s * sr)))
        self.given = 0
        self._pending: list[np.ndarray] = []  # produced, not yet read
        self._have = 0
        self._skip = 0  # produced samples before the piece's start, still to drop
        self._pull = None  # () -> the next produced samples, or None at the end
        self._src: _Window | None = None
        self._copy_at: int | None = None  # a plain copy of the song: source position of the piece's start
        if self.n_out <= 0:
            return
        src_lo, src_hi, a, b, frac0 = _source_span(bgm, sr=sr, bgm_start_s=bgm_start_s, duration_s=duration_s,
                                                   rate=rate)
        if b <= a:
            return
        src = _Window(bgm, src_lo, src_hi - src_lo)
        how = _how(rate, duration_s, mode)
        if how == "copy":
            self._src, self._copy_at = src, int(round(frac0))
        elif how == "stretch":
            self._skip = int(round(frac0 / rate))
            self._pull = _WsolaStream(src, sr=sr, rate=rate).pull
        else:
            self._skip = int(round(frac0 / rate))
            self._src, self._at, self._feed = src, 0, max(1, int(_FEED_S * sr))
            self._rs = soxr.ResampleStream(sr, sr / rate, self.channels, dtype="float32", quality="VHQ")
            self._pull = self._resample

    def _resample(self) -> np.ndarray | None:
        if self._rs is None:
            return None
        n = min(self._feed, self._src.n - self._at)
        chunk = np.ascontiguousarray(self._src.get(self._at, self._at + n).T)
        self._at += n
        last = self._at >= self._src.n
        y = self._rs.resample_chunk(chunk, last=last).T
        if last:
            self._rs = None
        return y

    def read(self, k: int) -> np.ndarray:
        k = max(0, min(k, self.n_out - self.given))
        if self._copy_at is not None:
            at = self._copy_at + self.given
            self.given += k
            return self._src.get(at, at + k)
        while self._pull is not None and self._have < k:
            y = self._pull()
            if y is None:
                self._pull = None
                break
            if self._skip:
                drop = min(self._skip, y.shape[1])
                self._skip -= drop
                y = y[:, drop:]
            if y.shape[1]:
                self._pending.append(y)
                self._have += y.shape[1]
        out = np.zeros((self.channels, k), np.float32)
        filled = 0
        while filled < k and self._pending:
            y = self._pending[0]
            take = min(k - filled, y.shape[1])
            out[:, filled:filled + take] = y[:, :take]
            filled += take
            if take == y.shape[1]:
                self._pending.pop(0)
            else:
                self._pending[0] = y[:, take:]
        self._have -= filled
        self.given += k
        return out


# ----------------------------------------------------------------------------- the track


@dataclass
class _Laid:
    """Where one segment's piece lies in the track: samples ``i0 .. i0 + n``, faded in/out or not."""

    seg: Segment
    a: float  # dance times of the piece
    b: float
    i0: int
    n: int
    fade: int  # ramp length (0: none)
    head: bool
    tail: bool
    stream: PieceStream | None = None

    @property
    def ramp(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.fade, dtype=np.float32)


class _Reader:
    """``read(k)``: the next ``k`` samples (or fewer at the end) of an array or of an iterable of
    (channels, m) blocks of any lengths."""

    def __init__(self, src: np.ndarray | Iterable[np.ndarray]):
        if isinstance(src, np.ndarray):
            src = np.atleast_2d(src)
            self._blocks = iter([src[:, i:i + (1 << 20)] for i in range(0, src.shape[1], 1 << 20)])
        else:
            self._blocks = iter(src)
        self._rest: np.ndarray | None = None

    def read(self, k: int) -> np.ndarray | None:
        parts, got = [], 0
        while got < k:
            y = self._rest
            self._rest = None
            if y is None:
                y = next(self._blocks, None)
                if y is None:
                    break
                y = np.atleast_2d(y)
            if y.shape[1] > k - got:
                y, self._rest = y[:, :k - got], y[:, k - got:]
            parts.append(y)
            got += y.shape[1]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _uncovered_share(laid: list[_Laid], s: int, e: int, *, n: int, width: int) -> np.ndarray:
    """For each track sample in ``s .. e``: the share of the ``width`` samples around it (the same
    window as ``np.convolve(..., mode="same")``; outside the track counts as covered) where no piece
    plays, float32. Counted in integers, so a block gives what the whole track gives."""
    before, after = width // 2, (width - 1) // 2
    lo, hi = max(0, s - before), min(n, e + after)
    free = np.ones(max(0, hi - lo), np.int32)
    for p in laid:
        a, b = max(lo, p.i0), min(hi, p.i0 + p.n)
        if b > a:
            free[a - lo:b - lo] = 0
    csum = np.concatenate(([0], np.cumsum(free, dtype=np.int64)))
    i = np.arange(s, e)
    wa = np.maximum(i - before, 0) - lo
    wb = np.minimum(i + after + 1, n) - lo
    return (csum[wb] - csum[wa]).astype(np.float32) / np.float32(width)


def track_blocks(bgm: np.ndarray, *, sr: int, segments: list[Segment], start_s: float, end_s: float,
                 fill: np.ndarray | Iterable[np.ndarray] | None = None,
                 block_s: float | None = BLOCK_S) -> Iterator[np.ndarray]:
    """The output's audio for dance time [start_s, end_s), a block at a time: the song along each segment.

    Parameters
    ----------
    bgm : (channels, n) song at ``sr``.
    segments : where and how the song plays (dance times in seconds).
    start_s, end_s : dance-time span of the output; sample 0 plays at ``start_s``.
    fill : optional original recording at ``sr`` whose sample 0 is at ``start_s``, used where no
        segment plays (instead of silence): a (channels, m) array, or an iterable of such blocks of
        any lengths (read as the track goes: a decoder's output can stream through). Any channel
        count (mixed down and spread over the song's channels when it differs); silence after it ends.
    block_s : block length in seconds (None: one block, the whole track).

    Yields (channels, k) float32 blocks, ``round((end_s - start_s) * sr)`` samples in all. The
    samples do not depend on ``block_s``: a join between blocks is sample for sample what the
    whole track has there.
    """
    ch = bgm.shape[0]
    n = int(round((end_s - start_s) * sr))
    fade = int(FADE_S * sr)
    laid: list[_Laid] = []
    for seg in segments:
        a = max(seg.dance_start_s, start_s)
        b = min(seg.dance_end_s, end_s)
        if b - a <= 0:
            continue
        i0 = int(round((a - start_s) * sr))
        m = min(int(round((b - a) * sr)), n - i0)  # song_piece's length, cut at the end of the track
        if m <= 0:
            continue
        # fade only where the song really starts/stops inside the output
        laid.append(_Laid(seg, a, b, i0, m, min(fade, m // 2), head=a > start_s + 1e-6, tail=b < end_s - 1e-6))
    covered_any = bool(laid)
    reader = _Reader(fill) if fill is not None else None
    step = n if block_s is None else max(1, int(round(block_s * sr)))
    for s in range(0, n, max(step, 1)):
        e = min(n, s + step)
        out = np.zeros((ch, e - s), np.float32)
        for p in laid:
            lo, hi = max(s, p.i0), min(e, p.i0 + p.n)
            if hi <= lo:
                continue
            if p.stream is None:
                p.stream = PieceStream(bgm, sr=sr, bgm_start_s=p.seg.bgm_time(p.a), duration_s=p.b - p.a,
                                       rate=p.seg.rate, mode=p.seg.mode)
            piece = p.stream.read(hi - lo)
            j0, j1, nf = lo - p.i0, hi - p.i0, p.fade  # sample numbers within the piece
            if nf > 0 and p.head and j0 < nf:
                piece[:, : min(j1, nf) - j0] *= p.ramp[j0: min(j1, nf)]
            if nf > 0 and p.tail and j1 > p.n - nf:
                t0 = max(j0, p.n - nf)
                piece[:, t0 - j0:] *= p.ramp[::-1][t0 - (p.n - nf): j1 - (p.n - nf)]
            out[:, lo - s:hi - s] += piece
            if hi == p.i0 + p.n:
                p.stream = None  # done with this piece
        if reader is not None:
            f = np.zeros((ch, e - s), np.float32)
            got = reader.read(e - s)
            if got is not None and got.shape[1]:
                src = got if got.shape[0] == ch else np.repeat(got.mean(axis=0, keepdims=True), ch, axis=0)
                f[:, :src.shape[1]] = src
            if covered_any:
                if fade > 1:
                    gap = _uncovered_share(laid, s, e, n=n, width=fade)
                else:
                    gap = _uncovered_share(laid, s, e, n=n, width=1)
                out = out * (1.0 - gap) + f * gap
            else:
                out = f
        np.clip(out, -1.0, 1.0, out=out)
        yield out


def build_track(bgm: np.ndarray, *, sr: int, segments: list[Segment], start_s: float, end_s: float,
                fill: np.ndarray | Iterable[np.ndarray] | None = None) -> np.ndarray:
    """The output's audio for dance time [start_s, end_s) in one array: `track_blocks` as one block.

    Returns (channels, round((end_s - start_s) * sr)) float32.
    """
    blocks = list(track_blocks(bgm, sr=sr, segments=segments, start_s=start_s, end_s=end_s, fill=fill,
                               block_s=None))
    return blocks[0] if len(blocks) == 1 else np.zeros((bgm.shape[0], 0), np.float32)

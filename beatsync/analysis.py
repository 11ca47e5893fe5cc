"""Audio features and beats on numpy arrays (no files, no ffmpeg).

Everything here is a small pure function over arrays, with librosa's naming: ``y`` is a mono
float signal, ``sr`` its sample rate in Hz, ``hop_length`` the frame hop in samples. Frame ``k``
of every feature is centred on sample ``k * hop_length`` (time ``k * hop_length / sr`` seconds).

The STFT and the mel and chroma filter banks are computed here with numpy and ``scipy.fft``
rather than taken from librosa: the same kind of numbers, without the seconds of numba
compilation and imports that librosa's first calls cost in every fresh process (each CLI run and
each job process would pay them). ``tests/test_reference_librosa.py`` measures how closely the
onset strength, chroma and beats agree with librosa's (librosa's onset strength and beats come
``n_fft // (2 * hop_length)`` frames later than ours: its ``center`` shift).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from beatsync.errors import ParameterError

__all__ = [
    "ANALYSIS_SR",
    "Features",
    "beat_track",
    "features",
    "power_spectrogram",
    "project_spectrogram",
    "spectrogram_blocks",
    "tempo_candidates",
]

#: Sample rate (Hz) at which both recordings are analysed.
ANALYSIS_SR = 22050


def _check(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"y must be mono (1-D), got shape {y.shape}")
    if sr <= 0:
        raise ParameterError(f"sr must be positive, got {sr}")
    return y


def spectrogram_blocks(y: np.ndarray, *, n_fft: int = 2048, hop_length: int = 512, block: int = 1024):
    """The power STFT ``|X|**2`` of `power_spectrogram`, yielded as ``(first_frame, S_block)`` pieces of at
    most ``block`` frames, so that a long recording's spectrogram never has to be held whole."""
    y = np.asarray(y, dtype=np.float32)
    pad = n_fft // 2
    total = n_frames(len(y), n_fft=n_fft, hop_length=hop_length)
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    for a in range(0, total, block):
        nb = min(block, total - a)
        # the block's stretch of the signal zero-padded by n_fft // 2 at both ends (never a padded copy of all
        # of it: an hour of sound is large)
        lo = a * hop_length - pad
        hi = lo + (nb - 1) * hop_length + n_fft
        seg = np.zeros(hi - lo, np.float32)
        seg[max(0, -lo):max(0, -lo) + max(0, min(hi, len(y)) - max(lo, 0))] = y[max(lo, 0):max(0, min(hi, len(y)))]
        frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop_length]
        spec = scipy.fft.rfft(frames * win, axis=1, workers=-1)
        yield a, (spec.real**2 + spec.imag**2).T.astype(np.float32)


def n_frames(n_samples: int, *, n_fft: int = 2048, hop_length: int = 512) -> int:
    """Number of centred frames `spectrogram_blocks` gives for a signal of ``n_samples``."""
    return (max(n_samples + 2 * (n_fft // 2), n_fft) - n_fft) // hop_length + 1


def power_spectrogram(y: np.ndarray, *, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Power STFT ``|X|**2``, shape ``(1 + n_fft // 2, n_frames)``, float32.

    Frames are centred (the signal is zero-padded by ``n_fft // 2`` on both sides), Hann window.
    """
    out = np.empty((n_fft // 2 + 1, n_frames(len(y), n_fft=n_fft, hop_length=hop_length)), dtype=np.float32)
    for a, S in spectrogram_blocks(y, n_fft=n_fft, hop_length=hop_length):
        out[:, a:a + S.shape[1]] = S
    return out


def project_spectrogram(y: np.ndarray, bank: np.ndarray, *, n_fft: int, hop_length: int) -> tuple[np.ndarray, float]:
    """``bank @ |X|**2`` over the whole recording, computed block by block (memory: the result, not the
    spectrogram), and the largest value of the spectrogram itself."""
    out = np.empty((bank.shape[0], n_frames(len(y), n_fft=n_fft, hop_length=hop_length)), dtype=np.float32)
    peak = 0.0
    bank_t = np.ascontiguousarray(bank.T)
    for a, S in spectrogram_blocks(y, n_fft=n_fft, hop_length=hop_length):
        out[:, a:a + S.shape[1]] = (S.T @ bank_t).T  # S is frames-major in memory: the fast product
        peak = max(peak, float(S.max()))
    return out, peak


def _hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


@lru_cache(maxsize=8)
def _mel_fb(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filter bank (n_mels, 1 + n_fft // 2), area-normalised, 40 Hz..8 kHz."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(40.0), _hz_to_mel(min(8000.0, sr / 2)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


@lru_cache(maxsize=8)
def _chroma_fb(sr: int, n_fft: int) -> np.ndarray:
    """Pitch-class filter bank (12, 1 + n_fft // 2): each bin 80 Hz..5 kHz votes for the pitch
    classes near its frequency (Gaussian over the circular distance in semitones)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    ok = (freqs >= 80) & (freqs <= 5000)
    pitch = np.zeros_like(freqs)
    pitch[ok] = 12.0 * np.log2(freqs[ok] / 440.0) + 69.0  # MIDI number
    d = (pitch[None, :] - np.arange(12)[:, None]) % 12.0
    d = np.minimum(d, 12.0 - d)
    fb = np.exp(-0.5 * (d / 0.5) ** 2) * ok[None, :]
    fb /= fb.sum(axis=0, keepdims=True) + 1e-12
    return fb.astype(np.float32)


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred running mean along the last axis over ``width`` frames (edges: nearest value)."""
    x = np.asarray(x, dtype=np.float64)
    width = max(1, int(width))
    if width == 1:
        return x.copy()
    left, right = width // 2, width - 1 - width // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(left, right)]
    xp = np.pad(x, pad, mode="edge")
    cs = np.cumsum(xp, axis=-1)
    cs = np.concatenate([np.zeros(x.shape[:-1] + (1,)), cs], axis=-1)
    return (cs[..., width:] - cs[..., :-width]) / width


@dataclass
class Features:
    """Frame-wise features of one recording, all at ``frame_rate`` frames per second.

    Attributes
    ----------
    onset : (n,) spectral-flux onset strength (log-mel, half-wave rectified).
    flux : (n_bands, n) onset strength per frequency band.
    chroma : (12, n) pitch-class energy (log-compressed).
    mfcc : (n_mfcc, n) cepstral coefficients 1..n_mfcc (timbre), c0 dropped.
    frame_rate : frames per second (``sr / hop_length``).
    logmel : (n_mels, n) log-mel spectrogram in dB re its maximum (the spectrum frame by frame).
    """

    onset: np.ndarray
    flux: np.ndarray
    chroma: np.ndarray
    mfcc: np.ndarray
    frame_rate: float
    logmel: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.onset)


def _flux(logmel: np.ndarray, lag: int = 1) -> np.ndarray:
    """Half-wave rectified temporal difference, aligned so that frame k is the rise into frame k."""
    d = np.zeros_like(logmel)
    d[:, lag:] = np.maximum(logmel[:, lag:] - logmel[:, :-lag], 0.0)
    return d


def features(
    y: np.ndarray, *, sr: int, hop_length: int = 512, n_fft: int = 2048, n_mels: int = 64, n_bands: int = 8,
    n_mfcc: int = 12,
) -> Features:
    """Compute the features the alignment engines fuse (one STFT, several views).

    Parameters
    ----------
    y : mono signal, float.
    sr : sample rate of ``y`` in Hz.
    hop_length : frame hop in samples.
    n_fft : STFT size in samples.
    n_mels : mel bands for the onset and band-flux features.
    n_bands : number of band-flux channels (groups of mel bands).
    n_mfcc : number of cepstral coefficients kept (c1..c_n_mfcc).
    """
    y = _check(y, sr)
    mel_fb, chroma_fb = _mel_fb(sr, n_fft, n_mels), _chroma_fb(sr, n_fft)
    proj, s_max = project_spectrogram(y, np.vstack([mel_fb, chroma_fb]), n_fft=n_fft, hop_length=hop_length)
    mel, chroma_raw = proj[:n_mels], proj[n_mels:]
    # in place, in float32: an hour's spectrogram is large
    logmel = np.maximum(mel, 1e-10)
    logmel *= np.float32(1.0 / max(float(mel.max()), 1e-10))
    logmel += np.float32(1e-8)
    np.log10(logmel, out=logmel)
    logmel *= np.float32(10.0)
    fl = _flux(logmel)
    onset = fl.mean(axis=0)
    bands = np.array_split(np.arange(n_mels), n_bands)
    flux = np.stack([fl[b].mean(axis=0) for b in bands])
    chroma = np.log1p(100.0 * chroma_raw / max(s_max, 1e-10))
    mfcc = scipy.fft.dct(logmel, axis=0, type=2, norm="ortho")[1:n_mfcc + 1]
    return Features(onset=onset.astype(np.float32), flux=flux.astype(np.float32), chroma=chroma.astype(np.float32),
                    mfcc=mfcc.astype(np.float32), frame_rate=sr / hop_length, logmel=logmel.astype(np.float32))


def local_normalize(x: np.ndarray, *, width: int) -> np.ndarray:
    """Remove the running mean (over ``width`` frames) of each row and scale each row to unit RMS.

    Slow level changes (room EQ, automatic gain, a stationary channel) vanish; what remains is
    how each feature moves, which is what two recordings of the same music share. Computed in float32 a
    few rows at a time (an hour's spectrogram is large).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    out = np.empty(x.shape, np.float32)
    for i in range(0, x.shape[0], 8):
        rows = x[i:i + 8]
        hp = rows - moving_average(rows, width).astype(np.float32)
        rms = np.sqrt(np.mean(np.square(hp), axis=-1, keepdims=True, dtype=np.float64)) + 1e-9
        out[i:i + 8] = hp / rms.astype(np.float32)
    return out


def _beat_envelope(onset: np.ndarray, *, frame_rate: float) -> np.ndarray | None:
    """The onset envelope as the beat tracker sees it: its slow trend removed, rectified, unit spread;
    None when there is nothing to track."""
    onset = np.asarray(onset, dtype=np.float64)
    if len(onset) < 8 or not np.any(onset > 0):
        return None
    env = np.maximum(onset - moving_average(onset, max(3, int(frame_rate))), 0.0)
    return env / (env.std() + 1e-12)


def beat_track(
    onset: np.ndarray, *, frame_rate: float, tempo_min: float = 60.0, tempo_max: float = 200.0, tightness: float = 100.0,
) -> tuple[float, np.ndarray]:
    """Dynamic-programming beat tracker (Ellis 2007) on an onset envelope.

    Parameters
    ----------
    onset : (n,) onset strength.
    frame_rate : frames per second of ``onset``.
    tempo_min, tempo_max : tempo search range in beats per minute.
    tightness : how strongly beats keep to the global tempo.

    Returns
    -------
    tempo : estimated tempo in BPM (0.0 when the envelope has no rhythm).
    beats : beat positions in seconds (fractional frames, refined by parabolic interpolation).
    """
    onset = np.asarray(onset, dtype=np.float64)
    n = len(onset)
    env = _beat_envelope(onset, frame_rate=frame_rate)
    if env is None:
        return 0.0, np.zeros(0)
    period = _estimate_period(env, frame_rate=frame_rate, tempo_min=tempo_min, tempo_max=tempo_max)
    if period <= 0:
        return 0.0, np.zeros(0)
    # DP: score[t] = env[t] + max_{p in [t - 2P, t - P/2]} score[p] - tightness * log(gap / P) ** 2
    lo, hi = max(1, int(round(period / 2))), int(round(2 * period))
    gaps = np.arange(lo, hi + 1)
    penalty = -tightness * np.log(gaps / period) ** 2
    score = env.copy()
    back = np.full(n, -1, dtype=np.int64)
    for t in range(lo, n):
        cand_idx = t - gaps
        ok = cand_idx >= 0
        cand = score[cand_idx[ok]] + penalty[ok]
        k = int(np.argmax(cand))
        if cand[k] > 0:
            score[t] = env[t] + cand[k]
            back[t] = cand_idx[ok][k]
    # end on the best-scoring frame within the last period with a locally high score
    tail = np.arange(max(0, n - int(period) - 1), n)
    t = int(tail[np.argmax(score[tail])])
    beats = []
    while t >= 0:
        beats.append(t)
        t = int(back[t])
    beats = np.array(beats[::-1], dtype=np.float64)
    # trim weak beats at the edges (silence before/after the music)
    strong = env[beats.astype(int)] > 0.1 * np.median(env[beats.astype(int)]) if len(beats) else []
    if len(beats):
        idx = np.flatnonzero(strong)
        if len(idx):
            beats = beats[idx[0]: idx[-1] + 1]
    refined = _parabolic(onset, beats.astype(int))
    return 60.0 * frame_rate / period, refined / frame_rate


def track_pair(fd: Features, fb: Features, *, song_beats: tuple[float, np.ndarray] | None = None
               ) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Beats of a class recording and of its song: the song tracked freely, the class at the
    song's metrical level (its tempo is the song's times a practice-speed rate, 0.74-1.06).

    ``song_beats``: the song's `beat_track` of ``fb.onset`` if already known (it depends on the song
    alone), else tracked here.

    Returns
    -------
    tempo_dance, beats_dance, tempo_bgm, beats_bgm : BPM and beat times in seconds of each.
    """
    tg, bg = song_beats if song_beats is not None else beat_track(fb.onset, frame_rate=fb.frame_rate)
    limits = {"tempo_min": 0.74 * tg, "tempo_max": 1.06 * tg} if tg > 0 else {}
    td, bd = beat_track(fd.onset, frame_rate=fd.frame_rate, **limits)
    return td, bd, tg, bg


def _parabolic(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    k = np.clip(k, 1, len(x) - 2)
    y0, y1, y2 = x[k - 1], x[k], x[k + 1]
    den = y0 - 2 * y1 + y2
    d = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / np.where(den == 0, 1, den), 0.0)
    return k + np.clip(d, -0.5, 0.5)


def _period_strength(env: np.ndarray, *, frame_rate: float, tempo_min: float,
                     tempo_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate beat periods (lags in frames) and how strongly the onset envelope repeats at each: its
    autocorrelation there and at twice the lag (a real pulse repeats at 2x its lag), weighted toward
    120 BPM. Empty when the tempo range holds fewer than three lags."""
    n = len(env)
    nfft = scipy.fft.next_fast_len(2 * n)
    spec = scipy.fft.rfft(env - env.mean(), nfft)
    ac = scipy.fft.irfft(np.abs(spec) ** 2, nfft)[:n]
    ac /= ac[0] + 1e-12
    lag_min = int(np.floor(60.0 * frame_rate / tempo_max))
    lag_max = min(n - 1, int(np.ceil(60.0 * frame_rate / tempo_min)))
    if lag_max <= lag_min + 2:
        return np.zeros(0), np.zeros(0)
    lags = np.arange(lag_min, lag_max + 1)
    bpm = 60.0 * frame_rate / lags
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2)
    ac2 = np.interp(2 * lags, np.arange(n), ac, right=0.0)
    return lags, (np.maximum(ac[lags], 0) + 0.5 * np.maximum(ac2, 0)) * prior


def _estimate_period(env: np.ndarray, *, frame_rate: float, tempo_min: float, tempo_max: float) -> float:
    """Beat period in frames: the strongest of `_period_strength` (refined by parabolic interpolation)."""
    lags, strength = _period_strength(env, frame_rate=frame_rate, tempo_min=tempo_min, tempo_max=tempo_max)
    if len(lags) == 0:
        return 0.0
    k = int(np.argmax(strength))
    if 0 < k < len(lags) - 1:
        return float(_parabolic(strength, np.array([k]))[0] + lags[0])
    return float(lags[k])


def tempo_candidates(onset: np.ndarray, *, frame_rate: float, tempo_min: float = 60.0, tempo_max: float = 200.0,
                     k: int = 3) -> list[float]:
    """The ``k`` most likely tempos (BPM, best first) of an onset envelope: the strongest local maxima of
    its periodicity (`beat_track` follows the first; a noisy recording's true tempo may be another)."""
    env = _beat_envelope(onset, frame_rate=frame_rate)
    if env is None:
        return []
    lags, strength = _period_strength(env, frame_rate=frame_rate, tempo_min=tempo_min, tempo_max=tempo_max)
    if len(lags) < 3:
        return []
    peak = np.flatnonzero((strength[1:-1] >= strength[:-2]) & (strength[1:-1] > strength[2:])) + 1
    best = peak[np.argsort(strength[peak])[::-1][:k]]
    return [float(60.0 * frame_rate / (_parabolic(strength, np.array([i]))[0] + lags[0])) for i in best]

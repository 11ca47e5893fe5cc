"""Our own features and beat tracker (`beatsync.analysis`, the fine envelopes of `beatsync.align.lines`)
against librosa's, on synthesized music (`songgen.song`, clean and as a phone hears it in a room).

librosa is a test dependency only (requirements-dev.txt): the product computes these numbers itself
(see the README: librosa's numba compilation on a fresh process). These tests show that what it
computes is the same kind of number as librosa's, and by how much it agrees:

* onset strength (`features(...).onset`, hop 512) against ``librosa.onset.onset_strength`` at the same
  hop: correlation, at librosa's centring delay of ``n_fft // (2 * hop_length)`` frames;
* the engines' fine onset envelopes (hop 128, banded, locally normalised) averaged down to librosa's
  frame rate: correlation at the best lag within a few ms;
* chroma (`features(...).chroma`) against ``librosa.feature.chroma_stft``: cosine similarity and the
  share of frames with the same strongest pitch class;
* beats (`beat_track`, `tempo_candidates`) against ``librosa.beat.beat_track``: tempo (from the mean
  interval of librosa's beats, which is finer than its tempo estimate's lag grid), the share of
  librosa's beats with one of ours within 70 ms, and their systematic offset.

Every figure is printed (``pytest -s tests/test_reference_librosa.py``) and the thresholds below were
set from measured values with a margin. One known disagreement is asserted as a count, not hidden:
our first tempo is sometimes at another metrical level than librosa's (here half or double it; on
other songs 2/3 of it, a dotted-quarter period); librosa's tempo is then still among our
`tempo_candidates`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import librosa
import numpy as np
import pytest
import songgen as sg

from beatsync.align.lines import FINE_HOP, Signals
from beatsync.analysis import beat_track, features, tempo_candidates

SR = 22050
HOP = 512  # librosa's default hop, and ours for `features`
N_FFT = 2048
SONG_S = 30.0
#: the songs: (tempo in BPM, seed); a fixed, evenly spaced set, not chosen by the results
SONGS = [(84, 84), (92, 92), (100, 100), (108, 108), (116, 116), (124, 124), (132, 132), (140, 140)]
#: librosa's onset envelope is delayed by this many frames (``center=True``) relative to ours
LIBROSA_DELAY = N_FFT // (2 * HOP)
BEAT_TOL_S = 0.070  # the usual beat-tracking tolerance window (mir_eval's F-measure default)
TEMPO_TOL = 0.02

# thresholds: measured (clean / room recordings) in the comments, asserted with a margin
MIN_ONSET_CORR = 0.97  # measured 0.994-0.996 / 0.984-0.990
MIN_FINE_CORR = 0.85  # measured 0.88-0.94 / 0.89-0.92
MAX_FINE_LAG_S = 0.025  # measured +5.8 / -5.8 ms (one fine frame)
MIN_CHROMA_COS = 0.85  # mean per recording; measured 0.90-0.93 / 0.92-0.94
MIN_CHROMA_ARGMAX = 0.80  # measured 0.87-0.91 / 0.84-0.90
MIN_BEAT_MATCH = 0.95  # where the tempos agree; measured 1.000 in all
MIN_SAME_LEVEL = 8  # recordings (of 16) where our first tempo is at librosa's level; measured 10
OFFSET_TOL_S = 0.010  # median (ours - librosa) beat time vs librosa's 2-frame delay; measured within 2.3 ms


@dataclass
class Row:
    name: str
    tempo_true: float
    onset_corr: float
    onset_lag: int  # frames by which librosa's envelope trails ours
    fine_corr: float
    fine_lag_s: float
    chroma_cos: float
    chroma_argmax: float
    tempo_ours: float
    tempo_librosa: float  # from the mean interval of librosa's beats
    candidates: list[float]
    beat_match: float  # share of librosa's beats with one of ours within BEAT_TOL_S
    beat_offset_s: float  # median (ours - librosa) over librosa's beats


def _recordings():
    for tempo, seed in SONGS:
        y = sg.song(SONG_S, sr=SR, tempo_bpm=tempo, seed=seed)[0]
        yield f"{tempo} bpm clean", tempo, y
        room = sg.room(y, SR, 0.6, seed=seed, wet=0.5) + sg.speech_like(len(y), SR, seed=seed + 1, level=0.15)
        yield f"{tempo} bpm room", tempo, sg.noise(room, 15.0, seed=seed + 2)


def _corr_at(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Correlation of ``a[k]`` with ``b[k + lag]``."""
    if lag < 0:
        return _corr_at(b, a, -lag)
    n = min(len(a), len(b) - lag)
    return float(np.corrcoef(a[:n], b[lag:lag + n])[0, 1])


def _fine_vs_librosa(y: np.ndarray, onset_lib: np.ndarray) -> tuple[float, float]:
    """The engines' fine envelope (summed over its bands), shifted by whole fine frames and averaged down to
    librosa's frame rate (blocks of HOP / FINE_HOP frames: an exact resampling), against librosa's envelope
    with its centring delay removed: the best correlation and its lag in seconds."""
    env = Signals(y, y, sr=SR).envelope("dance").sum(axis=0)
    k = HOP // FINE_HOP
    ref = onset_lib[LIBROSA_DELAY:]
    best = (-2.0, 0.0)
    for lag in range(-2 * k, 2 * k + 1):
        e = env[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), env])
        n = min(len(e) // k, len(ref))
        c = float(np.corrcoef(e[:n * k].reshape(n, k).mean(axis=1), ref[:n])[0, 1])
        best = max(best, (c, lag * FINE_HOP / SR))
    return best


def _measure(name: str, tempo_true: float, y: np.ndarray) -> Row:
    f = features(y, sr=SR, hop_length=HOP, n_fft=N_FFT)
    onset_lib = librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP, n_fft=N_FFT)
    lags = range(-4, 5)
    corrs = [_corr_at(f.onset.astype(np.float64), onset_lib.astype(np.float64), lag) for lag in lags]
    fine_corr, fine_lag = _fine_vs_librosa(y, onset_lib)

    chroma_lib = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP, n_fft=N_FFT)
    ours = f.chroma[:, :chroma_lib.shape[1]].astype(np.float64)
    cos = (ours * chroma_lib).sum(axis=0) / (np.linalg.norm(ours, axis=0) * np.linalg.norm(chroma_lib, axis=0) + 1e-12)

    tempo, beats = beat_track(f.onset, frame_rate=f.frame_rate)
    _, beats_lib = librosa.beat.beat_track(y=y, sr=SR, hop_length=HOP, units="time")
    near = np.array([beats[np.argmin(np.abs(beats - t))] - t for t in beats_lib]) if len(beats) else np.array([np.inf])
    return Row(
        name=name, tempo_true=tempo_true,
        onset_corr=max(corrs), onset_lag=lags[int(np.argmax(corrs))],
        fine_corr=fine_corr, fine_lag_s=fine_lag,
        chroma_cos=float(cos.mean()), chroma_argmax=float(np.mean(ours.argmax(axis=0) == chroma_lib.argmax(axis=0))),
        tempo_ours=tempo, tempo_librosa=60.0 / float(np.mean(np.diff(beats_lib))),
        candidates=tempo_candidates(f.onset, frame_rate=f.frame_rate),
        beat_match=float(np.mean(np.abs(near) <= BEAT_TOL_S)), beat_offset_s=float(np.median(near)),
    )


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    t0 = time.perf_counter()
    librosa.beat.beat_track(y=np.zeros(SR, np.float32), sr=SR)  # librosa's numba compilation, timed apart
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = [_measure(*rec) for rec in _recordings()]
    print(f"\nlibrosa warm-up (numba) {warm:.1f} s; {len(out)} recordings measured in "
          f"{time.perf_counter() - t0:.1f} s")
    return out


def _same(a: float, b: float) -> bool:
    return abs(a / b - 1.0) <= TEMPO_TOL


def test_onset_strength_is_librosas(rows):
    print(f"\n{'recording':18} onset corr (lag, frames)   fine envelope corr (lag, ms)")
    for r in rows:
        print(f"{r.name:18} {r.onset_corr:.4f} ({r.onset_lag:+d})            {r.fine_corr:.4f} ({1000 * r.fine_lag_s:+.1f})")
    for r in rows:
        assert r.onset_lag == LIBROSA_DELAY, r
        assert r.onset_corr >= MIN_ONSET_CORR, r
        assert r.fine_corr >= MIN_FINE_CORR, r
        assert abs(r.fine_lag_s) <= MAX_FINE_LAG_S, r


def test_chroma_is_librosas(rows):
    print(f"\n{'recording':18} chroma cosine  same strongest class")
    for r in rows:
        print(f"{r.name:18} {r.chroma_cos:.3f}          {r.chroma_argmax:.3f}")
    for r in rows:
        assert r.chroma_cos >= MIN_CHROMA_COS, r
        assert r.chroma_argmax >= MIN_CHROMA_ARGMAX, r


def test_beats_agree_with_librosa(rows):
    print(f"\n{'recording':18} {'truth':>6} {'ours':>7} {'librosa':>8}  beats within 70 ms  offset ms  candidates")
    for r in rows:
        print(f"{r.name:18} {r.tempo_true:6.1f} {r.tempo_ours:7.2f} {r.tempo_librosa:8.2f}  "
              f"{r.beat_match:18.3f}  {1000 * r.beat_offset_s:+9.1f}  {[round(c, 1) for c in r.candidates]}")
    same = [r for r in rows if _same(r.tempo_ours, r.tempo_librosa)]
    print(f"our first tempo at librosa's level in {len(same)} of {len(rows)}; elsewhere: "
          f"{[(r.name, round(r.tempo_ours / r.tempo_librosa, 3)) for r in rows if r not in same]}")
    # librosa's tempo is always one of ours
    for r in rows:
        assert any(_same(c, r.tempo_librosa) for c in r.candidates), r
    # where we take the same metrical level, the beats are librosa's, 2 frames (its centring) earlier
    for r in same:
        assert r.beat_match >= MIN_BEAT_MATCH, r
        assert abs(r.beat_offset_s + LIBROSA_DELAY * HOP / SR) <= OFFSET_TOL_S, r
    # the known weakness, counted: another level (2/3 of the tempo) in a few recordings
    assert len(same) >= MIN_SAME_LEVEL, [(r.name, r.tempo_ours, r.tempo_librosa) for r in rows]

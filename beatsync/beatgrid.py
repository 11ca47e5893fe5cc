"""The beat grid, honestly: the song's beats mapped through an alignment against the class
recording's own onsets at the song's beat level.

A beat tracker run on each recording alone may lock onto another metrical level or phase in each
(a class recording's tracker at 0.61 s against the song's 0.43 s): the two rows of ticks then never
line up, even for a perfect result. So the class side is not tracked on its own. The grid takes:

* the song's beats (one tracker run on the clean song: one metrical level, one phase), each snapped
  to the song's own sharpest onset within `SNAP_S` (`snap_to_onsets`), so that both recordings'
  times are read off the same kind of envelope;
* the class recording's onset peaks (`onset_peaks`: the summed fine onset envelope, 5.8 ms frames,
  interpolated between frames);
* for an alignment, every song beat mapped onto the video by the segment that plays it (with its
  rate), and the class onset nearest to it within a fraction of a beat (`match_beats`). A right
  result puts the mapped beats within a few milliseconds of the class's onsets; a wrong one shows
  the gap; where the class recording has no clear onsets (talk, noise), the beats are "not matched",
  which the page says in words rather than drawing it as an error.

Pure numpy; `beatsync.pipeline.beat_grid` computes the data once per job, the pages match it for the
alignment (and the nudge) they show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: onset peaks closer than this are one onset (s)
PEAK_SEP_S = 0.07
#: an onset peak must rise this many RMS of the summed envelope above its surroundings
PEAK_MIN = 1.5
#: a song beat moves to the song's own onset peak within this (s)
SNAP_S = 0.04
#: a mapped beat matches a class onset within this share of a beat period ...
MATCH_SHARE = 0.25
#: ... and never further than this (s)
MATCH_MAX_S = 0.12
#: below this share of matched beats, the class beats "could not be matched" ...
MIN_MATCHED = 0.5
#: ... nor when the gaps between beats and onsets vary more than this (ms): the onsets do not follow
#: the beats (measured: 1-3 ms on generated classes in a room with talk; onsets that fall anywhere
#: spread over the whole matching window, tens of ms)
MAX_SPREAD_MS = 25.0


def onset_peaks(env: np.ndarray, frame_rate: float, *, sep_s: float = PEAK_SEP_S, min_height: float = PEAK_MIN,
                t0_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Times (s, from ``t0_s``) and heights of the peaks of an onset envelope (``(bands, n)`` summed,
    or ``(n,)``), scaled to its RMS: local maxima within ``sep_s`` that reach ``min_height``; each
    time is interpolated between frames (parabola through the peak and its neighbours)."""
    o = np.asarray(env, dtype=np.float64)
    if o.ndim == 2:
        o = o.sum(axis=0)
    if len(o) < 3:
        return np.zeros(0), np.zeros(0)
    o = o - np.median(o)
    rms = float(np.sqrt(np.mean(o**2))) or 1.0
    o = o / rms
    half = max(1, int(round(sep_s * frame_rate / 2)))
    from scipy.ndimage import maximum_filter1d

    local_max = maximum_filter1d(o, size=2 * half + 1, mode="nearest")
    k = np.flatnonzero((o == local_max) & (o >= min_height))
    k = k[(k > 0) & (k < len(o) - 1)]
    if len(k) == 0:
        return np.zeros(0), np.zeros(0)
    keep = np.concatenate([[True], np.diff(k) > half])  # flat tops: one peak
    k = k[keep]
    y0, y1, y2 = o[k - 1], o[k], o[k + 1]
    den = y0 - 2 * y1 + y2
    d = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / np.where(den == 0, 1.0, den), 0.0)
    return t0_s + (k + np.clip(d, -0.5, 0.5)) / frame_rate, y1


def snap_to_onsets(beats_s, onsets_s, *, within_s: float = SNAP_S) -> np.ndarray:
    """Each beat moved to the nearest of ``onsets_s`` within ``within_s`` (kept where there is none)."""
    beats = np.asarray(beats_s, dtype=np.float64)
    onsets = np.sort(np.asarray(onsets_s, dtype=np.float64))
    if len(beats) == 0 or len(onsets) == 0:
        return beats
    near = _nearest(onsets, beats)
    d = np.abs(near - beats)
    return np.where(d <= within_s, near, beats)


def _nearest(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(sorted_values, x), 1, len(sorted_values) - 1)
    lo, hi = sorted_values[i - 1], sorted_values[i]
    return np.where(np.abs(x - lo) <= np.abs(hi - x), lo, hi)


@dataclass
class BeatMatch:
    """The song's beats mapped onto the video and the class onsets they meet (seconds, video time).

    ``mapped_s``: every song beat that a segment plays, where it is heard; ``segment``: that segment's
    index; ``class_s``: the class onset matched to it (NaN: none within ``tolerance_s`` of it);
    ``period_s``: the song's beat period on the video's timeline, per mapped beat.
    """

    mapped_s: np.ndarray
    class_s: np.ndarray
    segment: np.ndarray
    period_s: np.ndarray
    tolerance_s: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        return np.isfinite(self.class_s)

    @property
    def errors_s(self) -> np.ndarray:
        """Mapped beat minus its class onset (s), for the matched beats: + means the song is late."""
        m = self.matched
        return self.mapped_s[m] - self.class_s[m]

    @property
    def share_matched(self) -> float:
        return float(self.matched.mean()) if len(self.mapped_s) else 0.0

    def spread_ms(self) -> float | None:
        """How much the gaps between the matched beats and their onsets vary (ms, a robust standard
        deviation): a few ms when the class's onsets follow the song's beats (whatever the gap), about
        half the matching window when the onsets fall anywhere (talk, noise)."""
        e = self.errors_s
        if len(e) < 2:
            return None
        return float(1.4826 * np.median(np.abs(e - np.median(e))) * 1000)

    @property
    def can_match(self) -> bool:
        """Whether the class recording's onsets follow the song's beats, so that the grid can be read:
        most beats meet an onset (`MIN_MATCHED`) and the gaps are steady (`MAX_SPREAD_MS`)."""
        spread = self.spread_ms()
        return (len(self.mapped_s) >= 4 and self.share_matched >= MIN_MATCHED and spread is not None
                and spread <= MAX_SPREAD_MS)

    def median_error_ms(self) -> float | None:
        e = self.errors_s
        return float(np.median(np.abs(e)) * 1000) if len(e) else None

    def mean_error_ms(self) -> float | None:
        """The signed mean gap (ms), + when the song's beats come after the class's onsets."""
        e = self.errors_s
        return float(np.mean(e) * 1000) if len(e) else None


def match_beats(song_beats_s, class_onsets_s, segments, *, song_tempo_bpm: float = 0.0,
                nudge_s: float = 0.0) -> BeatMatch:
    """The song's beats mapped through ``segments`` (objects or dicts with ``dance_start_s``,
    ``dance_end_s``, ``bgm_start_s``, ``rate``; video time), moved ``nudge_s`` later, each matched to
    the nearest class onset within a quarter of a beat (at most `MATCH_MAX_S`)."""
    beats = np.sort(np.asarray(song_beats_s, dtype=np.float64))
    onsets = np.sort(np.asarray(class_onsets_s, dtype=np.float64))
    song_period = 60.0 / song_tempo_bpm if song_tempo_bpm > 0 else (
        float(np.median(np.diff(beats))) if len(beats) > 1 else 0.5)
    mapped, seg_i, period = [], [], []
    for i, s in enumerate(segments):
        d0, d1, b0, rate = (float(s[k] if isinstance(s, dict) else getattr(s, k))
                            for k in ("dance_start_s", "dance_end_s", "bgm_start_s", "rate"))
        t = d0 + (beats - b0) / rate
        t = t[(t >= d0) & (t <= d1)] + nudge_s
        mapped.append(t)
        seg_i.append(np.full(len(t), i))
        period.append(np.full(len(t), song_period / rate))
    t = np.concatenate(mapped) if mapped else np.zeros(0)
    seg = np.concatenate(seg_i).astype(int) if seg_i else np.zeros(0, int)
    per = np.concatenate(period) if period else np.zeros(0)
    order = np.argsort(t, kind="stable")
    t, seg, per = t[order], seg[order], per[order]
    tol = np.minimum(MATCH_SHARE * per, MATCH_MAX_S)
    cls = np.full(len(t), np.nan)
    if len(onsets) and len(t):
        near = _nearest(onsets, t) if len(onsets) > 1 else np.full(len(t), onsets[0])
        ok = np.abs(near - t) <= tol
        cls[ok] = near[ok]
    return BeatMatch(mapped_s=t, class_s=cls, segment=seg, period_s=per, tolerance_s=tol)

"""The global choice: which candidate line plays where in the recording.

Every candidate line is first measured on its own (`screen`: fine onset envelopes, window by
window, then a robust line fit), which turns a coarse guess into a precise line and tells where it
agrees. Then every line gets a score per window of a common grid (`evidence`): how much better than
chance the recording matches the song where the line puts it. A path through the grid (`best_path`,
dynamic programming) assigns each window one line or none, paying for every change:

* moving from one line to another (an edit of the song, or a new run at another speed) costs
  `COST_JUMP`, starting or stopping the music `COST_ON`/`COST_OFF`;
* so a split needs evidence that the line in use stops explaining the recording, not only that a
  piece also fits elsewhere: over a repeated section both placements score alike and the path stays
  on the one that explains the longest stretch (global context);
* where the song itself is quiet nothing can be told, and nothing is scored.

Runs of the path on the same line are one stretch of continuous playback, even across a gap (a
loud or noisy moment): the song cannot have stopped and come back at the very same place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from beatsync.align.lines import (
    WAVE_ALIKE,
    Fit,
    Line,
    Method,
    Signals,
    agreeing,
    corr_at,
    measure,
    refit,
    significance,
    z_at,
)

#: the common grid of windows (their centres at (i + 1/2) * GRID_S)
GRID_S = 2.0
#: screening and evidence on fine onset envelopes (both pitch modes)
SCREEN = Method("onset", win_s=4.0, hop_s=GRID_S, max_lag_s=0.3, tol_s=0.012)
#: screening and evidence on the waveforms at LOW_SR (pitch moved with the tempo only): detects the
#: song far below the noise, where onsets drown
WAVE_SCREEN = Method("wave_low", win_s=2.0, hop_s=GRID_S, max_lag_s=0.3, tol_s=0.004)
#: screening and evidence on log-mel spectra frame by frame (pitch kept only: for those lines the
#: waveform cannot be compared, and onsets line up every bar of a song with a steady beat)
SPECTRUM = Method("spectrum", win_s=4.0, hop_s=GRID_S, max_lag_s=0.3, tol_s=0.024)
#: what a window's z-score (correlation at the line's delay, in standard deviations of the window's
#: correlation over all lags searched) reaches by chance: the best of the lags within the tolerance,
#: about 1-2 for onsets (+-2 frames) and spectra (+-1 frame), 2-3 for waveforms (+-32 samples);
#: evidence counts above it
Z_CHANCE = {"onset": 2.5, "wave_low": 4.5}
#: spectra change slowly (a handful of lags per window), so their correlation peak is broad and its
#: z-score says little: for them the correlation at the line's delay counts, above what two passages of
#: music that are not the same reach (about 0.3), in steps of SPECTRUM_STEP
SPECTRUM_CHANCE, SPECTRUM_STEP = 0.3, 0.05
#: a window's evidence against a line is bounded (a loud moment of talk cannot veto a line); evidence for it
#: grows with the z-score, but only logarithmically past E_KNEE, so that one window cannot outweigh many
#: while an exact copy of the waveform still counts for more than a section that only sounds alike
E_MIN, E_KNEE = -2.0, 4.0
#: what a change of line costs, in windows' evidence: a jump to another line (an edit, a new run at
#: another speed) must be paid for by about two windows that only the new line explains; starting or
#: stopping the music by one
COST_JUMP = 8.0
COST_ON = COST_OFF = 4.0
#: a screened line is kept when this many of its onset windows agree beyond chance (-log10 p, see
#: `significance`) ...
MIN_SCREEN_SIGNIFICANCE = 1.0
#: ... or, for a whole-recording waveform line (already exact), when its correlation peak stands out so
#: far (in standard deviations; songs that are not there reach 5-6)
MIN_WAVE_Z = 6.5
#: at most this many lines go on to the global choice: the most significant, but no more than PER_WINDOW
#: of them for any window of the recording (a song whose bars repeat gives many look-alike lines in one
#: place, which must not crowd out the only line of another place)
MAX_CANDIDATES = 20
PER_WINDOW = 5


@dataclass
class Candidate:
    """A screened line with its evidence on the grid."""

    line: Line  # the precise line
    evidence: np.ndarray  # per grid window, bounded (for the path); -inf where the line maps outside the song
    excess: np.ndarray  # per grid window: the z-score above chance, unbounded (for comparing lines); NaN outside
    score: float  # of its screening (`screen`)
    song_dur: float  # the song's length (s)


def grid_size(sig: Signals) -> int:
    return max(1, int(np.floor(sig.dance_dur / GRID_S)))


def grid_centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) * GRID_S


def _sharpen(sig: Signals, line: Line, method: Method) -> Fit:
    """Measure ``line`` with ``method`` and fit it; once more around the fitted line if it moved (the
    windows far from where the first guess was right then see the song too)."""
    f = refit(measure(sig, line, method))
    if f.n_inliers >= 3:
        mid = float(np.median(f.centers[f.inlier & f.valid]))
        if not f.line.same_as(line, at=mid, tol_s=method.tol_s / 2) or abs(f.line.rate / line.rate - 1) > 1e-4:
            f2 = refit(measure(sig, f.line, method))
            if f2.n_inliers >= f.n_inliers:
                f = f2
    return f


def screen(sig: Signals, lines: list[Line], *, known: list[Line] = ()) -> list[tuple[Line, Fit, float]]:
    """Measure every line over where it maps inside the song and fit it precisely (fine onset envelopes;
    a whole-recording waveform line is exact already). Keep the ones whose onsets agree beyond chance
    (a whole-recording waveform line on its own evidence), without lines that converge onto one kept before
    or onto a ``known`` one, and rank them by what a close look at their waveforms (pitch kept: spectra)
    says: (line, onset fit, score), the best first, at most MAX_CANDIDATES, no more than PER_WINDOW of them
    for any window."""
    trials = max(1, len(lines))
    out: list[tuple[Line, Fit, float]] = []
    for ln in lines:
        if ln.source == "wave":
            if ln.score < MIN_WAVE_Z:
                continue
            line, f = ln, measure(sig, ln, SCREEN)
        else:
            f = _sharpen(sig, ln, SCREEN)
            line = f.line
            if significance(f, trials=trials) < MIN_SCREEN_SIGNIFICANCE:
                continue
        # onsets line up a song with a steady beat with itself every bar (and other songs of the same
        # tempo): where the pitch follows the tempo the waveforms decide, where it was kept the spectra
        line, score = (waveform_score if line.mode == "speed" else spectrum_score)(sig, line, f)
        mid = float(np.median(f.centers[f.valid])) if f.valid.any() else line.offset
        if any(line.same_as(g, at=mid) for g in [o[0] for o in out] + list(known)):
            continue
        out.append((line, f, score))
    out.sort(key=lambda x: -x[2])
    chosen, load = [], np.zeros(grid_size(sig), int)
    for line, f, sig_ in out:
        idx = np.round(f.centers[f.inlier & f.valid] / GRID_S - 0.5).astype(int)
        idx = idx[(idx >= 0) & (idx < len(load))]
        if len(chosen) >= MAX_CANDIDATES or (len(idx) and np.all(load[idx] >= PER_WINDOW)):
            continue
        load[idx] += 1
        chosen.append((line, f, sig_))
    return chosen


#: a close look at a line: this many windows spread over where its onsets agree with it
CHECK_WINDOWS = 16


def _check_windows(onset: Fit) -> np.ndarray:
    """Where to look at a line closely: (at most CHECK_WINDOWS of) the windows where its onsets agree with it,
    else all of it."""
    where = onset.centers[agreeing(onset)]
    if len(where) < 3:
        where = onset.centers[onset.valid]
    if len(where) > CHECK_WINDOWS:
        where = where[np.linspace(0, len(where) - 1, CHECK_WINDOWS).round().astype(int)]
    return where


def waveform_score(sig: Signals, line: Line, onset: Fit) -> tuple[Line, float]:
    """A close look at the song's own waveform where ``line`` puts it (`_check_windows`): the line fitted
    again on those waveform windows (onsets leave a line a few ms off, or its rate a little: the waveforms
    pin it), and how clearly they hold the song there: their z-scores above chance, summed, counting only
    windows that are also alike (`WAVE_ALIKE`). Large for the song itself, much smaller for a section that
    only resembles it, about 0 for a line that only matches the rhythm (a song with a steady beat lines up
    with itself, by its onsets, every bar). For a line whose pitch follows the tempo."""
    f = refit(measure(sig, line, WAVE_SCREEN, centers=_check_windows(onset)))
    if f.n_inliers >= 4:
        line = f.line
    z = z_at(replace(f, tol_s=0.015), line)  # within 15 ms: a line fitted on onsets is that close
    x = np.where(f.valid & (f.strength >= WAVE_ALIKE), z - Z_CHANCE["wave_low"], 0.0)
    return line, float(np.clip(x, 0.0, None).sum())


def spectrum_score(sig: Signals, line: Line, onset: Fit) -> tuple[Line, float]:
    """The same for a pitch-kept line, whose waveform cannot be compared: its spectrum windows' likeness
    above chance (`spectrum_excess`), summed (the line as it is)."""
    f = measure(sig, line, SPECTRUM, centers=_check_windows(onset))
    return line, float(np.clip(np.where(f.valid, spectrum_excess(f, line), 0.0), 0.0, None).sum())


def spectrum_excess(f: Fit, line: Line) -> np.ndarray:
    """How much more alike than two passages of music that are not the same, per spectrum window of ``f``
    where ``line`` puts the song."""
    return (corr_at(f, line) - SPECTRUM_CHANCE) / SPECTRUM_STEP


def _put(e: np.ndarray, x: np.ndarray, f: Fit, score: np.ndarray, kind: str) -> None:
    """Enter ``score`` of ``f``'s windows (a z-score, or for spectra already the excess over chance) into the
    grid's evidence ``e`` and excess ``x``, keeping the larger where another measurement is there already."""
    n = len(e)
    idx = np.round(f.centers / GRID_S - 0.5).astype(int)
    ok = f.valid & (idx >= 0) & (idx < n)
    ex = np.nan_to_num(score[ok], nan=0.0) - Z_CHANCE.get(kind, 0.0)
    e[idx[ok]] = np.maximum(e[idx[ok]], bounded(ex))
    x[idx[ok]] = np.fmax(x[idx[ok]], ex)


def bounded(x: np.ndarray) -> np.ndarray:
    """Evidence from a z-score above chance: linear down to E_MIN, logarithmic above E_KNEE."""
    return np.where(x > 0, E_KNEE * np.log2(1 + np.maximum(x, 0) / E_KNEE), np.maximum(x, E_MIN))


def candidate(sig: Signals, line: Line, onset: Fit, score: float, n: int) -> Candidate:
    """Score a screened line on the grid: onset agreement, and for a line whose pitch follows the tempo
    also waveform agreement (the larger counts; the waveforms also fit the line anew over all of it when
    they agree), for a pitch-kept line spectral agreement;
    0 where the song is quiet at that place; -inf where the line does not map inside the song."""
    e = np.full(n, -np.inf)
    x = np.full(n, np.nan)
    if line.mode == "speed":
        w = refit(measure(sig, line, WAVE_SCREEN))
        if w.n_inliers >= 4 and significance(w, trials=MAX_CANDIDATES) > 2.0:
            line = w.line
        _put(e, x, w, z_at(w, line), "wave_low")
    _put(e, x, onset, z_at(onset, line), "onset")
    if line.mode == "stretch":
        sp = measure(sig, line, SPECTRUM)
        _put(e, x, sp, spectrum_excess(sp, line), "spectrum")
    known = np.isfinite(e)
    quiet = known & sig.song_is_quiet(line.bgm_time(grid_centres(n)))
    e[quiet] = np.maximum(e[quiet], 0.0)
    return Candidate(line, e, x, score, sig.bgm_dur)


def candidates(sig: Signals, lines: list[Line], *, known: list[Candidate] = ()) -> list[Candidate]:
    """Screen ``lines`` and score the new ones on the grid (lines already among ``known`` are skipped)."""
    n = grid_size(sig)
    return [candidate(sig, line, f, s_, n) for line, f, s_ in screen(sig, lines, known=[c.line for c in known])]


def best_path(E: np.ndarray, *, cost_on: np.ndarray | None = None, cost_off: np.ndarray | None = None) -> np.ndarray:
    """The best assignment of lines to windows: ``E`` is (lines, windows) evidence; returns one state
    per window, ``-1`` for no music, else the line's row (Viterbi, free start and end). ``cost_on`` and
    ``cost_off`` (lines, windows) are what starting a line at a window and stopping it after one cost
    (default COST_ON and COST_OFF everywhere); a jump from one line to another costs COST_JUMP."""
    K, n = E.shape
    if n == 0:
        return np.zeros(0, np.int64)
    c_on = np.full((K, n), COST_ON) if cost_on is None else cost_on
    c_off = np.full((K, n), COST_OFF) if cost_off is None else cost_off
    # state 0 = no music, state k + 1 = line k
    S = np.vstack([np.zeros(n), E])
    score = S[:, 0].copy()
    back = np.zeros((K + 1, n), np.int64)
    lines = np.arange(1, K + 1)
    for i in range(1, n):
        prev = score
        new = np.empty(K + 1)
        # to "no music": stay, or stop a line after window i - 1
        if K:
            stops = prev[1:] - c_off[:, i - 1]
            k = int(np.argmax(stops))
            new[0], back[0, i] = (prev[0], 0) if prev[0] >= stops[k] else (stops[k], k + 1)
            # to line k: stay, start it, or jump from the best other line
            if K >= 2:
                order = np.argsort(prev[1:])[::-1][:2] + 1
                other = np.where(lines == order[0], order[1], order[0])
                jump = prev[other] - COST_JUMP
            else:
                other = np.zeros(K, np.int64)
                jump = np.full(K, -np.inf)
            stay = prev[1:]
            start = prev[0] - c_on[:, i]
            choice = np.argmax(np.vstack([stay, start, jump]), axis=0)
            new[1:] = np.choose(choice, [stay, start, jump])
            back[1:, i] = np.choose(choice, [lines, np.zeros(K, np.int64), other])
        else:
            new[0] = prev[0]
        score = new + S[:, i]
        score[~np.isfinite(score)] = -np.inf
    states = np.zeros(n, np.int64)
    states[-1] = int(np.argmax(score))
    for i in range(n - 1, 0, -1):
        states[i - 1] = back[states[i], i]
    return states - 1


@dataclass
class Run:
    """A stretch of the path on one line: grid windows [i0, i1) and, merged across gaps of no music,
    the stretches where the path really was on it."""

    k: int
    i0: int
    i1: int

    def span(self) -> tuple[float, float]:
        return self.i0 * GRID_S, self.i1 * GRID_S


def runs_of(states: np.ndarray) -> list[Run]:
    """The path's runs of one line, in order; consecutive runs of the same line with only no-music
    windows between them are merged (the song played on through the gap)."""
    runs: list[Run] = []
    i = 0
    n = len(states)
    while i < n:
        j = i
        while j < n and states[j] == states[i]:
            j += 1
        if states[i] >= 0:
            if runs and runs[-1].k == states[i] and all(s < 0 for s in states[runs[-1].i1:i]):
                runs[-1].i1 = j
            else:
                runs.append(Run(int(states[i]), i, j))
        i = j
    return runs


def choose(cands: list[Candidate]) -> list[Run]:
    """The path's runs over the candidates' evidence (see the module's docstring). Starting a line in the
    window where its song begins, or stopping it where its song ends, is free: that is how songs are
    played; starting or stopping in the middle of the song costs COST_ON/COST_OFF."""
    if not cands:
        return []
    E = np.vstack([c.evidence for c in cands])
    K, n = E.shape
    cost_on = np.full((K, n), COST_ON)
    cost_off = np.full((K, n), COST_OFF)
    for k, c in enumerate(cands):
        i0 = int(np.floor(float(c.line.dance_time(0.0)) / GRID_S))
        i1 = int(np.floor(float(c.line.dance_time(c.song_dur)) / GRID_S))
        for i in (i0, i0 + 1):
            if 0 <= i < n:
                cost_on[k, i] = 0.0
        for i in (i1 - 1, i1):
            if 0 <= i < n:
                cost_off[k, i] = 0.0
    return runs_of(best_path(E, cost_on=cost_on, cost_off=cost_off))

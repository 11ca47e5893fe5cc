"""From the chosen path to segments: per-segment refinement, edges and edit points, verification,
alternatives and confidence.

Each run of the path (structure.py) is one stretch of the song played continuously at one rate. It
is refined on its own span only (so each side of an edit, each run-through, gets its own offset and
rate), its ends are placed on the waveforms, and it is verified against chance before it becomes a
`Segment`. What is left decides the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from beatsync.align import structure
from beatsync.align.lines import (
    Fit,
    Line,
    Method,
    Signals,
    measure,
    refit,
    standardised,
    subtract,
    windowed_delays,
    z_at,
)
from beatsync.align.result import Alternative, Segment, reference_segment
from beatsync.align.structure import GRID_S, Candidate, Run, grid_centres

#: per-segment refinement: GCC-PHAT on the waveforms (sample precision, pitch follows the tempo) ...
REFINE_WAVE = Method("wave", win_s=1.0, hop_s=0.5, max_lag_s=0.1, tol_s=0.0015)
#: ... or fine onset envelopes (pitch kept, or an engine that works on beats)
REFINE_ONSET = Method("onset", win_s=4.0, hop_s=0.5, max_lag_s=0.15, tol_s=0.008)
#: a long segment is refined on at most this many windows, spread evenly (linear fit: plenty)
MAX_REFINE_WINDOWS = 120
#: below this length a segment keeps the rate of its line (too short to measure its own)
MIN_RATE_SPAN_S = 12.0
#: a shorter piece cannot be verified on its own, and is left out
MIN_PIECE_S = 3.0

#: short-window waveform check: window length, lag search, null shifts (s)
SHORT_WIN_S = 0.25
SHORT_LAG_S = 0.025
NULL_SHIFTS_S = (0.31, -0.43, 0.57)
#: share of short windows that must be clearly alike (beyond the null's 90th percentile)
MIN_STRONG = 0.2


@dataclass
class Piece:
    """A run of the path on its way to a segment."""

    k: int  # the candidate it came from
    line: Line
    start: float  # dance s
    end: float
    fit: Fit | None = None  # the refinement
    check: dict | None = None  # verification
    after_edit: bool = False  # starts where the previous piece ends (an edit or a speed change, no pause)
    wave: Fit | None = None  # the line measured on the waveforms (pitch following the tempo)

    def exact(self) -> tuple[Line, float]:
        """The piece's line as precisely as it is known, for placing its edges, and that precision (s): to
        a sample or two where the waveforms agree with it, to about an onset frame otherwise."""
        if self.wave is not None and self.wave.n_inliers >= 3:
            return self.wave.line, 0.002
        return self.line, 0.012


# ----------------------------------------------------------------------------- short-window likeness


def short_likeness(sig: Signals, line: Line, t: np.ndarray, *, dt: float = 0.0, win_s: float = SHORT_WIN_S,
                   lag_s: float = SHORT_LAG_S) -> np.ndarray:
    """Best waveform correlation (within ``lag_s``) of short windows centred at dance times ``t`` with
    the song where ``line`` (moved by ``dt`` s) puts it; NaN where out of range. For a pitch-kept line
    the song is not resampled and each window is placed at the line's song time of its centre (the
    time stretch only keeps the waveform locally)."""
    sr = sig.sr
    n = int(win_s * sr)
    lag = max(1, int(lag_s * sr))
    t = np.asarray(t, dtype=np.float64)
    starts = np.round((t - win_s / 2) * sr).astype(np.int64)
    ok = (starts >= 0) & (starts + n <= len(sig.dance))
    out = np.full(len(t), np.nan)
    if not ok.any():
        return out
    moved = replace(line, offset=line.offset + dt)
    a, b, _, shift, _ = sig.placed("wave", moved, starts[ok], n)
    tau = moved.bgm_time(t[ok])
    inside = (tau - win_s / 2 >= 0) & (tau + win_s / 2 <= sig.bgm_dur)
    res = windowed_delays(a, b, shift, starts[ok], n=n, max_lag=lag, phat=True).ncc
    out[ok] = np.where(inside, res, np.nan)
    return out


def verify_waveform(sig: Signals, line: Line, span: tuple[float, float], *, max_windows: int = 60) -> dict:
    """Is the song's *waveform* really in the recording along ``line`` over ``span``?

    Rhythm alone can line up two different songs at a similar tempo; waveforms cannot. Short windows
    are compared with the song where the line puts it and at deliberately wrong places (the null).
    Returns {"true", "null", "strong", "strong_null", "ok"}: median likeness on the line and off it,
    the share of windows above the null's 90th percentile (at least 0.15) on and off the line.
    """
    a, b = span
    n = int(np.clip((b - a) / 0.5, 3, max_windows))
    t = np.linspace(a + SHORT_WIN_S, b - SHORT_WIN_S, n) if b - a > 2 * SHORT_WIN_S else np.array([])
    on = short_likeness(sig, line, t)
    off = np.concatenate([short_likeness(sig, line, t, dt=dt) for dt in NULL_SHIFTS_S]) if len(t) else on
    on, off = on[np.isfinite(on)], off[np.isfinite(off)]
    if len(on) < 3 or len(off) < 3:
        return {"true": 0.0, "null": 0.0, "strong": 0.0, "strong_null": 0.0, "ok": False}
    strong = max(0.15, float(np.percentile(off, 90)))
    frac_on, frac_off = float(np.mean(on > strong)), float(np.mean(off > strong))
    true, null = float(np.median(on)), float(np.median(off))
    ok = frac_on >= max(MIN_STRONG, 2.5 * frac_off) and true > null
    return {"true": round(true, 4), "null": round(null, 4), "strong": round(frac_on, 3),
            "strong_null": round(frac_off, 3), "ok": bool(ok)}


# ----------------------------------------------------------------------------- refinement


def refine_piece(sig: Signals, piece: Piece, *, method: Method) -> Fit:
    """The piece's line refined on its own span (offset, and the rate when the span is long enough)."""
    span = (max(0.0, piece.start), min(sig.dance_dur, piece.end))
    f = measure(sig, piece.line, method, span=span, max_windows=MAX_REFINE_WINDOWS)
    out = refit(f, keep_rate=span[1] - span[0] < MIN_RATE_SPAN_S)
    # a second pass centred on the refined line (its windows now see the song where it really is)
    if out.n_inliers >= 3 and abs(out.line.offset - piece.line.offset) > method.tol_s / 2:
        f2 = refit(measure(sig, out.line, method, span=span, max_windows=MAX_REFINE_WINDOWS),
                   keep_rate=span[1] - span[0] < MIN_RATE_SPAN_S)
        if f2.n_inliers >= out.n_inliers:
            out = f2
    return out


def settle_mode(sig: Signals, piece: Piece) -> Line:
    """At practice speed, whether the pitch moved with the tempo ("speed") or was kept ("stretch"):
    the mode under which the waveforms are more alike."""
    line = piece.line
    if abs(line.rate - 1.0) <= 0.01:
        return replace(line, mode="speed")
    t = np.linspace(piece.start + 1.0, piece.end - 1.0, 40) if piece.end - piece.start > 3 else np.array([])
    if not len(t):
        return line
    scores = {}
    for mode in ("speed", "stretch"):
        v = short_likeness(sig, replace(line, mode=mode), t, lag_s=0.01 if mode == "speed" else SHORT_LAG_S)
        scores[mode] = float(np.nanmedian(v)) if np.isfinite(v).any() else -1.0
    return replace(line, mode=max(scores, key=scores.get))


# ----------------------------------------------------------------------------- edges


#: how far (s) an edge may move outward when the waveforms keep matching beyond a run, and inward
EDGE_EXTEND_S = 30.0
EDGE_INWARD_S = 15.0


def _change_point(d: np.ndarray) -> int:
    """The split of ``d`` (ordered outside -> inside) into a first part that scores below zero and a second
    that scores above: the number of leading values to cut (the largest difference of running sums; of
    equal splits the innermost, so that no music is claimed where nothing says it plays)."""
    if len(d) == 0:
        return 0
    cs = np.concatenate([[0.0], np.cumsum(d)])
    gain = cs[-1] - 2 * cs  # -sum(d[:k]) + sum(d[k:])
    return int(len(gain) - 1 - np.argmax(gain[::-1]))


#: where short windows place an edge precisely: the share of the way from chance to the level inside
SHARP_SHARE = 0.5


def music_edges(sig: Signals, line: Line, start: float, end: float, *, lo_limit: float, hi_limit: float,
                move_start: bool = True, move_end: bool = True, tol_s: float = 0.002) -> tuple[float, float]:
    """Where the song starts and stops around [start, end] on ``line`` (the path's run, to a grid
    window). Windows measure how clearly the recording holds the song on the line (`short_match`), each
    scored against a threshold between the levels by chance (the line moved off by a fraction of a beat)
    and on the run; the edge is the change point between the windows outside (below) and inside (above),
    so that a sparse moment of the music or talk over the first bars does not move it. Two window lengths
    count: short ones place the edge sharply where the song is clear, long ones still hear it where it is
    soft or far under the noise. An edge may move outward as far as the song keeps matching, up to
    EDGE_EXTEND_S, never past ``lo_limit``/``hi_limit`` or the song's own ends; close to the song's own
    first or last sample, it snaps there. ``tol_s``: how precisely the line is known."""
    hop = 0.05
    reach = GRID_S
    song_start = float(line.dance_time(0.0))
    song_end = float(line.dance_time(sig.bgm_dur))
    # a pitch-kept line holds the waveform only between splices, and drifts off a window's centre through it:
    # middling windows only
    base = SHORT_WIN_S if line.mode == "speed" else 2 * SHORT_WIN_S
    scales = []
    for win in (base, 4 * base) if line.mode == "speed" else (base,):
        probe = np.linspace(start + win, end - win, 60) if end - start > 2 * win else np.array([])
        if not len(probe):
            continue
        on = np.nan_to_num(short_match(sig, line, probe, win_s=win, tol_s=tol_s))
        off = np.nan_to_num(short_match(sig, replace(line, offset=line.offset + NULL_SHIFTS_S[0]), probe, win_s=win,
                                        tol_s=tol_s))
        lo_level, hi_level = float(np.median(off)), float(np.median(on))
        if hi_level > lo_level + 1.0:
            # a window holds the song when it clearly beats chance: halfway to the typical level inside, but
            # never asking more than 3 standard deviations above chance (sparse bars of a song score lower)
            scales.append((win, lo_level, hi_level, lo_level + min(0.5 * (hi_level - lo_level), 3.0)))

    def score(lo: float, hi: float, fine: bool) -> tuple[np.ndarray, np.ndarray]:
        """Window centres over [lo, hi] and their evidence, -1 (chance) .. +1 (as inside), summed over scales
        (each measured at a fifth of its window length and interpolated, unless ``fine``)."""
        c = np.arange(lo + base / 2, hi - base / 2 + 1e-9, hop)
        total = np.zeros(len(c))
        for win, lo_level, hi_level, thr in scales:
            if fine and win == base:
                thr = max(thr, lo_level + SHARP_SHARE * (hi_level - lo_level))
            step = hop if fine else max(hop, win / 5)
            cw = np.arange(lo + base / 2, hi - base / 2 + step, step)
            z = np.interp(c, cw, np.nan_to_num(short_match(sig, line, cw, win_s=win, tol_s=tol_s), nan=thr))
            d = np.clip(z, lo_level, hi_level) - thr  # no window there: no evidence
            total += np.where(d > 0, d / (hi_level - thr), d / (thr - lo_level))
        total[sig.song_is_quiet(line.bgm_time(c))] = 0.0  # a soft passage of the song tells nothing
        return c, total

    def edge(lo: float, hi: float, outside_first: bool) -> float | None:
        """The change point over [lo, hi], found coarsely, then again with every window measured within a
        long window's length of it, the short windows now asked to hold the song SHARP_SHARE of the way to
        the level inside: a window that holds a sliver of clear music beats chance by far, which would move
        the edge outward by most of a window."""
        at = None
        for fine in (False, True):
            c, d = score(lo, hi, fine)
            if not len(c):
                break
            if not outside_first:
                c, d = c[::-1], d[::-1]
            k = _change_point(d)
            if k == 0:
                at = lo if outside_first else hi
            else:
                at = float(0.5 * (c[k - 1] + c[min(k, len(c) - 1)]))
            reach_fine = max(w for w, *_ in scales)
            lo, hi = max(lo, at - reach_fine), min(hi, at + reach_fine)
        return at

    if scales:
        # the path's run ends on its grid, and may run on a few windows past the music (talk just after it
        # scores little either way): look well inside it too
        inward = max(2 * reach, min(EDGE_INWARD_S, 0.5 * (end - start)))
        if move_start:
            at = edge(max(0.0, lo_limit, song_start, start - max(reach, EDGE_EXTEND_S)), min(end, start + inward),
                      True)
            start = start if at is None else at
        if move_end:
            at = edge(max(start, end - inward), min(sig.dance_dur, hi_limit, song_end, end + max(reach, EDGE_EXTEND_S)),
                      False)
            end = end if at is None else at
    if move_start and song_start > 0.0 and abs(start - song_start) <= reach:
        start = song_start
    if move_end and song_end < sig.dance_dur and abs(end - song_end) <= reach:
        end = song_end
    return max(start, lo_limit, 0.0), min(end, hi_limit, sig.dance_dur)


def short_match(sig: Signals, line: Line, t: np.ndarray, *, win_s: float, beta: float = 1.0,
                tol_s: float = 0.002) -> np.ndarray:
    """How clearly short windows centred at dance times ``t`` hold the song where ``line`` puts it: the
    GCC-PHAT correlation at the line's delay (within ``tol_s``: how precisely the line is known; at least
    12 ms for a pitch-kept line, whose splices jitter), in standard deviations of the window's correlation
    over +-20 ms or more. Whitened (``beta``, see `windowed_delays`), so that bass and room reverberation do
    not decide; NaN where out of range."""
    sr = sig.sr
    n = int(win_s * sr)
    t = np.asarray(t, dtype=np.float64)
    starts = np.round((t - win_s / 2) * sr).astype(np.int64)
    ok = (starts >= 0) & (starts + n <= len(sig.dance))
    out = np.full(len(t), np.nan)
    if not ok.any():
        return out
    tol = max(1, int((max(tol_s, 0.012) if line.mode == "stretch" else tol_s) * sr))
    a, b, _, shift, _ = sig.placed("wave", line, starts[ok], n)
    max_lag = int(max(0.02, 4 * tol / sr) * sr)
    dl = windowed_delays(a, b, shift, starts[ok], n=n, max_lag=max_lag, phat=True, keep_curves=True,
                         beta=beta)
    z = standardised(dl.curve)[:, max_lag - tol:max_lag + tol + 1].max(axis=1)
    tau = line.bgm_time(t[ok])
    out[ok] = np.where((tau - win_s / 2 >= 0) & (tau + win_s / 2 <= sig.bgm_dur), z, np.nan)
    return out


EDIT_BETA = 0.8


def _split(sig: Signals, before: Line, after: Line, lo: float, hi: float, *, win_s: float, hop_s: float,
           tol_s: tuple[float, float]) -> float:
    c = np.arange(lo + win_s / 2, hi - win_s / 2 + 1e-9, hop_s)
    if len(c) < 3:
        return 0.5 * (lo + hi)
    # mostly whitened: the timing of every sound counts, and a little of its spectrum too, so that the
    # same drum hit at both places (a cut on a downbeat) does not hide which part of the song goes on
    d = (np.nan_to_num(short_match(sig, before, c, win_s=win_s, beta=EDIT_BETA, tol_s=tol_s[0]))
         - np.nan_to_num(short_match(sig, after, c, win_s=win_s, beta=EDIT_BETA, tol_s=tol_s[1])))
    # split after window k (windows 0..k go to `before`): maximise sum(d[:k+1]) - sum(d[k+1:])
    cs = np.cumsum(d)
    gain = 2 * cs - cs[-1]
    k = int(np.argmax(gain))
    return float(c[k] + hop_s / 2) if k < len(c) - 1 else float(c[-1] + win_s / 2)


def edit_point(sig: Signals, before: Line, after: Line, lo: float, hi: float, *,
               tol_s: tuple[float, float] = (0.002, 0.002)) -> float:
    """Where the song jumps from ``before`` to ``after`` (an edit, or a change of speed with no pause),
    between dance times ``lo`` and ``hi``: the time that best splits short windows into those that hold
    the song on the first line and those that hold it on the second (largest difference of running
    sums); first with 0.2-s windows over the whole range, then with 0.08-s windows around that."""
    t = _split(sig, before, after, lo, hi, win_s=0.2, hop_s=0.02, tol_s=tol_s)
    return _split(sig, before, after, max(lo, t - 0.3), min(hi, t + 0.3), win_s=0.08, hop_s=0.005, tol_s=tol_s)


# ----------------------------------------------------------------------------- assembly


@dataclass
class Assembled:
    segments: list[Segment]
    alternatives: list[Alternative]
    confidence: float
    evidence: dict
    #: the lines that were candidates, and the path's runs over them
    lines: list[Line] = field(default_factory=list)
    path: list[dict] = field(default_factory=list)


def pieces_of(cands: list[Candidate], runs: list[Run]) -> list[Piece]:
    """The path's runs as pieces: spans in dance seconds, adjacent runs marked as meeting at an edit."""
    out: list[Piece] = []
    for r in runs:
        a, b = r.span()
        out.append(Piece(r.k, cands[r.k].line, a, b, after_edit=bool(out) and abs(out[-1].end - a) < 1e-9))
    return out


def place_edges(sig: Signals, pieces: list[Piece]) -> None:
    """Sharpen every piece's ends: edit points between pieces that meet, music starts and stops
    elsewhere (never into a neighbour)."""
    for i, p in enumerate(pieces):
        if i + 1 < len(pieces) and pieces[i + 1].after_edit:
            q = pieces[i + 1]
            (lp, tp), (lq, tq) = p.exact(), q.exact()
            t = edit_point(sig, lp, lq, max(p.start, p.end - 2 * GRID_S), min(q.end, q.start + 2 * GRID_S),
                           tol_s=(tp, tq))
            p.end, q.start = t, t
    for i, p in enumerate(pieces):
        prev_end = pieces[i - 1].end if i else 0.0
        next_start = pieces[i + 1].start if i + 1 < len(pieces) else sig.dance_dur
        edit_before = p.after_edit
        edit_after = i + 1 < len(pieces) and pieces[i + 1].after_edit
        line, tol = p.exact()
        p.start, p.end = music_edges(sig, line, p.start, p.end, lo_limit=prev_end, hi_limit=next_start,
                                     move_start=not edit_before, move_end=not edit_after, tol_s=tol)


def to_segment(p: Piece, *, dance_dur: float, bgm_dur: float) -> Segment | None:
    """A Segment for the piece, clipped to the video and to the song file."""
    line = p.line
    lo = max(p.start, 0.0, float(line.dance_time(0.0)))
    hi = min(p.end, dance_dur, float(line.dance_time(bgm_dur)))
    if hi - lo < 0.5:
        return None
    match = 0.0
    if p.fit is not None and len(p.fit.centers):
        inside = p.fit.valid & (p.fit.centers >= lo) & (p.fit.centers <= hi)
        match = float(np.count_nonzero(p.fit.inlier & inside)) / max(1, int(inside.sum()))
    return Segment(dance_start_s=lo, dance_end_s=hi, bgm_start_s=float(line.bgm_time(lo)), rate=line.rate,
                   mode=line.mode, match=match)


def span_evidence(cand: Candidate, span: tuple[float, float]) -> float:
    """How much better than chance a candidate explains the grid windows inside ``span`` (its z-scores
    above chance, summed, unbounded: a placement that only half matches scores well below the true one
    even where both clearly match)."""
    c = grid_centres(len(cand.excess))
    inside = (c >= span[0]) & (c <= span[1])
    x = cand.excess[inside]
    return float(np.clip(x[np.isfinite(x)], 0.0, None).sum())


#: an alternative placement that explains the main segment's stretch this nearly as well as the chosen one
#: makes the result ambiguous (`decide` warns; the confidence falls from here to 0 at a tie)
AMBIGUOUS_SCORE = 0.7
#: an edit piece that another placement explains this nearly as well is left out (which part of the song
#: it is cannot be told)
AMBIGUOUS_EDIT = 0.85


def piece_ambiguity(cands: list[Candidate], p: Piece) -> float:
    """How nearly the best other candidate explains the piece's span, relative to its own line (0..1+)."""
    span = (p.start, p.end)
    own = span_evidence(cands[p.k], span)
    if own <= 0:
        return 1.0
    mid = 0.5 * (p.start + p.end)
    others = [span_evidence(c, span) for k, c in enumerate(cands)
              if k != p.k and not c.line.same_as(cands[p.k].line, at=mid, tol_s=0.3)]
    return max(others, default=0.0) / own


def drop_ambiguous_edits(cands: list[Candidate], pieces: list[Piece]) -> tuple[list[Piece], list[Piece]]:
    """Leave out the pieces that meet another piece at a jump (an edit) but could just as well be another
    place of the song (a section that repeats): rather no song there than the wrong part of it. A piece
    on its own is kept (its ambiguity lowers the confidence), and so is the clearest piece of all."""
    amb = [piece_ambiguity(cands, p) if p.after_edit or (i + 1 < len(pieces) and pieces[i + 1].after_edit) else 0.0
           for i, p in enumerate(pieces)]
    clearest = int(np.argmin(amb)) if amb else -1
    keep = [p for i, p in enumerate(pieces) if amb[i] < AMBIGUOUS_EDIT or i == clearest]
    return keep, [p for p in pieces if p not in keep]


#: how many standard deviations more clearly, in the median, the recording's waveform windows hold the song
#: on a piece's line than on the same line moved off by a beat or a fraction of one: far under the noise
#: the song's own waveform still stands out by 2.7 or more in every recording made for this; a song that
#: only shares drum sounds and tempo with this one stands out by less than 1.5
MIN_WAVE_CONTRAST = 2.0


def wave_contrast(sig: Signals, p: Piece, *, windows: int = 40) -> float:
    """How much more clearly the piece's waveform windows hold the song on its line than off it (see
    MIN_WAVE_CONTRAST): median GCC-PHAT z-score on the line minus the largest of those on the line moved
    by +-1 beat of the song, +0.31 s and -0.43 s."""
    line = p.exact()[0]  # the waveform's own line (a line refined on onsets is a few ms off)
    on = z_at(p.wave, line)[p.wave.valid]
    tempo = sig.beats()[2]
    beat = 60.0 / tempo if tempo > 0 else 0.5
    off = [measure(sig, replace(line, offset=line.offset + dt), REFINE_WAVE, span=(p.start, p.end),
                   max_windows=windows) for dt in (beat, -beat, 0.31, -0.43)]
    off_z = [np.median(f.z[f.valid]) for f in off if np.count_nonzero(f.valid) >= 3]
    if len(on) < 3 or not off_z:
        return 0.0
    # against the likeliest of the wrong places: sounds that fall on the song's beats (drums a song shares with
    # another, claps) line up just as well a beat off
    return float(np.median(on) - max(off_z))


def verify(sig: Signals, p: Piece) -> dict:
    """Is the song really there along the piece? Its short windows are clearly more alike on the line than
    off it (`verify_waveform`); or, where the pitch follows the tempo, its waveform windows hold the song
    clearly more on the line than off it (`wave_contrast`): the waveform's timing survives reverberation
    and noise that blur the short windows' likeness, and a song that only shares a beat or drum sounds
    with this one does not stand out."""
    check = verify_waveform(sig, p.line, (p.start, p.end))
    contrast = 0.0
    if p.line.mode == "speed":
        p.wave = p.fit if p.fit is not None and p.fit.method == "wave" else refit(
            measure(sig, p.line, REFINE_WAVE, span=(p.start, p.end), max_windows=MAX_REFINE_WINDOWS))
        contrast = wave_contrast(sig, p)
    check["contrast"] = round(contrast, 2)
    check["ok"] = bool(check["ok"] or contrast >= MIN_WAVE_CONTRAST)
    return check


def assemble(sig: Signals, cands: list[Candidate], runs: list[Run], *, method_for) -> Assembled:
    """Refine, place and verify the path's runs; the verified ones become segments.

    ``method_for(line) -> Method`` is the engine's refinement.
    """
    pieces = pieces_of(cands, runs)
    kept: list[Piece] = []
    verdicts = []
    for p in pieces:
        if p.end - p.start < MIN_PIECE_S:
            continue
        p.line = settle_mode(sig, p)
        p.fit = refine_piece(sig, p, method=method_for(p.line))
        if p.fit.n_inliers >= 3:
            p.line = p.fit.line
        p.check = verify(sig, p)
        verdicts.append({"offset_s": round(p.line.offset, 4), "rate": round(p.line.rate, 6), "mode": p.line.mode,
                         "start_s": round(p.start, 2), "end_s": round(p.end, 2), **p.check})
        if p.check["ok"]:
            kept.append(p)
    kept, dropped = drop_ambiguous_edits(cands, kept)
    # a piece dropped between two others leaves them apart, not at an edit
    for i, p in enumerate(kept):
        p.after_edit = p.after_edit and i > 0 and abs(kept[i - 1].end - p.start) < 1e-9
    place_edges(sig, kept)
    segs = [(s, p) for p in kept if (s := to_segment(p, dance_dur=sig.dance_dur, bgm_dur=sig.bgm_dur))]
    if not segs:
        return Assembled([], [], 0.0, {"verification": verdicts})
    main_seg = reference_segment([s for s, _ in segs])
    main = next(p for s, p in segs if s is main_seg)
    span = (main_seg.dance_start_s, main_seg.dance_end_s)
    used = {p.k for p in kept}
    main_ev = span_evidence(cands[main.k], span)
    alts: list[Alternative] = []
    for k in sorted(range(len(cands)), key=lambda k: -span_evidence(cands[k], span)):
        c = cands[k]
        if k in used or main_ev <= 0 or c.line.same_as(main.line, at=0.5 * sum(span), tol_s=0.3):
            continue
        rho = span_evidence(c, span) / main_ev
        if rho < 0.3 or len(alts) >= 5:
            continue
        if any(abs(c.line.offset - a.offset_s) < 0.3 for a in alts):
            continue
        alts.append(Alternative(offset_s=float(c.line.offset), tempo_ratio=float(c.line.rate), score=float(min(rho, 1.0))))
    ck = main.check
    c_fit = max(float(np.clip((ck["contrast"] - MIN_WAVE_CONTRAST) / 4.0, 0.0, 1.0)),
                float(np.clip((ck["strong"] - 2.0 * ck["strong_null"]) / 0.4, 0.0, 1.0)))
    top = alts[0].score if alts else 0.0
    c_amb = float(np.clip((1.0 - top) / (1.0 - AMBIGUOUS_SCORE), 0.0, 1.0))
    if any(p.start < span[0] for p in dropped):
        # the music before the first segment could be more than one place of the song: the first
        # segment found is not the first music heard, and which part that was cannot be told
        c_amb = min(c_amb, 0.3)
    evidence = {"main_match": round(main_seg.match, 4), "top_alternative": round(top, 4), "c_fit": round(c_fit, 4),
                "c_ambiguity": round(c_amb, 4), "verification": verdicts,
                "left_out": [{"start_s": round(p.start, 3), "end_s": round(p.end, 3)} for p in dropped]}
    return Assembled([s for s, _ in segs], alts, c_fit * c_amb, evidence)


#: a stretch of the recording this long that no verified segment explains is searched again
MIN_UNEXPLAINED_S = 8.0


def solve(sig: Signals, lines: list[Line], *, method_for, more_lines=None) -> Assembled:
    """Candidates -> global choice -> segments (refined, placed, verified) for the proposed ``lines``.

    A run-through can hide behind a stronger one in every whole-recording search, a look-alike line can take
    a stretch on the path and then fail verification, and music far under the noise escapes the features:
    ``more_lines(free, explained)`` proposes lines for the stretches (dance seconds) that no verified segment
    explains (all of the recording if none does), given those that are; if it adds candidates, the choice is
    made again over all of them.
    """
    cands = structure.candidates(sig, lines)
    runs = structure.choose(cands)
    res = assemble(sig, cands, runs, method_for=method_for)
    if more_lines is not None:
        explained = [(s.dance_start_s, s.dance_end_s) for s in res.segments]
        free = [(a, b) for a, b in subtract(explained, 0.0, sig.dance_dur) if b - a >= MIN_UNEXPLAINED_S]
        more = structure.candidates(sig, more_lines(free, explained), known=cands) if free else []
        if more:
            cands += more
            runs = structure.choose(cands)
            res = assemble(sig, cands, runs, method_for=method_for)
    res.lines = [c.line for c in cands]
    res.path = [{"line": r.k, "start_s": r.span()[0], "end_s": r.span()[1]} for r in runs]
    return res

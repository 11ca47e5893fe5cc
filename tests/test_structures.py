"""Class structures the engines must get right (their semantics: `beatsync.contract.Alignment`), on synthesized
recordings with a known truth (numpy arrays, no files).

* a slow run-through, then full speed (pitch moved / pitch kept): one segment per run-through,
  each with its own rate and pitch mode;
* dance edits (a section cut, a section repeated): two segments meeting at the edit point;
* a continuous take is one segment: not split at a repeated chorus nor at a quiet passage;
* music at -9 dB SNR inside a minute of talk is found;
* refusals: an unrelated song at the same tempo, rhythm without music (claps, counting, steps);
* a confident answer (confidence >= 0.5) is never wrong.

Every recording and every alignment is computed once per module (`Lab`) and shared. Errors are
measured on the line as in test_align.py: at dance time ``t`` the segment says song time
``seg.bgm_time(t)``, the truth says ``truth.bgm_time(t)``; their difference divided by the rate is
the sync error in dance seconds. Targets are for ``modular``; ``v2`` gets the same structure
checks with a 20 ms sync tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import songgen as sg
from songgen import Truth

from beatsync import messages
from beatsync.align import Alignment, Segment, align
from beatsync.errors import AlignmentError

SR = 22050
ENGINES = ("modular", "v2")

# ----------------------------------------------------------------------------- tolerances
#: sync tolerance (s) where the truth is sample-exact (soxr resampling or plain copies, no room):
#: modular refines on the waveform to the sample (45 us), 2 ms leaves room for the line fit;
#: v2 works on a beat grid / onset envelopes (~6 ms frames): 20 ms.
SYNC_CLEAN = {"modular": 0.002, "v2": 0.020}
#: ... where reverb and noise sit on top (songgen.room keeps the direct path at lag 0, so the truth
#: is still sample-exact, but the correlation peak is blurred): the top of modular's 2-5 ms target
SYNC_NOISY = {"modular": 0.005, "v2": 0.020}
#: ... for a pitch-kept (WSOLA, ffmpeg atempo) run: the stretched audio itself strays from the
#: nominal line (clicks measured in atempo output at 0.85-0.92x: -9 ms on average, up to -20 ms),
#: so no engine can be held closer than that to the nominal truth (test_align.py uses 20 ms too)
SYNC_WSOLA = {"modular": 0.020, "v2": 0.020}
#: ... for music 9 dB under the talk: the issue's 20 ms for both engines
SYNC_BURIED = {"modular": 0.020, "v2": 0.020}
#: relative rate tolerance of a run-through: the issue's 0.1 % for modular (a 20-s run at 0.1 %
#: drifts 20 ms end to end; atempo's own rate wanders < 60 ppm, soxr's not at all); for v2, what
#: its 20 ms sync tolerance at both ends of a 20-s run allows: 2 x 20 ms / 20 s = 0.2 %
RATE_TOL = {"modular": 0.001, "v2": 0.002}
#: where the edit's split may be: within 50 ms of the edit point (the recording equals one line
#: up to the edit sample and the other line after it, so the waveform pins the switch; 50 ms of
#: the wrong music at a cut is already audible as a stumble)
SPLIT_TOL_S = 0.050
#: sync is measured on each side of an edit at least this far from it (the split tolerance plus
#: room for the analysis windows that straddle it)
EDIT_GUARD_S = 0.5
#: edges of a run-through stopped by talk, as in test_align.py's two-run test: an analysis window
#: (~1 s) may straddle the stop
RUN_EDGE_S = 1.0
#: edges of a continuous take where the music starts and stops abruptly: as test_align.py's
#: "segments cover the music"
TAKE_EDGE_S = 0.5
#: the buried music's segment may reach this far past the music (at -9 dB a window must lie mostly
#: inside the music to be recognised: ~2 analysis windows of slack either side)
BURIED_EDGE_S = 2.0
#: refused: AlignmentError("song_not_found") or confidence below this
REFUSE_BELOW = 0.3
#: a confident answer ...
CONFIDENT = 0.5
#: ... must have its main offset this close to the truth (a beat at 110-120 bpm is 0.5 s: 100 ms
#: is "the right place", not a neighbouring beat or bar)
RIGHT_S = 0.100

#: the songs: (seed, tempo in bpm, seconds). "edit" at 120 bpm puts the edit points (15, 25, 12,
#: 20 s) on beats, as a real edit would be; "unrelated" has the same tempo as "edit".
SONGS = {"slow": (41, 110.0, 40.0), "edit": (42, 120.0, 45.0), "quiet": (43, 112.0, 42.0),
         "buried": (44, 104.0, 45.0), "unrelated": (45, 120.0, 35.0)}
#: where the quiet song is turned down to 0.03 (-30 dB): a 4-s breakdown
QUIET_SPAN_S = (12.0, 16.0)


@dataclass
class Case:
    dance: np.ndarray  # mono recording at SR
    bgm: np.ndarray  # mono song at SR
    truths: list[Truth]  # one per stretch of song, in dance order; empty: the song is not there
    modes: tuple[str, ...] = ()  # pitch mode of each truth where it matters ("speed" / "stretch")
    edit_s: float | None = None  # dance time of the edit point (edit cases)


class Lab:
    """Lazily builds the songs, the recordings and the alignments, each once."""

    def __init__(self):
        self._songs: dict[str, np.ndarray] = {}
        self._cases: dict[str, Case] = {}
        self._results: dict[tuple[str, str], Alignment | AlignmentError] = {}

    def song(self, key: str) -> np.ndarray:
        if key not in self._songs:
            if key == "chorus":  # verse, chorus, verse, chorus: the 12-s chorus sample-identical twice
                y, _ = sg.with_repeated_chorus(chorus_s=12.0, section_s=8.0, sections=("verse", "chorus", "verse",
                                               "chorus"), sr=SR, tempo_bpm=116.0, seed=7)
                self._songs[key] = y[0]
            elif key == "quiet":
                seed, bpm, dur = SONGS[key]
                self._songs[key] = sg.quiet_passage(sg.song(dur, sr=SR, tempo_bpm=bpm, seed=seed)[0], SR,
                                                    *QUIET_SPAN_S, gain=0.03)
            else:
                seed, bpm, dur = SONGS[key]
                self._songs[key] = sg.song(dur, sr=SR, tempo_bpm=bpm, seed=seed)[0]
        return self._songs[key]

    def case(self, name: str) -> Case:
        if name not in self._cases:
            self._cases[name] = CASES[name](self)
        return self._cases[name]

    def result(self, name: str, engine: str) -> Alignment | AlignmentError:
        key = (name, engine)
        if key not in self._results:
            c = self.case(name)
            try:
                self._results[key] = align(c.dance, c.bgm, sr=SR, engine=engine)
            except AlignmentError as e:
                self._results[key] = e
        return self._results[key]

    def aligned(self, name: str, engine: str) -> Alignment:
        res = self.result(name, engine)
        if isinstance(res, AlignmentError):
            pytest.fail(f"{engine} did not find the song in {name!r}: {res.code}: {res.message}")
        return res


# ----------------------------------------------------------------------------- the recordings


def _two_speeds(mode: str, rate: float) -> Callable[[Lab], Case]:
    def build(lab: Lab) -> Case:
        # the song from its start at `rate` for 20 s (from dance 1.5 s), 5 s of talk, then from its
        # start again at 1.0x for 25 s
        rec, truths = sg.two_speeds(lab.song("slow"), SR, slow_rate=rate, mode=mode, at_s=1.5, slow_len_s=20.0,
                                    gap_s=5.0, fast_len_s=25.0, talk_seed=51)
        return Case(rec, lab.song("slow"), truths, modes=(mode, "speed"))

    return build


def _edit_cut(lab: Lab) -> Case:
    # song 0-15 s from dance 2 s, then song 25-40 s right after it (dance 17-32 s)
    rec, truths = sg.edit_cut(lab.song("edit"), SR, at_s=2.0, first=(0.0, 15.0), then=(25.0, 40.0), total_s=35.0)
    return Case(rec, lab.song("edit"), truths, edit_s=truths[0].dance_end_s)


def _edit_repeat(lab: Lab) -> Case:
    # song 0-20 s from dance 1 s, then song 12-35 s right after it (dance 21-44 s): 12-20 s twice
    rec, truths = sg.edit_repeat(lab.song("edit"), SR, at_s=1.0, first=(0.0, 20.0), then=(12.0, 35.0),
                                 total_s=46.0)
    return Case(rec, lab.song("edit"), truths, edit_s=truths[0].dance_end_s)


def _chorus_take(lab: Lab) -> Case:
    # the whole 40-s verse-chorus-verse-chorus song from dance 2 s, in a hall (RT60 1.0 s, the
    # reverberant tail 3 dB above the direct sound), a teacher talking, pink noise at 8 dB SNR
    song = lab.song("chorus")
    rec, t = sg.place(song, 2.0, 0.0, 40.0, 1.0, 44.0, SR)
    y = sg.room(rec, SR, 1.0, seed=52, wet=2.0) + sg.speech_like(len(rec), SR, seed=59, level=0.15)
    return Case(sg.noise(y, 8.0, seed=53), song, [t])


def _quiet_take(lab: Lab) -> Case:
    # the song with a 4-s breakdown at -30 dB (song 12-16 s), whole, from dance 1.5 s, pink noise
    # at 10 dB SNR on top: the breakdown is 20 dB under the noise
    song = lab.song("quiet")
    rec, t = sg.place(song, 1.5, 0.0, 42.0, 1.0, 45.0, SR)
    return Case(sg.noise(rec, 10.0, seed=54), song, [t])


def _buried(lab: Lab) -> Case:
    # song 20-35 s at dance 30-45 s, 9 dB under babble (3 talkers) + pink noise, 60 s in all
    rec, truths = sg.buried(lab.song("buried"), SR, at_s=30.0, bgm_start_s=20.0, length_s=15.0, total_s=60.0,
                            snr_db=-9.0, seed=55)
    return Case(rec, lab.song("buried"), truths)


def _unrelated(lab: Lab) -> Case:
    # another song of the same generator at the same tempo (120 bpm) in a room with talking
    rec, _ = sg.place(lab.song("unrelated"), 2.0, 0.0, 32.0, 1.0, 35.0, SR)
    y = sg.room(rec, SR, 0.5, seed=56) + sg.speech_like(len(rec), SR, seed=57, level=0.1)
    return Case(y.astype(np.float32), lab.song("edit"), [])


def _songless(lab: Lab) -> Case:
    # claps on every beat at the song's 120 bpm, counting, footsteps: rhythm, but no music
    rec, truths = sg.songless_rhythm(40.0, SR, tempo_bpm=SONGS["edit"][1], seed=58)
    return Case(rec, lab.song("edit"), truths)


CASES: dict[str, Callable[[Lab], Case]] = {
    "two_speeds_speed_0.88": _two_speeds("speed", 0.88),
    "two_speeds_stretch_0.85": _two_speeds("stretch", 0.85),
    "edit_cut": _edit_cut,
    "edit_repeat": _edit_repeat,
    "chorus_take": _chorus_take,
    "quiet_take": _quiet_take,
    "buried_-9dB": _buried,
    "unrelated_song": _unrelated,
    "songless_rhythm": _songless,
}
TWO_SPEEDS = ["two_speeds_speed_0.88", "two_speeds_stretch_0.85"]
EDITS = ["edit_cut", "edit_repeat"]
ONE_TAKE = ["chorus_take", "quiet_take"]
POSITIVE = [*TWO_SPEEDS, *EDITS, *ONE_TAKE, "buried_-9dB"]
NEGATIVE = ["unrelated_song", "songless_rhythm"]


@pytest.fixture(scope="module")
def lab() -> Lab:
    return Lab()


def x_engines(names: list[str]):
    return [pytest.param(n, e, id=f"{n}-{e}") for n in names for e in ENGINES]


# ----------------------------------------------------------------------------- helpers


def sync_error(seg: Segment, truth: Truth, t: float) -> float:
    """Dance seconds by which ``seg`` puts the song late (+) or early (-) at dance time ``t``."""
    return float((truth.bgm_time(t) - seg.bgm_time(t)) / truth.rate)


def sync_errors_ms(seg: Segment, truth: Truth, times) -> list[float]:
    return [round(1000 * sync_error(seg, truth, float(t)), 3) for t in times]


def fmt(s: Segment | Truth) -> str:
    """A segment (or truth) in one short line, for failure messages."""
    mode = f" {s.mode}" if isinstance(s, Segment) else ""
    return (f"dance {s.dance_start_s:.3f}-{s.dance_end_s:.3f} s <- song {s.bgm_start_s:.3f} s x{s.rate:.5f}{mode} "
            f"(offset {s.offset_s:.4f})")


def segs(al: Alignment) -> str:
    """All the segments and the confidence, for failure messages."""
    return "segments: " + "; ".join(map(fmt, al.segments)) + f"; confidence {al.confidence:.2f}"


def assert_first_segment_is_top_level(al: Alignment) -> None:
    """offset_s / tempo_ratio describe the first segment in video time."""
    first = min(al.segments, key=lambda s: s.dance_start_s)
    assert al.offset_s == pytest.approx(first.offset_s, abs=1e-6), (al.offset_s, fmt(first))
    assert al.tempo_ratio == pytest.approx(first.rate, rel=1e-9), (al.tempo_ratio, fmt(first))


# ----------------------------------------------------------------------------- the generators


def test_generators_truth_is_exact(lab):
    """The premises: the edits are exact copies of the song meeting on one sample, and the edit song
    does not match itself at whole beats or bars (so an edit point is locatable); both run-throughs
    start at the song's start, 5 s apart; the breakdown is more than 25 dB down; the buried music
    is 9 dB under the rest."""
    song = lab.song("edit").astype(np.float64)
    for name in EDITS:
        case = lab.case(name)
        t1, t2 = case.truths
        assert t1.dance_end_s == t2.dance_start_s == case.edit_s
        for t in (t1, t2):
            a, b, k = round(t.dance_start_s * SR), round(t.dance_end_s * SR), round(t.bgm_start_s * SR)
            assert np.array_equal(case.dance[a:b], lab.song("edit")[k:k + b - a]), name
    beat = 60.0 / SONGS["edit"][1]
    for beats in (1, 2, 4, 8, 16):
        lag = int(round(beats * beat * SR))
        a, b = song[:-lag], song[lag:]
        assert float(a @ b) / np.sqrt(float(a @ a) * float(b @ b)) < 0.3, beats
    slow, full = lab.case("two_speeds_speed_0.88").truths
    assert (slow.rate, full.rate, slow.bgm_start_s, full.bgm_start_s) == (0.88, 1.0, 0.0, 0.0)
    assert full.dance_start_s - slow.dance_end_s == pytest.approx(5.0, abs=1 / SR)
    quiet = lab.song("quiet").astype(np.float64)
    q = quiet[round((QUIET_SPAN_S[0] + 0.1) * SR):round((QUIET_SPAN_S[1] - 0.1) * SR)]
    loud = quiet[round(2 * SR):round(10 * SR)]
    assert 20 * np.log10(np.sqrt(np.mean(q**2) / np.mean(loud**2))) < -25
    case = lab.case("buried_-9dB")
    (t,) = case.truths
    music, _ = sg.place(lab.song("buried"), t.dance_start_s, t.bgm_start_s, 15.0, 1.0, 60.0, SR)
    a, b = round(t.dance_start_s * SR), round(t.dance_end_s * SR)
    gain = float(case.dance[a:b] @ music[a:b]) / float(music[a:b] @ music[a:b])  # the recording's gain
    rest = case.dance[a:b] - gain * music[a:b]
    snr = 10 * np.log10(np.mean((gain * music[a:b]) ** 2) / np.mean(rest**2))
    assert snr == pytest.approx(-9.0, abs=0.2)


# ----------------------------------------------------------------------------- 1. two speeds


@pytest.mark.parametrize(("name", "engine"), x_engines(TWO_SPEEDS))
def test_slow_run_then_full_speed(lab, name, engine):
    """A slow run-through (0.88x pitch moved / 0.85x pitch kept), talk, then full speed: two
    segments, one per run-through, each on its own line with its own rate (within 0.1 %) and the
    slow one's pitch mode; the top-level offset_s and tempo_ratio are the slow run's."""
    case = lab.case(name)
    al = lab.aligned(name, engine)
    assert len(al.segments) == 2, segs(al)
    for k, (seg, truth) in enumerate(zip(al.segments, case.truths, strict=True)):
        where = f"run {k + 1} ({truth.rate}x): {fmt(seg)}"
        assert abs(seg.rate / truth.rate - 1) <= RATE_TOL[engine], where
        assert abs(seg.dance_start_s - truth.dance_start_s) <= RUN_EDGE_S, where
        assert abs(seg.dance_end_s - truth.dance_end_s) <= RUN_EDGE_S, where
        tol = SYNC_WSOLA[engine] if case.modes[k] == "stretch" else SYNC_CLEAN[engine]
        times = np.linspace(truth.dance_start_s + 0.5, truth.dance_end_s - 0.5, 5)
        errors = sync_errors_ms(seg, truth, times)
        assert max(map(abs, errors)) <= 1000 * tol, f"{where}: sync errors {errors} ms"
    # the slow run's pitch mode (at 1.0x the two modes are the same sound: not checked)
    assert al.segments[0].mode == case.modes[0], "pitch moved <-> speed, pitch kept <-> stretch"
    slow = case.truths[0]
    assert_first_segment_is_top_level(al)
    assert abs(al.tempo_ratio / slow.rate - 1) <= RATE_TOL[engine], (al.tempo_ratio, slow.rate)
    tol = SYNC_WSOLA[engine] if case.modes[0] == "stretch" else SYNC_CLEAN[engine]
    assert abs(al.offset_s - slow.offset_s) <= tol, (al.offset_s, slow.offset_s)


# ----------------------------------------------------------------------------- 2. dance edits


def same_sound(song: np.ndarray, a_s: float, b_s: float, *, block_s: float = 0.01) -> tuple[float, float]:
    """How long (s) the song sounds the same at song times ``a_s`` and ``b_s`` just before and just after
    them: the contiguous 10-ms blocks where the two waveforms differ by less than a third of their level
    (the synthetic songs reuse drum samples: an edit cut on a downbeat may start with the same hit)."""
    n = int(block_s * SR)

    def run(direction: int) -> float:
        k = 0
        while True:
            i = round(a_s * SR) + (k * n if direction > 0 else -(k + 1) * n)
            j = round(b_s * SR) + (k * n if direction > 0 else -(k + 1) * n)
            if min(i, j) < 0 or max(i, j) + n > len(song):
                break
            x, y = song[i:i + n].astype(np.float64), song[j:j + n].astype(np.float64)
            if np.sqrt(np.mean((x - y) ** 2)) > np.sqrt(np.mean(x**2) + 1e-12) / 3:
                break
            k += 1
        return k * block_s

    return run(-1), run(+1)


@pytest.mark.parametrize(("name", "engine"), x_engines(EDITS))
def test_dance_edit_is_two_segments_meeting_at_the_edit(lab, name, engine):
    """A section cut (song 0-15 s, then 25-40 s) or repeated (0-20 s, then 12-35 s), back to back:
    exactly two segments, meeting with no gap within 50 ms of the edit point (or of the stretch around
    it where both places of the song sound the same), each on its line (sync error at 5 times on each
    side, >= 0.5 s from the edit), covering the music."""
    case = lab.case(name)
    al = lab.aligned(name, engine)
    assert len(al.segments) == 2, segs(al)
    s1, s2 = al.segments
    # meeting: no gap, no overlap (to float rounding)
    assert abs(s2.dance_start_s - s1.dance_end_s) <= 1.0 / SR, segs(al)
    t1, t2 = case.truths
    # where the song sounds the same at both places on either side of the edit, a split there renders the
    # same sound: the split may fall anywhere in that stretch (and 50 ms beyond)
    before, after = same_sound(lab.song("edit"), t1.bgm_time(case.edit_s), t2.bgm_start_s)
    assert case.edit_s - before - SPLIT_TOL_S <= s1.dance_end_s <= case.edit_s + after + SPLIT_TOL_S, \
        (s1.dance_end_s, case.edit_s, before, after)
    sides = {
        "before the edit": (s1, t1, np.linspace(t1.dance_start_s, case.edit_s - EDIT_GUARD_S, 5)),
        "after the edit": (s2, t2, np.linspace(case.edit_s + EDIT_GUARD_S, t2.dance_end_s, 5)),
    }
    for side, (seg, truth, times) in sides.items():
        errors = sync_errors_ms(seg, truth, times)
        assert max(map(abs, errors)) <= 1000 * SYNC_CLEAN[engine], f"{side}: sync errors {errors} ms"
        assert abs(seg.rate - 1.0) <= RATE_TOL[engine], (side, fmt(seg))
    assert abs(s1.dance_start_s - t1.dance_start_s) <= TAKE_EDGE_S, (fmt(s1), fmt(t1))
    assert abs(s2.dance_end_s - t2.dance_end_s) <= TAKE_EDGE_S, (fmt(s2), fmt(t2))
    assert_first_segment_is_top_level(al)
    assert abs(al.offset_s - t1.offset_s) <= SYNC_CLEAN[engine], (al.offset_s, t1.offset_s)
    # said as a fact, in both languages, with where it happens
    code = "edit_cut" if t2.bgm_start_s > t1.bgm_time(case.edit_s) else "edit_repeat"
    notice = next(n for n in al.notices if n["code"] == code)
    assert notice["params"]["at_s"] == pytest.approx(s2.dance_start_s, abs=1e-3)
    for lang in ("en", "zh"):
        text = messages.notice_message({**notice, "params": {**notice["params"], "engine": engine}}, lang)
        assert notice["params"]["at"] in text and "{" not in text, text


# ----------------------------------------------------------------------------- 3. and 4. one take


@pytest.mark.parametrize(("name", "engine"), x_engines(ONE_TAKE))
def test_one_take_is_one_segment(lab, name, engine):
    """A continuous take at 1.0x: of a verse-chorus-verse-chorus song (the chorus sample-identical
    twice) in a reverberant hall with talk and noise, or of a song with a 4-s breakdown 20 dB under pink
    noise: ONE segment from the music's start to its end (not split at the repeated chorus nor at
    the breakdown), on the right line everywhere, including inside the breakdown."""
    case = lab.case(name)
    (truth,) = case.truths
    al = lab.aligned(name, engine)
    assert len(al.segments) == 1, segs(al)
    (seg,) = al.segments
    assert abs(seg.dance_start_s - truth.dance_start_s) <= TAKE_EDGE_S, (fmt(seg), fmt(truth))
    assert abs(seg.dance_end_s - truth.dance_end_s) <= TAKE_EDGE_S, (fmt(seg), fmt(truth))
    times = list(np.linspace(truth.dance_start_s, truth.dance_end_s, 7))
    if name == "quiet_take":  # inside the breakdown too
        q0, q1 = QUIET_SPAN_S
        times += [truth.dance_start_s + (s - truth.bgm_start_s) / truth.rate for s in (q0, (q0 + q1) / 2, q1)]
    errors = sync_errors_ms(seg, truth, times)
    assert max(map(abs, errors)) <= 1000 * SYNC_NOISY[engine], f"sync errors {errors} ms"
    assert abs(seg.rate - 1.0) <= RATE_TOL[engine], fmt(seg)
    assert abs(al.offset_s - truth.offset_s) <= SYNC_NOISY[engine], (al.offset_s, truth.offset_s)


# ----------------------------------------------------------------------------- 5. buried music


@pytest.mark.parametrize("engine", ENGINES)
def test_music_at_minus_9_db_in_talk_is_found(lab, engine):
    """15 s of music 9 dB under babble and noise in 60 s of talk: found (no error, confidence
    >= 0.3), offset within 20 ms, one segment, roughly where the music is."""
    case = lab.case("buried_-9dB")
    (truth,) = case.truths
    res = lab.result("buried_-9dB", engine)
    assert not isinstance(res, AlignmentError), f"{res.code}: {res.message}"
    assert res.confidence >= REFUSE_BELOW, segs(res)
    assert abs(res.offset_s - truth.offset_s) <= SYNC_BURIED[engine], (res.offset_s, truth.offset_s)
    assert len(res.segments) == 1, segs(res)
    (seg,) = res.segments
    length = truth.dance_end_s - truth.dance_start_s
    overlap = min(seg.dance_end_s, truth.dance_end_s) - max(seg.dance_start_s, truth.dance_start_s)
    assert overlap >= 0.75 * length, (fmt(seg), fmt(truth))
    assert seg.dance_start_s >= truth.dance_start_s - BURIED_EDGE_S, (fmt(seg), fmt(truth))
    assert seg.dance_end_s <= truth.dance_end_s + BURIED_EDGE_S, (fmt(seg), fmt(truth))


# ----------------------------------------------------------------------------- found / refused


@pytest.mark.parametrize(("name", "engine"), x_engines(POSITIVE))
def test_song_is_found_when_there(lab, name, engine):
    """Every recording above has the song in it: not refused (no AlignmentError, confidence >= 0.3,
    the same line as the refusals below)."""
    res = lab.result(name, engine)
    assert not isinstance(res, AlignmentError), f"{res.code}: {res.message}"
    assert res.confidence >= REFUSE_BELOW, f"offset {res.offset_s:.4f}; {segs(res)}"


@pytest.mark.parametrize(("name", "engine"), x_engines(NEGATIVE))
def test_refused_when_the_song_is_not_there(lab, name, engine):
    """An unrelated song at the same tempo, or claps + counting + footsteps at the song's tempo with
    no music: AlignmentError("song_not_found") or confidence below 0.3."""
    res = lab.result(name, engine)
    if isinstance(res, AlignmentError):
        assert res.code == "song_not_found", res.code
    else:
        assert res.confidence < REFUSE_BELOW, f"not refused: offset {res.offset_s:.4f}; {segs(res)}"


# ----------------------------------------------------------------------------- 7. confidence


def test_a_confident_answer_is_never_wrong(lab):
    """Across every recording in this file and both engines: a result with confidence >= 0.5 has its
    main offset within 100 ms of the truth's first run-through (and there is a truth)."""
    wrong = []
    for name in CASES:
        case = lab.case(name)
        for engine in ENGINES:
            res = lab.result(name, engine)
            if isinstance(res, AlignmentError) or res.confidence < CONFIDENT:
                continue
            if not case.truths:
                wrong.append(f"{name}/{engine}: confidence {res.confidence:.2f} but the song is not there "
                             f"(offset {res.offset_s:.3f})")
            elif abs(res.offset_s - case.truths[0].offset_s) > RIGHT_S:
                wrong.append(f"{name}/{engine}: confidence {res.confidence:.2f}, offset {res.offset_s:.3f}, "
                             f"truth {case.truths[0].offset_s:.3f}")
    if wrong:
        pytest.fail("confident and wrong:\n" + "\n".join(wrong))

"""The last step both engines share: from assembled segments to an `Alignment`, or a clear refusal."""

from __future__ import annotations

import time

from beatsync.align.lines import Line
from beatsync.align.result import Alignment, Segment, reference_segment
from beatsync.align.segments import AMBIGUOUS_SCORE, Assembled
from beatsync.errors import AlignmentError

#: below this confidence an alignment is not returned at all: the song was not found
MIN_CONFIDENCE = 0.15
#: below this, the result is returned with a warning that asks the user to check it
WARN_CONFIDENCE = 0.5

#: two segments closer than this (s) meet at an edit or a change of speed, with no pause
JOIN_S = 0.05


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def describe_structure(al: Alignment) -> None:
    """Notices that say what the segments mean: run-throughs, edits (a section cut or repeated) and
    changes of speed, each with where it happens."""
    segs = al.segments
    runs = 1 + sum(1 for a, b in zip(segs, segs[1:], strict=False) if b.dance_start_s - a.dance_end_s > JOIN_S)
    if runs > 1:
        al.warn("restarts", f"{runs} run-throughs found: the music was stopped and restarted", count=runs)
    for a, b in zip(segs, segs[1:], strict=False):
        if b.dance_start_s - a.dance_end_s > JOIN_S:
            continue
        at = b.dance_start_s
        jump = b.bgm_start_s - a.bgm_time(at)  # song seconds skipped (+) or played again (-)
        if abs(b.rate / a.rate - 1) > 0.01 and abs(jump) < 1.0:
            al.warn("speed_change", f"the speed changes at {_clock(at)} ({a.rate:.2f}x to {b.rate:.2f}x)",
                    at_s=round(at, 3), at=_clock(at), rate_from=round(a.rate, 4), rate_to=round(b.rate, 4))
        elif jump > 0:
            al.warn("edit_cut", f"edited version: {jump:.1f} s of the song are cut at {_clock(at)}",
                    at_s=round(at, 3), at=_clock(at), jump_s=round(jump, 1), song_from_s=round(a.bgm_time(at), 3), song_to_s=round(b.bgm_start_s, 3))
        else:
            al.warn("edit_repeat", f"edited version: {-jump:.1f} s of the song are played again at {_clock(at)}",
                    at_s=round(at, 3), at=_clock(at), jump_s=round(-jump, 1), song_from_s=round(a.bgm_time(at), 3), song_to_s=round(b.bgm_start_s, 3))


def decide(engine: str, res: Assembled, lines: list[Line], info: dict, t0: float) -> Alignment:
    """Build the engine's `Alignment` from ``res``; raise `AlignmentError` when there is no match."""
    diag = {"coarse": info, "evidence": res.evidence,
            "candidates": [{"offset_s": round(ln.offset, 4), "rate": round(ln.rate, 6), "mode": ln.mode,
                            "score": round(ln.score, 3)} for ln in lines]}
    if not res.segments or res.confidence < MIN_CONFIDENCE and not res.alternatives:
        raise AlignmentError(
            "song_not_found",
            "The song was not found in this video: its sound does not match the song file "
            "(check that you picked the right song, and that the video's sound has the music).",
        )
    segs: list[Segment] = sorted(res.segments, key=lambda s: s.dance_start_s)
    main = reference_segment(segs)
    al = Alignment(
        engine=engine, offset_s=main.offset_s, tempo_ratio=main.rate, confidence=res.confidence,
        segments=segs, alternatives=res.alternatives, seconds=time.perf_counter() - t0,
        diagnostics=diag,
    )
    if res.alternatives and res.alternatives[0].score >= AMBIGUOUS_SCORE:
        al.warn("ambiguous", "ambiguous: the video matches more than one place in the song (a repeated section?); "
                "check the alternatives", alternatives=len(res.alternatives))
    elif res.confidence < WARN_CONFIDENCE:
        al.warn("low_confidence", "low confidence: only part of the recording matches the song; check the result",
                confidence=round(res.confidence, 2))
    for part in res.evidence.get("left_out", []):
        al.warn("ambiguous_part", f"the music at {_clock(part['start_s'])}-{_clock(part['end_s'])} matches more "
                "than one place in the song: no song is laid there", start_s=part["start_s"], end_s=part["end_s"],
                start=_clock(part["start_s"]), end=_clock(part["end_s"]))
    describe_structure(al)
    return al

"""The last step both engines share: from assembled segments to an `Alignment`, or a clear refusal."""

from __future__ import annotations

import time

from beatsync.align.lines import Assembled, Line
from beatsync.align.result import Alignment, reference_segment
from beatsync.errors import AlignmentError

#: below this confidence an alignment is not returned at all: the song was not found
MIN_CONFIDENCE = 0.15
#: below this, the result is returned with a warning that asks the user to check it
WARN_CONFIDENCE = 0.5


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
    main = reference_segment(res.segments)
    al = Alignment(
        engine=engine, offset_s=main.offset_s, tempo_ratio=main.rate, confidence=res.confidence,
        segments=res.segments, alternatives=res.alternatives, seconds=time.perf_counter() - t0,
        diagnostics=diag,
    )
    if res.alternatives and res.alternatives[0].score > 0.5:
        al.warn("ambiguous", "ambiguous: the video matches more than one place in the song (a repeated section?); "
                "check the alternatives", alternatives=len(res.alternatives))
    elif res.confidence < WARN_CONFIDENCE:
        al.warn("low_confidence", "low confidence: only part of the recording matches the song; check the result",
                confidence=round(res.confidence, 2))
    if len(res.segments) > 1:
        al.warn("restarts", f"{len(res.segments)} run-throughs found: the music was stopped and restarted",
                count=len(res.segments))
    return al

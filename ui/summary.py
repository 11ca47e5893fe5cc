"""What a finished job's page says about its results, as decisions and facts (codes with parameters,
worded by `ui.i18n`): which result to recommend and why, where the music starts, what structure was
found (run-throughs, edits, speed changes). Pure: reads the contract's `Status`, no Streamlit."""

from __future__ import annotations

from dataclasses import dataclass, field

from beatsync.contract import ENGINES, Alignment, Status

#: confidences closer than this are "as confident"
SAME_CONFIDENCE = 0.05
#: explained music closer than this (s) is "as much"
SAME_EXPLAINED_S = 2.0
#: the notices that are facts about the class's structure (shown as such, not as warnings)
STRUCTURE = ("restarts", "speed_change", "edit_cut", "edit_repeat", "ambiguous_part")
#: the notices that ask the user to check a result (shown as warnings)
CHECKS = ("ambiguous", "low_confidence")


def explained_s(al: Alignment) -> float:
    """Seconds of the class video an alignment lays the song over (the sum of its segments)."""
    return float(sum(max(0.0, g.dance_end_s - g.dance_start_s) for g in al.segments))


@dataclass
class Recommendation:
    """The result to show first (``best``), the others (``others``: shown under "compare methods" when
    ``agree``, side by side otherwise), the failed methods, and why ``best`` is preferred (``reasons``:
    ``(key, params)`` for `ui.i18n.t`, empty when the methods agree)."""

    best: str | None
    others: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    agree: bool = True
    same_file: bool = False
    reasons: list[tuple[str, dict]] = field(default_factory=list)
    difference_ms: float = 0.0


def recommend(s: Status) -> Recommendation:
    """Which of a finished job's results to recommend.

    Both methods agree when their placements are the same (the job's ``agreement``: main offsets
    within 20 ms, rates within 0.3 %) and they found the same structure (as many segments, as much
    music explained within `SAME_EXPLAINED_S`): then one result is shown and the other is a
    comparison. Otherwise the more confident one is preferred (by `SAME_CONFIDENCE` or more), else
    the one that explains more of the video, else the default method (`ENGINES` order)."""
    found = {v: s.variants[v].alignment for v in ENGINES if v in s.variants and s.variants[v].alignment is not None}
    failed = [v for v in ENGINES if v in s.variants and s.variants[v].alignment is None]
    if not found:
        return Recommendation(best=None, failed=failed)
    if len(found) == 1:
        (best,) = found
        return Recommendation(best=best, failed=failed)
    a, b = (found[v] for v in found)
    same_file = any(s.variants[v].same_as is not None for v in found)
    agree = same_file or (s.agreement is not None and s.agreement.agree and len(a.segments) == len(b.segments)
                          and abs(explained_s(a) - explained_s(b)) <= SAME_EXPLAINED_S)
    order = sorted(found, key=lambda v: _rank(found[v], found, v))
    best, other = order[0], order[1]
    rec = Recommendation(best=best, others=[other], failed=failed, agree=agree, same_file=same_file,
                         difference_ms=s.agreement.offset_difference_ms if s.agreement is not None else 0.0)
    if not agree:
        rec.reasons = _reasons(found[best], found[other], other)
    return rec


def _rank(al: Alignment, found: dict[str, Alignment], name: str) -> tuple:
    best_conf = max(x.confidence for x in found.values())
    best_expl = max(explained_s(x) for x in found.values())
    return (al.confidence < best_conf - SAME_CONFIDENCE + 1e-9,  # clearly less confident: later
            explained_s(al) < best_expl - SAME_EXPLAINED_S + 1e-9,  # clearly explains less: later
            ENGINES.index(name))


def _reasons(best: Alignment, other: Alignment, other_name: str) -> list[tuple[str, dict]]:
    out = []
    if best.confidence >= other.confidence + SAME_CONFIDENCE:
        out.append(("why.confidence", {"a": best.confidence, "b": other.confidence, "other": other_name}))
    if explained_s(best) >= explained_s(other) + SAME_EXPLAINED_S:
        out.append(("why.explains", {"a": explained_s(best), "b": explained_s(other), "other": other_name}))
    return out or [("why.same", {})]


def music_position(al: Alignment) -> tuple[float, float]:
    """(video time, song time) where the music starts: the first segment in the video."""
    first = min(al.segments, key=lambda g: g.dance_start_s)
    return first.dance_start_s, first.bgm_start_s


def structure_facts(s: Status, variant: str) -> list[tuple[str, dict]]:
    """The structure a result found, as facts (``("fact.<code>", params)``), in the order found."""
    return [(f"fact.{n.code}", dict(n.params)) for n in s.notices
            if n.code in STRUCTURE and n.params.get("engine") == variant]


def checks(s: Status, variant: str) -> list[str]:
    """The notices that ask to check this result (their codes)."""
    return [n.code for n in s.notices if n.code in CHECKS and n.params.get("engine") == variant]


def edit_points(s: Status, variant: str) -> list[tuple[str, float]]:
    """(code, video time) of each edit or speed change a result found."""
    return [(n.code, float(n.params["at_s"])) for n in s.notices
            if n.code in ("edit_cut", "edit_repeat", "speed_change") and n.params.get("engine") == variant
            and "at_s" in n.params]


def job_line(s: Status) -> list[tuple[str, dict]]:
    """A finished job's one-line summary for "My jobs", as ``("line.<what>", params)`` (no word of the
    status itself: the list shows that next to it). A synced job: where the music starts, the
    structure found, whether the methods agree; a correction: what it changed."""
    if s.correction is not None:
        c = s.correction
        out: list[tuple[str, dict]] = [("line.correction", {"variant": c.variant})]
        if c.alternative is not None:
            out.append(("line.alternative", {"n": c.alternative + 1}))
        if round(c.nudge_ms):
            out.append(("line.nudge", {"ms": round(c.nudge_ms)}))
        return out
    rec = recommend(s)
    if rec.best is None:
        return []
    al = s.variants[rec.best].alignment
    video_s, song_s = music_position(al)
    out = [("line.music", {"video": video_s, "song": song_s})]
    codes = {n.code: n.params for n in s.notices if n.params.get("engine") == rec.best}
    if "restarts" in codes:
        out.append(("line.runs", {"n": codes["restarts"].get("count", 2)}))
    if "edit_cut" in codes or "edit_repeat" in codes:
        out.append(("line.edited", {}))
    if "speed_change" in codes:
        out.append(("line.speeds", {}))
    if len(s.variants) > 1:
        out.append(("line.agree", {}) if rec.agree else ("line.differ", {"ms": round(rec.difference_ms)}))
    return out

"""Alignment results: the data every engine returns (semantics: `beatsync.contract.Alignment`).

Times are seconds. ``offset_s`` is the dance-video time at which BGM time 0 lines up; within a
segment, dance time ``t`` hears BGM time ``bgm_start_s + (t - dance_start_s) * rate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from beatsync.errors import ParameterError


@dataclass
class Segment:
    """One stretch of the recording during which the song plays continuously."""

    dance_start_s: float
    dance_end_s: float
    bgm_start_s: float
    rate: float
    #: "speed" (resampled: the pitch moved with the tempo) or "stretch" (tempo changed, pitch kept)
    mode: str = "speed"
    #: share of the analysis windows inside the segment that agree with it (0..1)
    match: float = 1.0

    @property
    def offset_s(self) -> float:
        """Dance time at which BGM time 0 would line up on this segment's line."""
        return self.dance_start_s - self.bgm_start_s / self.rate

    def bgm_time(self, t: float) -> float:
        return self.bgm_start_s + (t - self.dance_start_s) * self.rate

    def shifted(self, dt: float) -> Segment:
        """The same segment with dance times moved by ``dt`` seconds."""
        return Segment(self.dance_start_s + dt, self.dance_end_s + dt, self.bgm_start_s, self.rate, self.mode, self.match)

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def reference_segment(segments: list[Segment]) -> Segment:
    """The segment ``offset_s`` and ``tempo_ratio`` describe: the first in video time."""
    return min(segments, key=lambda s: s.dance_start_s)


@dataclass
class Alternative:
    """Another plausible placement (e.g. the other occurrence of a repeated chorus)."""

    offset_s: float
    tempo_ratio: float
    score: float  # relative to the chosen alignment's evidence (1.0 = just as good)

    def to_dict(self) -> dict:
        return {"offset_s": round(self.offset_s, 6), "tempo_ratio": round(self.tempo_ratio, 9),
                "score": round(self.score, 4)}


@dataclass
class Alignment:
    """What an engine found.

    ``segments`` are ordered by dance time; ``offset_s`` and ``tempo_ratio`` describe the
    `reference_segment` (the first in video time).
    ``diagnostics`` holds plain numbers for plots and debugging.
    """

    engine: str
    offset_s: float
    tempo_ratio: float
    confidence: float
    segments: list[Segment]
    alternatives: list[Alternative] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    diagnostics: dict = field(default_factory=dict)
    #: the warnings as ``{"code", "params"}`` (for a UI to show them in the reader's language)
    notices: list[dict] = field(default_factory=list)

    def warn(self, code: str, message: str, **params) -> None:
        """Add a warning: English ``message`` in `warnings`, ``code`` and ``params`` in `notices`."""
        self.warnings.append(message)
        self.notices.append({"code": code, "params": params})

    @property
    def main_segment(self) -> Segment:
        """The segment ``offset_s`` and ``tempo_ratio`` describe (see `reference_segment`)."""
        return reference_segment(self.segments)

    def shifted(self, dt: float) -> Alignment:
        """The same alignment with every dance time moved by ``dt`` seconds."""
        return Alignment(
            engine=self.engine, offset_s=self.offset_s + dt, tempo_ratio=self.tempo_ratio, confidence=self.confidence,
            segments=[s.shifted(dt) for s in self.segments],
            alternatives=[Alternative(a.offset_s + dt, a.tempo_ratio, a.score) for a in self.alternatives],
            seconds=self.seconds, warnings=list(self.warnings), diagnostics=dict(self.diagnostics),
            notices=[dict(n) for n in self.notices],
        )

    def dance_times(self, bgm_times) -> list[float]:
        """Where song times (e.g. its beats) are heard in the video: every segment that plays them."""
        out = []
        for s in self.segments:
            for b in bgm_times:
                t = s.dance_start_s + (float(b) - s.bgm_start_s) / s.rate
                if s.dance_start_s <= t <= s.dance_end_s:
                    out.append(t)
        return sorted(out)

    def corrected(self, *, alternative: int | None = None, nudge_s: float = 0.0) -> Alignment:
        """A user's correction: take the ``alternative``-th alternative placement (over the main
        segment's span of the video) and/or move the song ``nudge_s`` later in the video.

        The correction is marked in ``warnings`` and the chosen result becomes an alternative of
        the new one, so choosing again is always possible.
        """
        al = self
        if alternative is not None:
            if not 0 <= alternative < len(self.alternatives):
                raise ParameterError(f"There is no alternative {alternative} (this result has "
                                     f"{len(self.alternatives)}).")
            alt, main = self.alternatives[alternative], self.main_segment
            start = max(main.dance_start_s, alt.offset_s)  # the song cannot start before its beginning
            seg = Segment(start, main.dance_end_s, (start - alt.offset_s) * alt.tempo_ratio, alt.tempo_ratio,
                          main.mode, alt.score)
            others = [Alternative(self.offset_s, self.tempo_ratio, 1.0)]
            others += [a for i, a in enumerate(self.alternatives) if i != alternative]
            al = Alignment(engine=self.engine, offset_s=alt.offset_s, tempo_ratio=alt.tempo_ratio,
                           confidence=alt.score * self.confidence, segments=[seg], alternatives=others,
                           warnings=list(self.warnings), notices=[dict(n) for n in self.notices])
            al.warn("alternative_chosen", f"alternative placement {alternative + 1} chosen by hand",
                    number=alternative + 1)
        if nudge_s:
            al = al.shifted(nudge_s)
            al.warn("nudged", f"moved {nudge_s * 1000:+.0f} ms by hand", ms=round(nudge_s * 1000))
        return al

    def to_dict(self, *, diagnostics: bool = False) -> dict:
        out = {
            "engine": self.engine,
            "offset_s": round(self.offset_s, 6),
            "tempo_ratio": round(self.tempo_ratio, 9),
            "confidence": round(self.confidence, 4),
            "segments": [s.to_dict() for s in self.segments],
            "alternatives": [a.to_dict() for a in self.alternatives],
            "seconds": round(self.seconds, 3),
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
            out["notices"] = [dict(n) for n in self.notices]
        if diagnostics:
            out["diagnostics"] = self.diagnostics
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Alignment:
        segs = [Segment(**{k: v for k, v in s.items() if k in Segment.__dataclass_fields__}) for s in d["segments"]]
        alts = [Alternative(**{k: v for k, v in a.items() if k in Alternative.__dataclass_fields__})
                for a in d.get("alternatives", [])]
        return cls(engine=d.get("engine", "manual"), offset_s=float(d["offset_s"]),
                   tempo_ratio=float(d.get("tempo_ratio", 1.0)), confidence=float(d.get("confidence", 1.0)),
                   segments=segs, alternatives=alts, seconds=float(d.get("seconds", 0.0)),
                   warnings=list(d.get("warnings", [])), notices=[dict(n) for n in d.get("notices", [])])

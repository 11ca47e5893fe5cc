"""Alignment engines on numpy arrays: ``modular`` (feature fusion + GCC-PHAT) and ``v2`` (beat grid)."""

from __future__ import annotations

from beatsync.align.result import Alignment, Alternative, Segment
from beatsync.contract import DEFAULT_ENGINE, ENGINES, MODULAR, V2

__all__ = ["ENGINES", "Alignment", "Alternative", "Segment", "align"]  # (ENGINES: `beatsync.contract`)


def align(dance, bgm, *, sr: int, engine: str = DEFAULT_ENGINE, signals=None) -> Alignment:
    """Align the class recording ``dance`` with the clean song ``bgm`` (mono arrays at ``sr`` Hz).

    Times in the result are seconds from the first sample of ``dance``. ``signals`` (a
    `beatsync.align.lines.Signals` of the same arrays) lets several engines share features,
    envelopes and resampled copies of the song.
    """
    if engine == MODULAR:
        from beatsync.align import modular

        return modular.align(dance, bgm, sr=sr, signals=signals)
    if engine == V2:
        from beatsync.align import v2

        return v2.align(dance, bgm, sr=sr, signals=signals)
    from beatsync.errors import ParameterError

    raise ParameterError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")

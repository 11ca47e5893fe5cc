"""The ``modular`` engine: multi-feature fusion for candidates, a global choice of structure, and
sample-precise refinement on the waveforms.

1. Candidates (candidates.py): every chunk of the recording against the whole song over a grid of
   playback rates (practice speed 0.75-1.06x, pitch moved or kept) on fused features (rhythm,
   harmony, timbre), turned into lines by a Hough transform; the whole-recording onset-envelope
   correlation at the strongest rates (sharp offsets where bars repeat); and a whitened waveform
   correlation at normal speed (the song far below the noise).
2. Global choice (structure.py): every line screened and scored window by window, then one path
   through the recording picks which line plays where (run-throughs, edits, speed changes), paying
   for every change, so a repetition in the song never splits a continuous take.
3. Segments (segments.py): each run refined on its own span by windowed GCC-PHAT on the waveforms
   (sample precision; fine onset envelopes when the pitch was kept), its edges and edit points
   placed on short windows, and verified against chance.
"""

from __future__ import annotations

import time

import numpy as np

from beatsync.align import candidates as cand
from beatsync.align.lines import Line, Signals
from beatsync.align.result import Alignment
from beatsync.align.segments import REFINE_ONSET, REFINE_WAVE, solve
from beatsync.contract import MODULAR


def method_for(line: Line):
    return REFINE_WAVE if line.mode == "speed" else REFINE_ONSET


def align(dance: np.ndarray, bgm: np.ndarray, *, sr: int, signals: Signals | None = None) -> Alignment:
    """Align ``dance`` (the class recording) with ``bgm`` (the clean song), both mono at ``sr`` Hz.

    Raises `beatsync.errors.AlignmentError` when the song is not found.
    """
    from beatsync.align.decide import decide

    t0 = time.perf_counter()
    sig = signals if signals is not None else Signals(dance, bgm, sr=sr)
    result = solve(sig, cand.vote_lines(sig), method_for=method_for,
                   more_lines=lambda free, explained: (cand.vote_lines(sig, within=free, explained=explained)
                                                       + cand.wave_lines(sig, within=free)))
    votes = sig.votes()
    info = {"n_votes": len(votes) if votes is not None else 0, "path": result.path}
    return decide(MODULAR, result, result.lines, info, t0)

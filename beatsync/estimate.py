"""How long a job takes: per phase of its work, a fixed part plus seconds per minute of class video,
learned from the jobs that finished (kept in the data directory, shared by every worker).

A job's work passes through phases (`PHASES`, from its stage codes): ``start`` (the job process
starting), ``inputs`` (reading and decoding), ``analysis``, ``align`` (both engines at once), ``render``
(trimming and writing the videos). Each phase costs ``fixed + per_min * minutes``; the fixed parts are
defaults (the song's own analysis, process start-up), the per-minute speeds start from defaults
measured on a 2-core machine (a 3-minute 1080p class: 1.9 s decoding, 0.5 s analysis, 6 s aligning,
5.3 s writing) and then follow the jobs that finished here (an exponential average, so that the
estimate adapts to the machine and its load). The speeds live in ``<data dir>/stats/speeds.json``,
written under a file lock.

A running job estimates its end when it enters a phase (`finish_at`): the whole of that phase and of
the ones after it; the status then counts down, never below the work of the phases still to come.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from beatsync.contract import ENGINES, Estimate, TaskKind, align_stage, render_stage

#: the phases of each kind of job, in order
PHASES = {
    TaskKind.PROCESS.value: ("start", "inputs", "analysis", "align", "render"),
    TaskKind.RENDER.value: ("start", "inputs", "render"),
    TaskKind.BEATS.value: ("start", "inputs", "analysis"),
}
#: the phase each stage belongs to
STAGE_PHASE = {"queued": "start", "restarted": "start", "retry": "start", "start": "start", "probe": "inputs",
               "decode": "inputs", "analyse": "analysis", **{align_stage(e): "align" for e in ENGINES},
               "trim": "render", **{render_stage(e): "render" for e in ENGINES}, "render": "render"}
#: (fixed seconds, seconds per minute of video) of each phase before any job has finished here
DEFAULTS = {"start": (1.5, 0.0), "inputs": (0.3, 0.6), "analysis": (0.3, 0.15), "align": (3.0, 1.2),
            "render": (0.5, 1.8)}
#: weight of the newest job in the average speeds
LEARN = 0.3
FILE = "stats/speeds.json"


def _clamp(x: float) -> float:
    return float(min(600.0, max(0.0, x)))


class Speeds:
    """Seconds per minute of video of each phase (and the start-up's seconds), as learned so far."""

    def __init__(self, per_min: dict[str, float] | None = None, start_s: float | None = None, jobs: int = 0):
        self.per_min = {p: DEFAULTS[p][1] for p in DEFAULTS} | (per_min or {})
        self.start_s = DEFAULTS["start"][0] if start_s is None else start_s
        self.jobs = jobs

    @classmethod
    def load(cls, root: str | os.PathLike) -> Speeds:
        """The speeds kept under the data directory ``root`` (the defaults when there are none)."""
        try:
            data = json.loads((Path(root) / FILE).read_text())
            per_min = {k: _clamp(float(v)) for k, v in data.get("per_min", {}).items() if k in DEFAULTS}
            return cls(per_min, _clamp(float(data.get("start_s", DEFAULTS["start"][0]))), int(data.get("jobs", 0)))
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def phase_s(self, phase: str, minutes: float) -> float:
        if phase == "start":
            return self.start_s
        fixed, _ = DEFAULTS[phase]
        return fixed + self.per_min[phase] * max(0.0, minutes)

    def total_s(self, kind: str, minutes: float) -> float:
        """The whole run of a job of ``kind`` on a class video of ``minutes``."""
        return sum(self.phase_s(p, minutes) for p in PHASES.get(kind, ()))

    def estimate(self, kind: str, phase: str, minutes: float, *, now: float | None = None) -> Estimate | None:
        """The end of a job of ``kind`` entering ``phase`` now."""
        phases = PHASES.get(kind, ())
        if phase not in phases:
            return None
        i = phases.index(phase)
        after = sum(self.phase_s(p, minutes) for p in phases[i + 1:])
        now = time.time() if now is None else now
        return Estimate(finish_at=round(now + self.phase_s(phase, minutes) + after, 2), after_s=round(after, 2))

    def learned(self, minutes: float, phase_seconds: dict[str, float]) -> Speeds:
        """These speeds moved toward one finished job's (``phase_seconds``: seconds spent per phase)."""
        per_min = dict(self.per_min)
        start = self.start_s
        for phase, secs in phase_seconds.items():
            if phase == "start":
                start = (1 - LEARN) * start + LEARN * _clamp(secs)
            elif phase in DEFAULTS and minutes >= 0.05:
                speed = _clamp((secs - DEFAULTS[phase][0]) / minutes)
                per_min[phase] = (1 - LEARN) * per_min[phase] + LEARN * speed
        return Speeds(per_min, start, self.jobs + 1)

    def to_dict(self) -> dict:
        return {"per_min": {k: round(v, 4) for k, v in self.per_min.items()}, "start_s": round(self.start_s, 3),
                "jobs": self.jobs}


def phase_seconds(timings: dict[str, tuple[float, float] | list[float]], *, start_s: float | None = None
                  ) -> dict[str, float]:
    """A finished job's seconds per phase from its pipeline timings (``name -> (start, end)`` seconds
    from the pipeline's start: ``inputs``, ``analysis``, ``align_<engine>``, ``trim_<engine>``,
    ``render_<engine>``, ``link_<engine>``, or ``render`` for a correction). The engines run at once:
    ``align`` is from the first to start to the last to end, ``render`` from there to the end of the
    last video."""
    t = {k: (float(v[0]), float(v[1])) for k, v in timings.items()}
    out: dict[str, float] = {}
    if start_s is not None:
        out["start"] = start_s
    for phase in ("inputs", "analysis"):
        if phase in t:
            out[phase] = t[phase][1] - t[phase][0]
    aligns = [v for k, v in t.items() if k.startswith("align_")]
    after = [v for k, v in t.items() if k.startswith(("trim_", "render_", "link_")) or k == "render"]
    if aligns:
        out["align"] = max(e for _, e in aligns) - min(s for s, _ in aligns)
    if after:
        begin = max(e for _, e in aligns) if aligns else min(s for s, _ in after)
        out["render"] = max(e for _, e in after) - begin
    return out


def learn(root: str | os.PathLike, minutes: float, phase_secs: dict[str, float]) -> Speeds:
    """Fold one finished job into the speeds kept under ``root`` (read, update and write under a file
    lock, so that workers finishing at once do not lose each other's jobs); returns the new speeds."""
    path = Path(root) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            new = Speeds.load(root).learned(minutes, phase_secs)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(new.to_dict()))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)
    return new

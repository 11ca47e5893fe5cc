"""One job: class video + song -> analysis -> both alignments -> trimming -> two rendered videos.

`process` is the entry point used by the CLI and (later) the task workers; `render_variant`
renders one variant from a given alignment (so a corrected alignment can be re-rendered without
analysing again). Progress is reported through ``on_progress(percent, stage, message)``, with
percent never going down.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from beatsync import media
from beatsync.align import ENGINES, Alignment
from beatsync.align import align as run_engine
from beatsync.align.lines import Signals
from beatsync.analysis import ANALYSIS_SR, Features, beat_track, features
from beatsync.errors import AlignmentError, BeatSyncError, MediaError
from beatsync.render_audio import build_track

ProgressFn = Callable[[float, str, str], None]

DANCE_EXTS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
SONG_EXTS = (".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".opus") + DANCE_EXTS


@dataclass
class Options:
    """What a user can choose for a job."""

    trim: bool = True  # drop the no-music head and tail
    margin_s: float = 1.0  # kept before the music starts and after it ends
    fill: str = "silence"  # what plays where the song does not: "silence" or "original"
    engines: tuple[str, ...] = ENGINES
    audio_bitrate: str = "192k"

    @classmethod
    def from_dict(cls, d: dict | None) -> Options:
        d = dict(d or {})
        o = cls()
        if "trim" in d:
            o.trim = bool(d["trim"])
        if "margin_s" in d:
            m = float(d["margin_s"])
            if not 0.0 <= m <= 30.0:
                raise BeatSyncError("bad_option", "The margin must be between 0 and 30 seconds.", margin_s=m)
            o.margin_s = m
        if "fill" in d:
            if d["fill"] not in ("silence", "original"):
                raise BeatSyncError("bad_option", "fill must be 'silence' or 'original'.", fill=d["fill"])
            o.fill = d["fill"]
        if "engines" in d:
            eng = tuple(d["engines"])
            if not eng or any(e not in ENGINES for e in eng):
                raise BeatSyncError("bad_option", f"engines must be among {', '.join(ENGINES)}.")
            o.engines = eng
        return o

    def to_dict(self) -> dict:
        d = asdict(self)
        d["engines"] = list(self.engines)
        return d


class Progress:
    """Monotonic progress: maps a stage's own 0..1 onto its share of 0..100 and never goes down."""

    def __init__(self, fn: ProgressFn | None):
        self.fn = fn
        self.value = 0.0

    def __call__(self, pct: float, stage: str, message: str) -> None:
        pct = float(min(100.0, max(self.value, pct)))
        self.value = pct
        if self.fn is not None:
            self.fn(round(pct, 1), stage, message)

    def span(self, lo: float, hi: float, stage: str, message: str) -> Callable[[float], None]:
        def report(frac: float) -> None:
            self(lo + (hi - lo) * min(1.0, max(0.0, frac)), stage, message)

        return report


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    dance: media.MediaInfo  # probe of the class video
    dance_y: np.ndarray  # mono, ANALYSIS_SR, sample 0 at dance time dance.audio_origin_s
    bgm_y: np.ndarray  # mono, ANALYSIS_SR
    song: np.ndarray  # (channels, n) at song_sr: what gets rendered
    song_sr: int

    @property
    def dance_path(self) -> str:
        return self.dance.path


def check_extension(path: str, *, role: str) -> None:
    ext = Path(path).suffix.lower()
    allowed = DANCE_EXTS if role == "dance" else SONG_EXTS
    if ext not in allowed:
        what = "class video" if role == "dance" else "song"
        raise MediaError("unsupported_type",
                         f"{Path(path).name}: a {what} must be one of {', '.join(e[1:] for e in allowed)}.",
                         file=Path(path).name, role=role)


def load_inputs(dance_path: str, bgm_path: str, progress: Progress) -> Inputs:
    check_extension(dance_path, role="dance")
    check_extension(bgm_path, role="bgm")
    progress(1, "probe", "Reading the files")
    dinfo = media.probe(dance_path)
    media.require_video(dinfo)
    media.require_audio(dinfo, role="dance")
    binfo = media.probe(bgm_path)
    media.require_audio(binfo, role="bgm")
    progress(4, "decode", "Decoding the sound")
    dance_y = media.decode_audio(dance_path, sr=ANALYSIS_SR, mono=True, info=dinfo)
    song_sr = int(binfo.audio.sample_rate)
    song = media.decode_audio(bgm_path, sr=song_sr, mono=False, info=binfo)
    if song.ndim == 1:
        song = song[None, :]
    # one decode of the song serves both rendering and analysis
    bgm_y = soxr.resample(song.mean(axis=0), song_sr, ANALYSIS_SR, quality="HQ").astype(np.float32)
    for y, role, p in ((dance_y, "dance", dance_path), (bgm_y, "bgm", bgm_path)):
        if len(y) < ANALYSIS_SR * 2:
            raise MediaError("too_short", f"{Path(p).name}: the sound is shorter than 2 seconds.", file=Path(p).name)
        if float(np.max(np.abs(y))) < 1e-4:
            what = "class video" if role == "dance" else "song"
            raise MediaError("silent", f"{Path(p).name}: the {what}'s sound is silent.", file=Path(p).name, role=role)
    progress(12, "decode", "Sound decoded")
    return Inputs(dinfo, dance_y, bgm_y, song, song_sr)


def align_inputs(inp: Inputs, *, engine: str, signals: Signals | None = None) -> Alignment:
    """Run one engine and express its result on the class video's timeline (0 = first frame)."""
    res = run_engine(inp.dance_y, inp.bgm_y, sr=ANALYSIS_SR, engine=engine, signals=signals)
    return res.shifted(inp.dance.audio_origin_s)


def beat_summary(f: Features, tempo: float, beats: np.ndarray, *, origin_s: float = 0.0,
                 onset: bool = True) -> dict:
    """Tempo and beat times (seconds, shifted by ``origin_s``) of one recording; with ``onset``,
    its onset strength too (scaled so its 99th percentile is 1), for plotting."""
    out = {"tempo_bpm": round(float(tempo), 2), "beats_s": np.round(np.asarray(beats) + origin_s, 4).tolist()}
    if onset:
        scale = float(np.percentile(f.onset, 99)) or 1.0
        out.update(onset=np.round(np.minimum(f.onset / scale, 2.0), 3).tolist(), onset_t0_s=round(origin_s, 6),
                   frame_rate=f.frame_rate)
    return out


def beat_grid(signals: Signals, *, dance_origin_s: float) -> dict:
    """What the beat-grid plots draw: the class recording's onset strength and beats (video time),
    the song's beats (song time; an alignment maps them onto the video)."""
    fd, fb = signals.features()
    td, bd, tg, bg = signals.beats()
    return {"class": beat_summary(fd, td, bd, origin_s=dance_origin_s),
            "song": beat_summary(fb, tg, bg, onset=False)}


def file_beats(path: str, *, on_progress: ProgressFn | None = None) -> dict:
    """Tempo, beats and onset strength of any song or video (the beat explorer)."""
    progress = Progress(on_progress)
    progress(2, "probe", "Reading the file")
    info = media.probe(path)
    media.require_audio(info)
    progress(10, "decode", "Decoding the sound")
    y = media.decode_audio(path, sr=ANALYSIS_SR, mono=True, info=info)
    if len(y) < ANALYSIS_SR:
        raise MediaError("too_short", f"{info.name}: the sound is shorter than 1 second.", file=info.name)
    progress(50, "analyse", "Finding the beats")
    f = features(y, sr=ANALYSIS_SR)
    out = beat_summary(f, *beat_track(f.onset, frame_rate=f.frame_rate), origin_s=info.audio_origin_s)
    out["duration_s"] = round(info.duration_s, 3)
    progress(100, "done", "Done")
    return out


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise, and the peak of one
    stage would stay the footprint of the whole job)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ----------------------------------------------------------------------------- trimming


BLACK_SCAN_S = 15.0


@dataclass
class Trim:
    start_s: float
    end_s: float
    music_start_s: float
    music_end_s: float
    black_head_s: float
    black_tail_s: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def plan_trim(inp: Inputs, alignments: list[Alignment], opts: Options) -> Trim:
    """Keep [music start - margin, music end + margin], never before the black head ends nor after
    the black tail starts; the whole video when trimming is off."""
    dur = inp.dance.video_duration_s
    segs = [s for a in alignments for s in a.segments]
    m0 = max(0.0, min(s.dance_start_s for s in segs))
    m1 = min(dur, max(s.dance_end_s for s in segs))
    # black frames only matter where they reach into the kept margin; a black head or tail longer
    # than BLACK_SCAN_S is not looked for (decoding a long stretch of 1080p costs seconds)
    head_end, tail_start = media.black_frames(
        inp.dance_path, info=inp.dance, head_until_s=min(max(0.0, m0 + 1.0), BLACK_SCAN_S),
        tail_from_s=max(0.0, m1 - 1.0, dur - BLACK_SCAN_S))
    if not opts.trim:
        return Trim(0.0, dur, m0, m1, head_end, tail_start)
    start = max(m0 - opts.margin_s, head_end if head_end < m0 + 0.5 else 0.0, 0.0)
    end = min(m1 + opts.margin_s, tail_start if tail_start > m1 - 0.5 else dur, dur)
    if end - start < 1.0:
        start, end = 0.0, dur
    return Trim(start, end, m0, m1, head_end, tail_start)


# ----------------------------------------------------------------------------- rendering


def output_path(out_dir: str, dance_path: str, variant: str) -> str:
    return os.path.join(out_dir, f"{Path(dance_path).stem}_{variant}.mp4")


def original_sound(inp: Inputs) -> np.ndarray:
    """The class recording's own sound at the song's rate, (channels, n); sample k at dance time
    ``inp.dance.audio_origin_s + k / inp.song_sr``."""
    orig = media.decode_audio(inp.dance_path, sr=inp.song_sr, mono=False, info=inp.dance)
    return orig[None, :] if orig.ndim == 1 else orig


def cut_plan(inp: Inputs, trim: Trim) -> media.CutPlan:
    """How the picture is cut for ``trim`` (the same for every variant: they share the trim)."""
    return media.plan_cut(inp.dance, start_s=trim.start_s, end_s=trim.end_s)


def render_variant(inp: Inputs, alignment: Alignment, plan: media.CutPlan, *, out_path: str, opts: Options,
                   original: np.ndarray | None = None, on_progress: Callable[[float], None] | None = None) -> dict:
    """Render the class video cut as ``plan`` (`cut_plan`) with the song laid out along ``alignment``
    (dance-timeline times).

    ``original`` (from `original_sound`) saves decoding it again when several variants are
    rendered with ``fill="original"``.
    """
    fill = None
    if opts.fill == "original":
        orig = original if original is not None else original_sound(inp)
        # original sample k is at dance time origin + k / sr; we need sample 0 at plan.start_s
        k0 = int(round((plan.start_s - inp.dance.audio_origin_s) * inp.song_sr))
        fill = orig[:, max(0, k0):] if k0 >= 0 else np.pad(orig, ((0, 0), (-k0, 0)))
    audio = build_track(inp.song, sr=inp.song_sr, segments=alignment.segments, start_s=plan.start_s,
                        end_s=plan.end_s, fill=fill)
    return media.mux(video_path=inp.dance_path, info=inp.dance, plan=plan, audio=audio, sr=inp.song_sr,
                     out_path=out_path, bitrate=opts.audio_bitrate, on_progress=on_progress)


# ----------------------------------------------------------------------------- the job


def write_json(path: str, obj) -> None:
    """Write JSON under a temporary name and rename it: a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
    os.replace(tmp, path)


def render(dance_path: str, bgm_path: str, out_path: str, alignment: Alignment | dict, *,
           options: Options | dict | None = None, on_progress: ProgressFn | None = None) -> dict:
    """Render one video from a given alignment (a corrected result), skipping the analysis."""
    opts = options if isinstance(options, Options) else Options.from_dict(options)
    al = alignment if isinstance(alignment, Alignment) else Alignment.from_dict(alignment)
    t0 = time.perf_counter()
    progress = Progress(on_progress)
    inp = load_inputs(dance_path, bgm_path, progress)
    progress(40, "trim", "Finding where the music plays")
    trim = plan_trim(inp, [al], opts)
    progress(45, "render", "Writing the video")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    rinfo = render_variant(inp, al, cut_plan(inp, trim), out_path=out_path, opts=opts,
                           on_progress=progress.span(45, 99, "render", "Writing the video"))
    progress(100, "done", "Done")
    return {"alignment": al.to_dict(), "render": rinfo, "trim": trim.to_dict(), "warnings": list(al.warnings),
            "notices": engine_notices(al, al.engine),
            "seconds": round(time.perf_counter() - t0, 3)}


def engine_notices(al: Alignment, engine: str) -> list[dict]:
    """An alignment's notices (``{"code", "params"}``), each naming the engine it came from."""
    return [{"code": n["code"], "params": {**n["params"], "engine": engine}} for n in al.notices]


def agreement(a: Alignment | None, b: Alignment | None) -> dict | None:
    """Whether the two engines found the same thing (main offsets within 20 ms, rates within 0.3 %)."""
    if a is None or b is None:
        return None
    d_ms = abs(a.offset_s - b.offset_s) * 1000
    dr = abs(a.tempo_ratio / b.tempo_ratio - 1)
    return {"agree": bool(d_ms <= 20 and dr <= 0.003), "offset_difference_ms": round(d_ms, 2),
            "tempo_difference": round(dr, 6)}


def process(dance_path: str, bgm_path: str, out_dir: str, *, options: Options | dict | None = None,
            on_progress: ProgressFn | None = None, beatgrid_path: str | None = None) -> dict:
    """Run the whole job; returns the final status object (DESIGN.md contract) with details.

    With ``beatgrid_path``, the data of the beat-grid plots (`beat_grid`) is written there as JSON.
    Raises `BeatSyncError` (with a one-line message) when nothing can be produced.
    """
    opts = options if isinstance(options, Options) else Options.from_dict(options)
    t0 = time.perf_counter()
    progress = Progress(on_progress)
    inp = load_inputs(dance_path, bgm_path, progress)
    progress(14, "analyse", "Analysing rhythm and harmony")
    signals = Signals(inp.dance_y, inp.bgm_y, sr=ANALYSIS_SR)  # shared by both engines
    signals.features()
    if beatgrid_path:
        write_json(beatgrid_path, beat_grid(signals, dance_origin_s=inp.dance.audio_origin_s))
    alignments: dict[str, Alignment] = {}
    failures: dict[str, BeatSyncError] = {}
    span = 40.0 / len(opts.engines)
    for i, eng in enumerate(opts.engines):
        progress(20 + i * span, "align_" + eng, f"Finding the song in the video ({eng})")
        try:
            alignments[eng] = align_inputs(inp, engine=eng, signals=signals)
        except AlignmentError as e:
            failures[eng] = e
    del signals
    release_memory()
    if not alignments:
        raise next(iter(failures.values()))
    progress(60, "trim", "Finding where the music plays")
    trim = plan_trim(inp, list(alignments.values()), opts)
    plan = cut_plan(inp, trim)
    os.makedirs(out_dir, exist_ok=True)
    outputs: dict[str, str] = {}
    variants: dict[str, dict] = {}
    rspan = 38.0 / len(alignments)
    original = original_sound(inp) if opts.fill == "original" else None  # decoded once for all variants
    for i, (eng, al) in enumerate(alignments.items()):
        lo = 61 + i * rspan
        progress(lo, "render_" + eng, f"Writing the {eng} video")
        path = output_path(out_dir, dance_path, eng)
        rinfo = render_variant(inp, al, plan, out_path=path, opts=opts, original=original,
                               on_progress=progress.span(lo, lo + rspan, "render_" + eng, f"Writing the {eng} video"))
        outputs[eng] = path
        variants[eng] = {"alignment": al.to_dict(), "render": rinfo, "output": path}
        release_memory()
    for eng, err in failures.items():
        variants[eng] = {"error": err.message, "error_code": err.code}
    warnings, notices = [], []  # English text, and {"code", "params"} for other languages
    agree = agreement(alignments.get("modular"), alignments.get("v2"))
    if agree is not None and not agree["agree"]:
        warnings.append(f"The two engines disagree by {agree['offset_difference_ms']:.0f} ms: compare both results.")
        notices.append({"code": "engines_disagree", "params": {"ms": round(agree["offset_difference_ms"])}})
    for eng, al in alignments.items():
        warnings += [f"{eng}: {w}" for w in al.warnings]
        notices += engine_notices(al, eng)
    for eng, err in failures.items():
        warnings.append(f"{eng}: {err.message}")
        notices.append({"code": "engine_failed", "params": {"engine": eng, "error_code": err.code}})
    result = {
        "status": "success",
        "message": "Done",
        "stage": "done",
        "progress": 100,
        "modular_output": outputs.get("modular"),
        "v2_output": outputs.get("v2"),
        "variants": variants,
        "trim": trim.to_dict(),
        "agreement": agree,
        "warnings": warnings,
        "notices": notices,
        "options": opts.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    progress(100, "done", "Done")
    return result

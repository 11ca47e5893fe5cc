"""One job: class video + song -> analysis -> per variant (align -> trim -> render), both at once.

`process` runs a ``process`` job: the CLI's ``process`` command calls it, and so does a task's job
process (`beatsync.job`, which the task system's supervisor starts for every task, whichever backend
runs the workers). After decoding and the shared analysis (`Signals`, features computed once), each
variant (engine) runs its own pipeline in a thread of its own: align, trim to its own music, render.
So the first result is written while the other engine still works, and when both engines find the
same thing (`same_result`) the video is rendered once and the second output is a hard link to it.
`render` (a ``render`` job: a corrected result) renders one variant from a given alignment without
analysing again, through `render_variant`; `file_beats` gives one file's tempo and beats (the beat
explorer). The sound track is made block by block and streamed to ffmpeg, so memory does not grow
with the class's length. Progress is reported through ``on_progress(percent, stage, message)``, with
percent never going down, from whichever thread makes it (calls are serialised). What a job
returns is typed by `beatsync.contract` (`ProcessResult`, `BeatGrid`, `FileBeats`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from beatsync import beatgrid, media
from beatsync.align import Alignment
from beatsync.align import align as run_engine
from beatsync.align.lines import Signals, SongSide, song_side
from beatsync.align.quick import QUICK, quick_alignment
from beatsync.analysis import ANALYSIS_SR, Features, beat_track, features
from beatsync.contract import (
    DANCE_EXTS,
    ENGINES,
    SONG_EXTS,
    Agreement,
    BeatGrid,
    FileBeats,
    Notice,
    Options,
    Preview,
    ProcessResult,
    SongAnalysis,
    Stage,
    Trim,
    VariantResult,
    align_stage,
    render_stage,
)
from beatsync.contract import Alignment as AlignmentData
from beatsync.errors import AlignmentError, MediaError
from beatsync.messages import STAGES
from beatsync.render_audio import track_blocks
from beatsync.songcache import AnalysedSong, SongCache

ProgressFn = Callable[[float, str, str], None]
#: called with everything a sync preview can play so far, each time more is known (`Preview`)
PreviewFn = Callable[[Preview], None]


class PreviewPublisher:
    """The alignments known so far (`Preview`), handed to ``fn`` each time one is added, from whichever
    thread finds it (calls are serialised). A failing ``fn`` never stops the job."""

    def __init__(self, fn: PreviewFn | None, *, frame_rate: float | None = None):
        self.fn = fn
        self.preview = Preview(frame_rate=frame_rate)
        self._lock = threading.Lock()

    def __call__(self, name: str, al: Alignment) -> None:
        if self.fn is None:
            return
        data = AlignmentData.model_validate(al.to_dict())
        with self._lock:
            p = self.preview
            if name == QUICK:
                if p.variants:  # a method's alignment is already known: the estimate has nothing to add
                    return
                self.preview = p.model_copy(update={"quick": data})
            else:
                self.preview = p.model_copy(update={"variants": {**p.variants, name: data}})
            self.fn(self.preview)


class Progress:
    """Monotonic progress: maps a stage's own 0..1 onto its share of 0..100 and never goes down.

    Safe to call from several threads: calls of ``fn`` are serialised (one at a time, in the order
    of their percentages), so ``fn`` itself needs no lock.
    """

    def __init__(self, fn: ProgressFn | None):
        self.fn = fn
        self.value = 0.0
        self._lock = threading.Lock()

    def __call__(self, pct: float, stage: str, message: str) -> None:
        with self._lock:
            pct = float(min(100.0, max(self.value, pct)))
            self.value = pct
            if self.fn is not None:
                self.fn(round(pct, 1), str(stage), message)  # (a `Stage` as its plain code)

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
    #: what the analysis computes from the song alone, when already known (`load_inputs` with ``analyse_song``)
    song_side: SongSide | None = None
    #: how the song was got from the song cache (None without one)
    song_analysis: SongAnalysis | None = None
    #: when getting the song began and ended (`time.perf_counter`)
    song_span: tuple[float, float] = (0.0, 0.0)

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


def check_sound(y: np.ndarray, path: str, *, role: str) -> None:
    """A decoded sound (mono, ANALYSIS_SR) long and loud enough to analyse: else ``too_short``/``silent``."""
    if len(y) < ANALYSIS_SR * 2:
        raise MediaError("too_short", f"{Path(path).name}: the sound is shorter than 2 seconds.", file=Path(path).name)
    if float(np.max(np.abs(y))) < 1e-4:
        what = "class video" if role == "dance" else "song"
        raise MediaError("silent", f"{Path(path).name}: the {what}'s sound is silent.", file=Path(path).name,
                         role=role)


#: the songs `_spilled` to files and mapped (weak references: while anything uses them)
_SPILLED: list[weakref.ref] = []


def _mapped_song(mapped: np.memmap) -> np.ndarray:
    """A song mapped from a file, (n, channels) read-only: its pages are given back after use
    (`release_memory`); as (channels, n)."""
    _SPILLED.append(weakref.ref(mapped))
    return mapped.T


def _spilled(song: np.ndarray, folder: str) -> np.ndarray:
    """``song`` (channels, n) moved to a file in ``folder`` and mapped back read-only: the render reads
    it only after the alignment, whose peak it would otherwise add to (100 MB for a 5-minute song). The
    file is unlinked at once (the mapping keeps it): nothing is left behind, even by a crash."""
    rows = np.ascontiguousarray(song.T)  # (n, channels): `decode_audio`'s interleaved samples, no copy
    fd, path = tempfile.mkstemp(prefix=".song-", suffix=".f32", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            rows.tofile(f)
        mapped = np.memmap(path, dtype=np.float32, mode="r", shape=rows.shape)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return _mapped_song(mapped)


def _decode_song(bgm_path: str, binfo: media.MediaInfo) -> tuple[np.ndarray, int, np.ndarray]:
    """The song at its own rate and channels (what gets rendered), and mono at ANALYSIS_SR."""
    song_sr = int(binfo.audio.sample_rate)
    song = media.decode_audio(bgm_path, sr=song_sr, mono=False, info=binfo)
    if song.ndim == 1:
        song = song[None, :]
    # one decode of the song serves both rendering and analysis. The mono mix as a product with the
    # channels' weights: the samples are interleaved (``song`` is a transposed view), where numpy's
    # mean over the channel axis walks them with a stride (0.45 s against 0.03 s for a 5-minute song)
    mono = song[0] if song.shape[0] == 1 else song.T @ np.full(song.shape[0], 1.0 / song.shape[0], np.float32)
    bgm_y = soxr.resample(mono, song_sr, ANALYSIS_SR, quality="HQ").astype(np.float32)
    return song, song_sr, bgm_y


def read_song(bgm_path: str, *, analyse: bool = True) -> AnalysedSong:
    """Probe, decode and check the song, and (``analyse``) compute what the alignment needs of it alone
    (`song_side`): all a job needs of its song, which the song cache keeps (`beatsync.songcache`)."""
    binfo = media.probe(bgm_path)
    media.require_audio(binfo, role="bgm")
    song, song_sr, bgm_y = _decode_song(bgm_path, binfo)
    check_sound(bgm_y, bgm_path, role="bgm")
    side = song_side(bgm_y, sr=ANALYSIS_SR) if analyse else None
    return AnalysedSong(song=song, sr=song_sr, bgm_y=bgm_y, side=side)


def _get_song(bgm_path: str, *, cache: SongCache | None, analyse: bool, spill_dir: str | None
              ) -> tuple[AnalysedSong, SongAnalysis | None]:
    """The song for a job (`read_song`): with a ``cache`` from there (computed and kept there when
    ``analyse``: the analysis is what an entry holds; else only if it is there already), otherwise
    decoded here, kept out of memory in ``spill_dir`` if given (`_spilled`)."""
    got = how = None
    if cache is not None:
        found = cache.get(bgm_path, lambda: read_song(bgm_path)) if analyse else cache.lookup(bgm_path)
        if found is not None:
            got, how = found
    if got is None:
        got = read_song(bgm_path, analyse=analyse)
    if got.mapped is not None:
        got.song = _mapped_song(got.mapped)
    elif spill_dir is not None:
        got.song = _spilled(got.song, spill_dir)
    return got, how


def load_inputs(dance_path: str, bgm_path: str, progress: Progress, *, spill_dir: str | None = None,
                song_cache: SongCache | None = None, analyse_song: bool = False) -> Inputs:
    """Probe and decode both files (at once: the song in a thread of its own); ``spill_dir``: where the
    song to render waits, out of memory, while the engines run (`_spilled`). With ``analyse_song``,
    what the analysis computes from the song alone too (``song_side``, for `Signals`), meanwhile.
    ``song_cache``: where the song may already be, decoded and analysed by another job (and is kept
    when it is analysed here); its mapped copy is then the one rendered."""
    check_extension(dance_path, role="dance")
    check_extension(bgm_path, role="bgm")
    progress(1, Stage.PROBE, "Reading the files")
    dinfo = media.probe(dance_path)
    media.require_video(dinfo)
    media.require_audio(dinfo, role="dance")
    progress(4, Stage.DECODE, "Decoding the sound")
    # the two decodes are independent (two ffmpeg processes): the song's in a thread of its own
    song_box: dict = {}

    def get_song() -> None:
        t = time.perf_counter()
        try:
            song_box["value"] = _get_song(bgm_path, cache=song_cache, analyse=analyse_song, spill_dir=spill_dir)
        except BaseException as e:  # noqa: BLE001 - raised in the calling thread below
            song_box["error"] = e
        song_box["span"] = (t, time.perf_counter())

    worker = threading.Thread(target=get_song, name="beatsync-song")
    worker.start()
    try:
        dance_y = media.decode_audio(dance_path, sr=ANALYSIS_SR, mono=True, info=dinfo)
    finally:
        worker.join()
    err = song_box.get("error")
    if err is not None and not (isinstance(err, MediaError) and err.code in ("too_short", "silent")):
        raise err
    check_sound(dance_y, dance_path, role="dance")  # (the class video's sound first, then the song's)
    if err is not None:
        raise err
    got, how = song_box["value"]
    release_memory()  # the decoders' growing buffers and the resampler's copies
    progress(12, Stage.DECODE, "Sound decoded")
    return Inputs(dinfo, dance_y, got.bgm_y, got.song, got.sr, song_side=got.side, song_analysis=how,
                  song_span=song_box["span"])


def _fps(inp: Inputs) -> float | None:
    video = inp.dance.video
    return float(video.fps) if video is not None and video.fps else None


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


def beat_grid(signals: Signals, *, dance_origin_s: float) -> BeatGrid:
    """What the beat-grid plots draw (`beatsync.beatgrid`): the class recording's onset strength, beats
    and onset peaks (video time), the song's beats (song time), each on the song's own onset peak
    when one is within `beatgrid.SNAP_S` (both sides read off the same fine envelopes, so that a
    right alignment puts the song's beats on the class's onsets to the millisecond)."""
    fd, fb = signals.features()
    td, bd, tg, bg = signals.beats()
    fs = signals.env_rate
    class_onsets, _ = beatgrid.onset_peaks(signals.envelope("dance"), fs, t0_s=dance_origin_s)
    song_onsets, _ = beatgrid.onset_peaks(signals.envelope("bgm"), fs)
    cls = beat_summary(fd, td, bd, origin_s=dance_origin_s)
    cls["onsets_s"] = np.round(class_onsets, 4).tolist()
    return BeatGrid.model_validate({"class": cls,
                                    "song": beat_summary(fb, tg, beatgrid.snap_to_onsets(bg, song_onsets),
                                                         onset=False)})


def file_beats(path: str, *, on_progress: ProgressFn | None = None) -> FileBeats:
    """Tempo, beats and onset strength of any song or video (the beat explorer)."""
    progress = Progress(on_progress)
    progress(2, Stage.PROBE, "Reading the file")
    info = media.probe(path)
    media.require_audio(info)
    progress(10, Stage.DECODE, "Decoding the sound")
    y = media.decode_audio(path, sr=ANALYSIS_SR, mono=True, info=info)
    if len(y) < ANALYSIS_SR:
        raise MediaError("too_short", f"{info.name}: the sound is shorter than 1 second.", file=info.name)
    progress(50, Stage.ANALYSE, "Finding the beats")
    f = features(y, sr=ANALYSIS_SR)
    out = beat_summary(f, *beat_track(f.onset, frame_rate=f.frame_rate), origin_s=info.audio_origin_s)
    out["duration_s"] = round(info.duration_s, 3)
    progress(100, Stage.DONE, "Done")
    return FileBeats.model_validate(out)


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise, and the peak of one
    stage would stay the footprint of the whole job), and the pages of spilled songs already read
    (`_spilled`: they are read again from the file's cache when needed)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    _SPILLED[:] = [r for r in _SPILLED if r() is not None]
    for ref in list(_SPILLED):
        mapped = ref()
        with contextlib.suppress(OSError, AttributeError, ValueError):
            mapped._mmap.madvise(mmap.MADV_DONTNEED)


#: how often `releasing_memory` gives freed memory back while work runs (s)
RELEASE_EVERY_S = 0.5


@contextlib.contextmanager
def releasing_memory(every_s: float = RELEASE_EVERY_S) -> Iterator[None]:
    """`release_memory` every ``every_s`` seconds while the block runs. Threads that each free large
    temporaries leave them in their own malloc arenas, and the sum would set the job's peak (measured
    on a 30-minute class: about 60 MB of the peak, at no measurable cost in time)."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every_s):
            release_memory()

    thread = threading.Thread(target=loop, name="release-memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        release_memory()


# ----------------------------------------------------------------------------- trimming


BLACK_SCAN_S = 15.0


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
        return Trim(start_s=0.0, end_s=dur, music_start_s=m0, music_end_s=m1, black_head_s=head_end,
                    black_tail_s=tail_start)
    start = max(m0 - opts.margin_s, head_end if head_end < m0 + 0.5 else 0.0, 0.0)
    end = min(m1 + opts.margin_s, tail_start if tail_start > m1 - 0.5 else dur, dur)
    if end - start < 1.0:
        start, end = 0.0, dur
    return Trim(start_s=start, end_s=end, music_start_s=m0, music_end_s=m1, black_head_s=head_end,
                black_tail_s=tail_start)


def union_trim(trims: Iterable[Trim]) -> Trim:
    """What all of ``trims`` keep: the earliest start, the latest end, the earliest music start and
    the latest music end (and the longest black head / earliest black tail any of them saw)."""
    ts = list(trims)
    return Trim(start_s=min(t.start_s for t in ts), end_s=max(t.end_s for t in ts),
                music_start_s=min(t.music_start_s for t in ts), music_end_s=max(t.music_end_s for t in ts),
                black_head_s=max(t.black_head_s for t in ts), black_tail_s=min(t.black_tail_s for t in ts))


# ----------------------------------------------------------------------------- rendering


#: two results closer than this (seconds: dance times and song times of every segment) render the same
SAME_S = 0.001
#: ... and with rates closer than this
SAME_RATE = 1e-6


def same_result(a: Alignment, b: Alignment) -> bool:
    """Whether two alignments lay the song out the same way, so that their videos are the same: as
    many segments, each one's dance start and end and the song time at both within `SAME_S`, the
    rates within `SAME_RATE`, the same modes."""
    sa = sorted(a.segments, key=lambda g: g.dance_start_s)
    sb = sorted(b.segments, key=lambda g: g.dance_start_s)
    if len(sa) != len(sb):
        return False
    for x, y in zip(sa, sb, strict=True):
        times = ((x.dance_start_s, y.dance_start_s), (x.dance_end_s, y.dance_end_s),
                 (x.bgm_time(x.dance_start_s), y.bgm_time(y.dance_start_s)),
                 (x.bgm_time(x.dance_end_s), y.bgm_time(y.dance_end_s)))
        if any(abs(p - q) > SAME_S for p, q in times) or abs(x.rate - y.rate) > SAME_RATE or x.mode != y.mode:
            return False
    return True


def same_trim(a: Trim, b: Trim) -> bool:
    """Whether two trims keep the same part of the video (every time within `SAME_S`)."""
    return all(abs(p - q) <= SAME_S for p, q in ((a.start_s, b.start_s), (a.end_s, b.end_s),
                                                  (a.music_start_s, b.music_start_s), (a.music_end_s, b.music_end_s)))


def output_path(out_dir: str, dance_path: str, variant: str) -> str:
    return os.path.join(out_dir, f"{Path(dance_path).stem}_{variant}.mp4")


def original_blocks(inp: Inputs, start_s: float) -> Iterator[np.ndarray]:
    """The class recording's own sound at the song's rate, (channels, k) blocks, sample 0 at dance
    time ``start_s``: decoded as the blocks are taken (a pipe from ffmpeg), never all at once."""
    k0 = int(round((start_s - inp.dance.audio_origin_s) * inp.song_sr))
    if k0 < 0:  # the sound starts after start_s: silence until it does
        yield np.zeros((inp.dance.audio.channels, -k0), np.float32)
    skip = max(0, k0)
    with contextlib.closing(media.stream_audio(inp.dance_path, sr=inp.song_sr, mono=False, info=inp.dance)) as blocks:
        for block in blocks:
            if skip >= block.shape[1]:
                skip -= block.shape[1]
                continue
            yield block[:, skip:]
            skip = 0


def cut_plan(inp: Inputs, trim: Trim) -> media.CutPlan:
    """How the picture is cut for ``trim``."""
    return media.plan_cut(inp.dance, start_s=trim.start_s, end_s=trim.end_s)


class CutPlans:
    """The cut plans of one job, each made once per (start, end) however many variants ask (from
    any thread); the keyframes are demuxed once for all of them."""

    def __init__(self, inp: Inputs):
        self.inp = inp
        self._plans: dict[tuple[float, float], media.CutPlan] = {}
        self._keyframes: np.ndarray | None = None
        self._lock = threading.Lock()

    def __call__(self, trim: Trim) -> media.CutPlan:
        key = (trim.start_s, trim.end_s)
        with self._lock:  # held while planning: a second asker waits instead of planning again
            if key not in self._plans:
                video = media.require_video(self.inp.dance)
                kf = None
                if video.codec in media.OUTPUT_COPY_CODECS:  # plan_cut reads keyframes only to copy
                    if self._keyframes is None:
                        self._keyframes = media.keyframe_times(self.inp.dance_path, video_index=video.index)
                    kf = self._keyframes
                self._plans[key] = media.plan_cut(self.inp.dance, start_s=trim.start_s, end_s=trim.end_s,
                                                  keyframes=kf)
            return self._plans[key]


class Aborted(Exception):
    """A variant's pipeline stopped because another one failed (the job fails with that error)."""


def _abortable(blocks: Iterable[np.ndarray], abort: threading.Event | None) -> Iterator[np.ndarray]:
    with contextlib.closing(iter(blocks)) as it:  # closing: the blocks' own decoders stop too
        for block in it:
            if abort is not None and abort.is_set():
                raise Aborted()
            yield block


def render_variant(inp: Inputs, alignment: Alignment, plan: media.CutPlan, *, out_path: str, opts: Options,
                   on_progress: Callable[[float], None] | None = None,
                   abort: threading.Event | None = None) -> dict:
    """Render the class video cut as ``plan`` (`cut_plan`) with the song laid out along ``alignment``
    (dance-timeline times).

    The sound track is made a block at a time (`track_blocks`) while ffmpeg takes it, with
    ``fill="original"`` the recording's own sound decoded alongside in the same blocks: memory does
    not grow with the video's length. Setting ``abort`` stops the render (`Aborted`) at the next block.
    """
    fill = original_blocks(inp, plan.start_s) if opts.fill == "original" else None
    blocks = track_blocks(inp.song, sr=inp.song_sr, segments=alignment.segments, start_s=plan.start_s,
                          end_s=plan.end_s, fill=fill)
    return media.mux(video_path=inp.dance_path, info=inp.dance, plan=plan, audio=_abortable(blocks, abort),
                     channels=inp.song.shape[0], sr=inp.song_sr, out_path=out_path, bitrate=opts.audio_bitrate,
                     on_progress=on_progress)


def link_or_copy(src: str, dst: str) -> str:
    """Make ``dst`` the same file as ``src``: a hard link (no copy, no extra disk), or a copy where
    links are not possible; written under a temporary name and renamed, like every output.
    Returns ``"link"`` or ``"copy"``."""
    folder, name = os.path.split(os.path.abspath(dst))
    tmp = os.path.join(folder, f".{os.path.splitext(name)[0]}.partial.mp4")
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    try:
        try:
            os.link(src, tmp)
            how = "link"
        except OSError:
            shutil.copyfile(src, tmp)
            how = "copy"
        os.replace(tmp, dst)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        reason = exc.strerror or str(exc)
        raise MediaError("write_failed", f"could not write {name}: {reason}", name=name, reason=reason) from exc
    return how


# ----------------------------------------------------------------------------- the job


def write_json(path: str, obj) -> None:
    """Write JSON under a temporary name and rename it: a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
    os.replace(tmp, path)


#: called with how the song was got (`SongAnalysis`), as soon as the job has it
SongFn = Callable[[SongAnalysis], None]


def _song_cache(song_cache: SongCache | str | os.PathLike | None) -> SongCache | None:
    return song_cache if isinstance(song_cache, SongCache) or song_cache is None else SongCache(song_cache)


def render(dance_path: str, bgm_path: str, out_path: str, alignment: Alignment | AlignmentData | dict, *,
           variant: str | None = None, options: Options | dict | None = None,
           on_progress: ProgressFn | None = None, on_preview: PreviewFn | None = None,
           song_cache: SongCache | str | os.PathLike | None = None, on_song: SongFn | None = None) -> ProcessResult:
    """Render one video from a given alignment (a corrected result), skipping the analysis; the
    result has that one variant (``variant``, by default the alignment's engine). ``on_preview`` gets
    the alignment (and the video's frame rate) once the inputs are read. ``song_cache``: the song
    cache (`beatsync.songcache`, or its folder), where the decoded song may be already (it is not
    analysed here, so nothing is kept); ``on_song`` is told when it was."""
    opts = Options.parse(options)
    if isinstance(alignment, AlignmentData):
        alignment = alignment.model_dump()
    al = alignment if isinstance(alignment, Alignment) else Alignment.from_dict(alignment)
    t0 = time.perf_counter()
    progress = Progress(on_progress)
    inp = load_inputs(dance_path, bgm_path, progress, song_cache=_song_cache(song_cache))
    t_inputs = round(time.perf_counter() - t0, 3)
    if on_song is not None and inp.song_analysis is not None:
        on_song(inp.song_analysis)
    variant = variant or al.engine
    PreviewPublisher(on_preview, frame_rate=_fps(inp))(variant, al)
    progress(40, Stage.TRIM, "Finding where the music plays")
    trim = plan_trim(inp, [al], opts)
    progress(45, Stage.RENDER, "Writing the video")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    rinfo = render_variant(inp, al, cut_plan(inp, trim), out_path=out_path, opts=opts,
                           on_progress=progress.span(45, 99, Stage.RENDER, "Writing the video"))
    progress(100, Stage.DONE, "Done")
    seconds = round(time.perf_counter() - t0, 3)
    return ProcessResult(
        variants={variant: VariantResult(alignment=al.to_dict(), render=rinfo, trim=trim, output=out_path)},
        trim=trim, warnings=list(al.warnings), notices=engine_notices(al, al.engine), options=opts,
        timings={"inputs": (0.0, t_inputs), "render": (t_inputs, seconds)}, seconds=seconds,
        song_analysis=inp.song_analysis)


def engine_notices(al: Alignment, engine: str) -> list[Notice]:
    """An alignment's notices, each naming the engine it came from."""
    return [Notice(code=n["code"], params={**n["params"], "engine": engine}) for n in al.notices]


def agreement(a: Alignment | None, b: Alignment | None) -> Agreement | None:
    """Whether the two engines found the same thing (main offsets within 20 ms, rates within 0.3 %)."""
    if a is None or b is None:
        return None
    d_ms = abs(a.offset_s - b.offset_s) * 1000
    dr = abs(a.tempo_ratio / b.tempo_ratio - 1)
    return Agreement(agree=bool(d_ms <= 20 and dr <= 0.003), offset_difference_ms=round(d_ms, 2),
                     tempo_difference=round(dr, 6))


def _stage_text(stage: str) -> str:
    return STAGES.get(stage, (stage,))[0]


#: the share of a variant's pipeline given to aligning (the engines report no progress of their own);
#: trimming and rendering take the rest
ALIGN_SHARE = 0.55


class _Tracker:
    """The progress of the variants' pipelines running at once, as one: the mean of their fractions
    mapped onto ``lo .. hi``, and the stage of the pipeline furthest behind (the one shown stays
    until it is done or another falls `SWITCH` behind it, so that two pipelines running neck and
    neck do not make the stage flicker)."""

    SWITCH = 0.05

    def __init__(self, progress: Progress, engines: tuple[str, ...], *, lo: float, hi: float):
        self.progress, self.engines, self.lo, self.hi = progress, engines, lo, hi
        self.frac = dict.fromkeys(engines, 0.0)
        self.stage = {e: align_stage(e) for e in engines}
        self.shown = engines[0]
        self._lock = threading.Lock()

    def __call__(self, engine: str, frac: float, stage: str | None = None) -> None:
        with self._lock:
            self.frac[engine] = max(self.frac[engine], min(1.0, max(0.0, frac)))
            if stage is not None:
                self.stage[engine] = stage
            running = [e for e in self.engines if self.frac[e] < 1.0]
            if running:
                behind = min(running, key=self.frac.__getitem__)
                if self.shown not in running or self.frac[behind] < self.frac[self.shown] - self.SWITCH:
                    self.shown = behind
            pct = self.lo + (self.hi - self.lo) * sum(self.frac.values()) / len(self.frac)
            stage = self.stage[self.shown]
            self.progress(pct, stage, _stage_text(stage))


@dataclass
class _Render:
    """One video being written, and the variants that will get it too (same result)."""

    engine: str
    alignment: Alignment
    trim: Trim
    path: str
    followers: list
    done: threading.Event
    info: dict | None = None
    failed: bool = False


class _Variants:
    """Each variant's pipeline (align -> trim -> render) in a thread of its own, sharing the inputs,
    the `Signals` (features already computed), the cut plans, and a video when two results are the
    same (`same_result`, `same_trim`): the first to get there renders it, the other waits and links it."""

    def __init__(self, inp: Inputs, opts: Options, signals: Signals, *, out_dir: str, progress: Progress,
                 t0: float, publish: PreviewPublisher | None = None):
        self.inp, self.opts, self.signals, self.out_dir, self.t0 = inp, opts, signals, out_dir, t0
        self.publish = publish or PreviewPublisher(None)
        self.engines = tuple(opts.engines)
        self.track = _Tracker(progress, self.engines, lo=20.0, hi=99.0)
        self.plans = CutPlans(inp)
        self.abort = threading.Event()
        self._lock = threading.Lock()
        self._aligning = len(self.engines)
        self._renders: list[_Render] = []
        self.alignments: dict[str, Alignment] = {}
        self.failures: dict[str, AlignmentError] = {}
        self.variants: dict[str, VariantResult] = {}
        self.trims: dict[str, Trim] = {}
        self.errors: dict[str, BaseException] = {}
        self.timings: dict[str, list[float]] = {}

    def _now(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def _timed(self, name: str, t_start: float) -> None:
        with self._lock:
            self.timings[name] = [t_start, self._now()]

    def run(self, *, beatgrid: Callable[[Signals], None] | None = None) -> None:
        """Run the pipelines; with ``beatgrid``, call it (with the signals) in this thread meanwhile.
        Raises the first failure that is not an engine's `AlignmentError` (after stopping the others)."""
        signals = self.signals  # (dropped by the pipelines once both have aligned)
        threads = [threading.Thread(target=self._pipeline, args=(e,), name=f"beatsync-{e}") for e in self.engines]
        for t in threads:
            t.start()
        try:
            if beatgrid is not None:
                beatgrid(signals)
            del signals
            for t in threads:
                t.join()
        except BaseException:  # the beat grid failed, or an interrupt: stop the renders, then go
            self.abort.set()
            for t in threads:
                t.join()
            raise
        for e in self.engines:
            if e in self.errors:
                raise self.errors[e]

    def _pipeline(self, eng: str) -> None:
        try:
            self._variant(eng)
        except Aborted:
            pass
        except BaseException as e:  # noqa: BLE001 - raised by run() in the calling thread
            with self._lock:
                self.errors[eng] = e
            self.abort.set()
        finally:
            self.track(eng, 1.0)

    def _aligned(self) -> None:
        with self._lock:
            self._aligning -= 1
            last = self._aligning == 0
            if last:  # both engines are done with the analysis and the analysis-rate sound
                self.signals = None
                self.inp.dance_y = self.inp.bgm_y = np.zeros(0, np.float32)
        if last:
            release_memory()

    def _variant(self, eng: str) -> None:
        inp, opts = self.inp, self.opts
        t = self._now()
        try:
            al = align_inputs(inp, engine=eng, signals=self.signals)
        except AlignmentError as e:
            with self._lock:
                self.failures[eng] = e
            return
        finally:
            self._timed("align_" + eng, t)
            self._aligned()
        if self.abort.is_set():
            raise Aborted()
        self.publish(eng, al)  # the preview can play it now, long before the video is written
        self.track(eng, ALIGN_SHARE, Stage.TRIM)
        t = self._now()
        trim = plan_trim(inp, [al], opts)
        self._timed("trim_" + eng, t)
        path = output_path(self.out_dir, inp.dance_path, eng)
        with self._lock:
            self.alignments[eng] = al
            leader = next((r for r in self._renders if same_result(r.alignment, al) and same_trim(r.trim, trim)),
                          None)
            if leader is None:
                job = _Render(eng, al, trim, path, [], threading.Event())
                self._renders.append(job)
            else:
                leader.followers.append(eng)
        self.track(eng, ALIGN_SHARE + 0.02, render_stage(eng))
        if leader is not None:
            self._follow(eng, al, leader, path)
            return
        t = self._now()
        try:
            plan = self.plans(trim)
            os.makedirs(self.out_dir, exist_ok=True)

            def on_render(frac: float) -> None:
                with self._lock:
                    who = [eng, *job.followers]
                for e in who:
                    self.track(e, ALIGN_SHARE + 0.02 + (0.98 - ALIGN_SHARE) * frac)

            job.info = render_variant(inp, al, plan, out_path=path, opts=opts, on_progress=on_render, abort=self.abort)
        except BaseException:
            job.failed = True
            raise
        finally:
            job.done.set()
            self._timed("render_" + eng, t)
        with self._lock:
            self.trims[eng] = trim
            self.variants[eng] = VariantResult(alignment=al.to_dict(), render=job.info, output=path, trim=trim)
        release_memory()

    def _follow(self, eng: str, al: Alignment, leader: _Render, path: str) -> None:
        """The same video as ``leader``'s: wait for it, then link it (a copy if links fail)."""
        t = self._now()
        while not leader.done.wait(0.1):
            if self.abort.is_set():
                raise Aborted()
        if leader.failed:
            raise Aborted()  # the leader's error is the job's
        how = link_or_copy(leader.path, path)
        self._timed("link_" + eng, t)
        with self._lock:
            self.trims[eng] = leader.trim
            self.variants[eng] = VariantResult(alignment=al.to_dict(), render=leader.info, output=path,
                                               trim=leader.trim, same_as=leader.engine, file=how)


def process(dance_path: str, bgm_path: str, out_dir: str, *, options: Options | dict | None = None,
            on_progress: ProgressFn | None = None, beatgrid_path: str | None = None,
            on_preview: PreviewFn | None = None, song_cache: SongCache | str | os.PathLike | None = None,
            on_song: SongFn | None = None) -> ProcessResult:
    """Run the whole job; returns its `ProcessResult` (``python -m beatsync process`` prints it as the
    final status object).

    Decoding and the analysis shared by the engines come first; then each engine's variant runs
    its own pipeline (align -> trim -> render) in a thread, both at once (`_Variants`). Each variant
    has its own trim (``variants[eng].trim``); the top-level ``trim`` is their union. When two
    results are the same (`same_result`), the video is rendered once and the other output is a hard
    link to it (``variants[eng].same_as``, notice ``same_result``). One engine failing
    (`AlignmentError`) still leaves the other's video.

    With ``beatgrid_path``, the data of the beat-grid plots (`beat_grid`) is written there as JSON.
    ``on_preview`` gets what a sync preview can play (`Preview`) each time more is known: a first
    estimate right after the analysis (`beatsync.align.quick`, when it is clear), then each engine's
    alignment as soon as it has it, before its video is written.

    The song is decoded and analysed (what the analysis computes from it alone: `song_side`) while
    the class video's sound is decoded. With ``song_cache`` (a `SongCache` or its folder), the song
    comes from there when another job has analysed it (the same file's bytes), else it is analysed
    here and kept there (by one job of those asking at once, the others wait for it): the result's
    ``song_analysis`` says which (`SongAnalysis`), ``on_song`` is told as soon as it is known, and
    the result is the same either way. ``timings["song_analysis"]`` is the time it took.
    Raises `BeatSyncError` (with a one-line message) when nothing can be produced.
    """
    opts = Options.parse(options)
    t0 = time.perf_counter()
    progress = Progress(on_progress)
    os.makedirs(out_dir, exist_ok=True)
    inp = load_inputs(dance_path, bgm_path, progress, spill_dir=out_dir, song_cache=_song_cache(song_cache),
                      analyse_song=True)
    t_inputs = round(time.perf_counter() - t0, 3)
    if on_song is not None and inp.song_analysis is not None:
        on_song(inp.song_analysis)
    progress(14, Stage.ANALYSE, "Analysing rhythm and harmony")
    # shared by both engines; the song's side already known
    signals = Signals(inp.dance_y, inp.bgm_y, sr=ANALYSIS_SR, song=inp.song_side)
    inp.song_side = None
    publish = PreviewPublisher(on_preview, frame_rate=_fps(inp))
    if on_preview is not None:  # first, on its own: the preview can play it seconds before the engines end
        quick = quick_alignment(signals)  # (its fine envelopes are the engines' too: computed once)
        if quick is not None:
            publish(QUICK, quick.shifted(inp.dance.audio_origin_s))
    signals.features()  # once, before the engines' threads start
    t_analysis = round(time.perf_counter() - t0, 3)
    first = align_stage(opts.engines[0])
    progress(20, first, _stage_text(first))
    job = _Variants(inp, opts, signals, out_dir=out_dir, progress=progress, t0=t0, publish=publish)
    del signals

    def write_beatgrid(sig: Signals) -> None:
        write_json(beatgrid_path, beat_grid(sig, dance_origin_s=inp.dance.audio_origin_s).model_dump(mode="json"))

    with releasing_memory():
        job.run(beatgrid=write_beatgrid if beatgrid_path else None)
    if not job.variants:
        raise next(iter(job.failures[e] for e in opts.engines if e in job.failures))
    alignments = {e: job.alignments[e] for e in opts.engines if e in job.variants}
    variants = {e: job.variants[e] for e in opts.engines if e in job.variants}
    for eng in opts.engines:
        if eng in job.failures:
            err = job.failures[eng]
            variants[eng] = VariantResult(error=err.message, error_code=err.code)
    warnings: list[str] = []  # English text, and the same as notices (code and params) for other languages
    notices: list[Notice] = []
    agree = agreement(*(alignments.get(e) for e in ENGINES))
    if agree is not None and not agree.agree:
        warnings.append(f"The two engines disagree by {agree.offset_difference_ms:.0f} ms: compare both results.")
        notices.append(Notice(code="engines_disagree", params={"ms": round(agree.offset_difference_ms)}))
    for eng, v in variants.items():
        if v.same_as is not None:
            warnings.append(f"{eng}: the same result as {v.same_as} (within 1 ms): both videos are the same file.")
            notices.append(Notice(code="same_result", params={"engine": eng, "same_as": v.same_as}))
    for eng, al in alignments.items():
        warnings += [f"{eng}: {w}" for w in al.warnings]
        notices += engine_notices(al, eng)
    for eng in opts.engines:
        if eng in job.failures:
            err = job.failures[eng]
            warnings.append(f"{eng}: {err.message}")
            notices.append(Notice(code="engine_failed", params={"engine": eng, "error_code": err.code}))
    song_span = tuple(round(max(0.0, t - t0), 3) for t in inp.song_span)
    timings = {"inputs": (0.0, t_inputs), "song_analysis": song_span, "analysis": (t_inputs, t_analysis),
               **job.timings}
    result = ProcessResult(
        variants=variants, trim=union_trim(job.trims[e] for e in alignments), agreement=agree, warnings=warnings,
        notices=notices, options=opts, timings=dict(sorted(timings.items(), key=lambda kv: kv[1][0])),
        seconds=round(time.perf_counter() - t0, 3), song_analysis=inp.song_analysis)
    progress(100, Stage.DONE, "Done")
    return result

"""The data behind the job page's sync preview, beat grid and time estimate.

* `beatsync.align.quick`: a first estimate right after the analysis, or none when it is not clear
  (an unrelated song, a class played at another speed);
* `pipeline.process` publishes what a preview can play (`Preview`) before the videos are written:
  the estimate, then each engine's alignment before its render starts;
* the honest beat grid (`beatsync.beatgrid`, `pipeline.beat_grid`): the song's beats mapped through
  a right alignment fall within 30 ms of the class recording's own onsets (one take, two run-throughs
  with talk between, a slower run-through); a wrong placement shows as a gap, not as a match;
* `beatsync.estimate`: phases from timings, speeds learned and kept, a running job's estimate;
* a correction's download name says what it did.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import songgen as sg

from beatsync import beatgrid, estimate, pipeline
from beatsync.align.lines import Signals
from beatsync.align.quick import QUICK, quick_alignment
from beatsync.analysis import ANALYSIS_SR
from beatsync.contract import BeatGrid, Correction, StoredInput, TaskKind, TaskRecord
from beatsync.service import correction_suffix

SR = ANALYSIS_SR


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return sg.song(40.0, sr=SR, seed=5, tempo_bpm=112.0)


def recording(y: np.ndarray, *, seed: int = 1) -> np.ndarray:
    """A class recording of ``y``: a room, two people talking, a little noise."""
    rec = sg.room(0.6 * y, SR, 0.4, seed=seed, wet=0.35)
    return sg.noise(rec + sg.speech_like(len(rec), SR, seed=seed + 1, level=0.12), 30.0, seed=seed + 2)


def mono(y: np.ndarray) -> np.ndarray:
    return np.atleast_2d(y).mean(axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the first estimate
# --------------------------------------------------------------------------------------------


def test_quick_estimate_finds_one_take_and_refuses_what_is_not_clear(song):
    y = mono(song)
    rec, truth = sg.place(y, 6.0, 3.0, 30.0, 1.0, 40.0, SR)
    al = quick_alignment(Signals(recording(rec), y, sr=SR))
    assert al is not None and al.engine == QUICK
    assert al.offset_s == pytest.approx(truth.offset_s, abs=0.006)
    (seg,) = al.segments
    assert seg.rate == 1.0 and seg.dance_start_s == pytest.approx(6.0, abs=0.6)
    assert seg.dance_end_s == pytest.approx(36.0, abs=1.1)
    assert seg.bgm_time(20.0) == pytest.approx(truth.bgm_time(20.0), abs=0.006)

    other = mono(sg.song(40.0, sr=SR, seed=64, tempo_bpm=112.0))  # another song at the same tempo
    assert quick_alignment(Signals(recording(rec), other, sr=SR)) is None
    slow, _ = sg.place(y, 2.0, 0.0, 36.0, 0.85, 40.0, SR)  # played at 85 %: for the engines to find
    assert quick_alignment(Signals(recording(slow), y, sr=SR)) is None


# --------------------------------------------------------------------------------------------
# the preview is published before the videos are written
# --------------------------------------------------------------------------------------------


def test_process_publishes_the_alignments_before_rendering(tmp_path):
    m = sg.write_class_media(tmp_path, video_s=20.0, song_s=16.0, music_at_s=3.0, music_len_s=14.0, seed=13)
    events: list[tuple[str, object]] = []
    lock = threading.Lock()

    def on_progress(pct, stage, msg):
        with lock:
            events.append(("progress", stage))

    def on_preview(p):
        with lock:
            events.append(("preview", p))
            when.append(time.perf_counter() - t0)

    when: list[float] = []
    t0 = time.perf_counter()
    result = pipeline.process(str(m.video_path), str(m.song_path), str(tmp_path / "out"),
                              on_progress=on_progress, on_preview=on_preview)
    previews = [(i, p) for i, (kind, p) in enumerate(events) if kind == "preview"]
    assert previews, events
    first_i, first = previews[0]
    assert first.quick is not None and not first.variants, "the first estimate comes first"
    assert first.quick.offset_s == pytest.approx(m.music_at_s, abs=0.01)
    assert first.frame_rate == pytest.approx(30.0)
    stages = [s for kind, s in events if kind == "progress"]
    assert not any(s.startswith("render_") for s in stages[:first_i]), "published before any video is written"
    final = previews[-1][1]
    assert set(final.variants) == {"modular", "v2"}
    for eng in ("modular", "v2"):  # (the pipeline's timings count from its start, a moment after t0)
        published = when[next(k for k, (_, p) in enumerate(previews) if eng in p.variants)]
        written = result.timings.get(f"render_{eng}") or result.timings[f"link_{eng}"]
        assert published < written[0], (eng, published, result.timings)
        assert final.variants[eng].offset_s == pytest.approx(result.variants[eng].alignment.offset_s, abs=1e-6)


def test_render_publishes_its_alignment_at_once(tmp_path):
    m = sg.write_class_media(tmp_path, video_s=12.0, song_s=10.0, music_at_s=2.5, music_len_s=8.0, seed=61)
    al = {"engine": "modular", "offset_s": 2.54, "tempo_ratio": 1.0, "confidence": 1.0,
          "segments": [{"dance_start_s": 2.54, "dance_end_s": 10.5, "bgm_start_s": 0.0, "rate": 1.0}]}
    seen = []
    out = pipeline.render(str(m.video_path), str(m.song_path), str(tmp_path / "x.mp4"), al, variant="modular",
                          on_progress=lambda *a: seen.append(("progress", a[1])),
                          on_preview=lambda p: seen.append(("preview", p)))
    (i,) = [i for i, (k, _) in enumerate(seen) if k == "preview"]
    assert seen[i][1].variants["modular"].offset_s == 2.54
    assert "render" in [s for k, s in seen[i:] if k == "progress"], seen
    assert set(out.timings) == {"inputs", "render"}


# --------------------------------------------------------------------------------------------
# the honest beat grid
# --------------------------------------------------------------------------------------------


def grid_for(rec: np.ndarray, y: np.ndarray) -> BeatGrid:
    return pipeline.beat_grid(Signals(rec, y, sr=SR), dance_origin_s=0.0)


def check_on_the_onsets(grid: BeatGrid, segments, *, label: str) -> beatgrid.BeatMatch:
    bm = beatgrid.match_beats(grid.song.beats_s, grid.class_.onsets_s, segments, song_tempo_bpm=grid.song.tempo_bpm)
    err_ms = np.abs(bm.errors_s) * 1000
    print(f"{label}: {len(bm.mapped_s)} beats mapped, {bm.share_matched:.0%} matched, median {np.median(err_ms):.1f} "
          f"ms, 95th percentile {np.percentile(err_ms, 95):.1f} ms, spread {bm.spread_ms():.1f} ms")
    assert len(bm.mapped_s) >= 20
    assert bm.can_match and bm.share_matched >= 0.8, label
    assert np.mean(err_ms <= 30) >= 0.95, (label, np.sort(err_ms)[-10:])
    assert np.median(err_ms) <= 10, label
    return bm


def test_mapped_song_beats_fall_on_the_class_onsets(song):
    y = mono(song)
    rec, truth = sg.place(y, 4.0, 2.0, 30.0, 1.0, 38.0, SR)
    grid = grid_for(recording(rec), y)
    bm = check_on_the_onsets(grid, [vars(truth)], label="one take")
    # the song's beats are at one metrical level: the song's own, about 0.54 s apart at 112 BPM
    assert np.median(np.diff(bm.mapped_s)) == pytest.approx(60 / 112, rel=0.05)

    # a placement 100 ms off is not drawn as matching: the beats miss, or sit 100 ms from the onsets
    late = beatgrid.match_beats(grid.song.beats_s, grid.class_.onsets_s, [vars(truth)],
                                song_tempo_bpm=grid.song.tempo_bpm, nudge_s=0.1)
    assert not late.can_match or abs(late.mean_error_ms()) >= 60, (late.share_matched, late.mean_error_ms())


def test_beat_grid_per_run_through_and_speed(song):
    y = mono(song)
    rec, truths = sg.two_speeds(y, SR, slow_rate=0.9, slow_len_s=15.0, gap_s=4.0, fast_len_s=15.0)
    grid = grid_for(recording(rec, seed=7), y)
    bm = check_on_the_onsets(grid, [vars(t) for t in truths], label="slow run, then full speed")
    assert set(bm.segment.tolist()) == {0, 1}
    slow = np.median(np.diff(bm.mapped_s[bm.segment == 0]))
    assert slow == pytest.approx(60 / 112 / 0.9, rel=0.05), "the slow run's beats are further apart"


def test_unmatched_when_the_class_has_no_clear_onsets(song):
    y = mono(song)
    talk = sg.speech_like(int(38 * SR), SR, seed=3, level=0.5)  # talk only: no music at all
    grid = grid_for(talk.astype(np.float32), y)
    bm = beatgrid.match_beats(grid.song.beats_s, grid.class_.onsets_s,
                              [{"dance_start_s": 4.0, "dance_end_s": 34.0, "bgm_start_s": 2.0, "rate": 1.0}],
                              song_tempo_bpm=grid.song.tempo_bpm)
    assert not bm.can_match, (bm.share_matched, bm.spread_ms())


def test_onset_peaks_are_interpolated_between_frames():
    fs = 100.0
    t = np.arange(1000) / fs
    env = np.zeros(1000)
    for at in (1.234, 3.456, 7.891):
        env += np.exp(-0.5 * ((t - at) / 0.012) ** 2)
    times, heights = beatgrid.onset_peaks(env, fs)
    assert times == pytest.approx([1.234, 3.456, 7.891], abs=0.002)
    assert len(heights) == 3


# --------------------------------------------------------------------------------------------
# time estimates
# --------------------------------------------------------------------------------------------


def test_phases_of_a_job_and_learned_speeds(tmp_path):
    timings = {"inputs": (0.0, 1.9), "analysis": (1.9, 2.4), "align_modular": (2.4, 8.4), "align_v2": (2.41, 8.6),
               "trim_modular": (8.4, 8.7), "render_modular": (8.7, 13.7), "trim_v2": (8.6, 8.8),
               "render_v2": (8.8, 13.9)}
    ph = estimate.phase_seconds(timings, start_s=1.2)
    assert ph == pytest.approx({"start": 1.2, "inputs": 1.9, "analysis": 0.5, "align": 6.2, "render": 5.3})
    assert estimate.phase_seconds({"inputs": (0, 1.0), "render": (1.0, 4.0)}) == {"inputs": 1.0, "render": 3.0}

    fresh = estimate.Speeds.load(tmp_path)  # nothing learned yet: the defaults
    assert fresh.jobs == 0 and fresh.total_s("process", 3.0) == pytest.approx(
        sum(f + p * 3.0 for f, p in estimate.DEFAULTS.values()))
    slow = {k: 3 * v for k, v in ph.items()}
    for _ in range(12):
        estimate.learn(tmp_path, 3.0, slow)
    learned = estimate.Speeds.load(tmp_path)
    assert learned.jobs == 12
    assert learned.phase_s("align", 3.0) == pytest.approx(slow["align"], rel=0.05)
    assert learned.total_s("process", 3.0) == pytest.approx(sum(slow.values()), rel=0.05)

    est = learned.estimate("process", "align", 3.0, now=1000.0)
    assert est.after_s == pytest.approx(learned.phase_s("render", 3.0), abs=0.01)
    assert est.finish_at == pytest.approx(1000.0 + learned.phase_s("align", 3.0) + est.after_s, abs=0.02)
    assert learned.estimate("render", "align", 3.0) is None  # a correction has no alignment phase
    (tmp_path / estimate.FILE).write_text("{not json")
    assert estimate.Speeds.load(tmp_path).jobs == 0


def test_status_counts_down_a_running_jobs_estimate():
    from beatsync.contract import Status

    now = time.time()
    rec = TaskRecord.model_validate({
        "task_id": "0b0e3f5c-1111-4222-8333-444455556666", "status": "processing", "created": now - 5,
        "updated": now, "started": now - 4, "inputs": {}, "stage": "align_modular",
        "estimate": {"finish_at": now + 12.0, "after_s": 5.0}})
    assert Status.from_record(rec, outputs={}, now=now).eta_s == pytest.approx(12.0)
    assert Status.from_record(rec, outputs={}, now=now + 10).eta_s == pytest.approx(5.0)  # never below what is left


def test_a_corrections_file_name_says_what_it_did():
    def rec(**correction):
        return TaskRecord.model_validate({
            "task_id": "0b0e3f5c-1111-4222-8333-444455556666", "kind": TaskKind.RENDER, "status": "success",
            "created": 0.0, "updated": 0.0,
            "inputs": {"dance": StoredInput(name="class.mp4", size=1, file="in/dance.mp4")},
            "correction": Correction(source_task="0b0e3f5c-1111-4222-8333-444455556667", variant="modular",
                                     **correction)})

    assert correction_suffix(rec(nudge_ms=40)) == "_+40ms"
    assert correction_suffix(rec(nudge_ms=-12.4)) == "_-12ms"
    assert correction_suffix(rec(alternative=1)) == "_alt2"
    assert correction_suffix(rec(alternative=0, nudge_ms=5)) == "_alt1_+5ms"
    assert correction_suffix(rec()) == "_corrected"

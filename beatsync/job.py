"""One task's job process: ``python -m beatsync.job --data-dir D --attempt N TASK_ID``.

Started by a worker (`beatsync.tasks.supervisor.Supervisor`, for either backend) in its own
process group. Reads the task's record (`beatsync.contract.TaskRecord`), runs the pipeline on its
inputs, reports progress into the store, and leaves ``result.json`` (exit 0: a
`beatsync.contract.JobOutcome`) or ``error.json`` (exit 2: a `beatsync.contract.ErrorBody`) in the
task folder for the worker to conclude the task (the protocol: `beatsync.tasks.interfaces`). An
ffmpeg child killed by a signal (``ffmpeg_killed``: the kernel's out-of-memory killer, an operator)
is no fault of the inputs: the job leaves ``crash.json`` and exits `EXIT_RETRY`, and the worker runs
it again like a job process that died, within the attempt limit. If the worker's process dies,
this process kills its whole group (itself and its ffmpeg children) within a second.

The song comes from the data directory's song cache (`beatsync.songcache`): the jobs with the same
song share its analysis, which one of them computes; the record's ``song_analysis`` says, as soon as
the job has the song, whether this job computed it or reused it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from beatsync import estimate, pipeline, songcache
from beatsync.contract import ErrorBody, JobOutcome, Preview, SongAnalysis, TaskKind, TaskRecord
from beatsync.errors import BeatSyncError
from beatsync.tasks import Settings, Store, open_store
from beatsync.tasks.interfaces import (
    CRASH_FILE,
    ERROR_FILE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RETRY,
    RESULT_FILE,
    STORE_UNAVAILABLE,
)
from beatsync.tasks.store import holds

PROGRESS_EVERY_S = 0.3  # store writes are throttled; stage changes are always written


def _die_with_parent() -> None:
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(store: Store, task_id: str, attempt: int) -> JobOutcome:
    """Run the task's job (its ``kind``: ``process``, ``render`` or ``beats``); returns what its
    successful record gets (``outputs`` are paths relative to the task folder)."""
    raw = store.get(task_id)
    if raw is None:
        raise BeatSyncError("not_found", "The task no longer exists.")
    rec = TaskRecord.model_validate(raw)
    folder = store.task_dir(task_id)
    last = {"t": 0.0, "stage": None}
    lock = threading.Lock()  # the pipeline reports from its variants' threads
    dance = rec.inputs.get("dance") or rec.inputs.get("media")
    minutes = (dance.duration_s or 0.0) / 60.0 if dance is not None else 0.0
    speeds = estimate.Speeds.load(store.root)
    phases = estimate.PHASES.get(rec.kind.value, ())
    phase = {"i": -1}

    def write(fields: dict) -> None:
        """Put ``fields`` into the task's record while this attempt holds it (a write lost while the
        store is out of reach is not the job's failure)."""
        def apply(r: dict):
            if not holds(r, attempt):
                return False
            r.update(fields)

        try:
            store.update(task_id, apply)
        except BeatSyncError as e:
            if e.code != STORE_UNAVAILABLE:
                raise

    def enter(stage: str, *, at: float | None = None) -> None:
        """A new phase of the work: the job's estimate of its end, from there."""
        p = estimate.STAGE_PHASE.get(str(stage))
        with lock:
            if p not in phases or phases.index(p) <= phase["i"]:
                return
            phase["i"] = phases.index(p)
        est = speeds.estimate(rec.kind.value, p, minutes, now=at)
        if est is not None:
            write({"estimate": est.model_dump(mode="json")})

    def progress(pct: float, stage: str, message: str) -> None:
        enter(stage)
        with lock:
            now = time.monotonic()
            if stage == last["stage"] and now - last["t"] < PROGRESS_EVERY_S and pct < 100:
                return
            last.update(t=now, stage=stage)
        try:
            held = store.report_progress(task_id, attempt, pct, stage, message)
        except BeatSyncError as e:
            if e.code != STORE_UNAVAILABLE:
                raise
            return  # a report lost while the store is out of reach: the job goes on
        if not held:
            os.killpg(os.getpgid(0), signal.SIGKILL)  # this attempt no longer holds the task

    def preview(p: Preview) -> None:  # each alignment as soon as it is known, for the page's sync preview
        write({"preview": p.model_dump(mode="json")})

    def song(how: SongAnalysis) -> None:  # computed or reused: in the record at once (also if the job fails)
        write({"song_analysis": how.model_dump(mode="json")})

    songs = songcache.folder(store.root)  # shared by the jobs of every worker on this data directory

    paths = {role: folder / i.file for role, i in rec.inputs.items()}
    names = {p.name: rec.inputs[role].name for role, p in paths.items()}
    out = folder / "out" / str(attempt)  # one folder per attempt: a presumed-dead earlier run cannot touch it

    def rel(path) -> str:  # records hold paths relative to the task folder
        return str(Path(path).relative_to(folder))

    enter("start", at=rec.started)
    begun = time.time()
    try:
        if rec.kind == TaskKind.BEATS:
            return JobOutcome(beats=pipeline.file_beats(str(paths["media"]), on_progress=progress))
        if rec.kind == TaskKind.RENDER:
            variant = rec.render.variant
            path = pipeline.output_path(str(out), str(paths["dance"]), variant)
            result = pipeline.render(str(paths["dance"]), str(paths["bgm"]), path, rec.render.alignment,
                                     variant=variant, options=rec.options, on_progress=progress,
                                     on_preview=preview, song_cache=songs, on_song=song)
            learn(store, minutes, result.timings, start_s=begun - (rec.started or begun))
            return JobOutcome.from_result(result, rel=rel)
        result = pipeline.process(str(paths["dance"]), str(paths["bgm"]), str(out), options=rec.options,
                                  on_progress=progress, beatgrid_path=str(out / "beatgrid.json"),
                                  on_preview=preview, song_cache=songs, on_song=song)
    except BeatSyncError as e:  # name the files as the user knows them, not as they are stored
        raise e.renamed(names) from None
    learn(store, minutes, result.timings, start_s=begun - (rec.started or begun))
    return JobOutcome.from_result(result, rel=rel, beatgrid=rel(out / "beatgrid.json"))


def learn(store: Store, minutes: float, timings: dict, *, start_s: float) -> None:
    """Fold a finished job's phase times into the speeds the next estimates use (`beatsync.estimate`);
    never the job's failure."""
    try:
        estimate.learn(store.root, minutes, estimate.phase_seconds(timings, start_s=max(0.0, start_s)))
    except OSError as e:
        print(f"warning: the job's speeds were not kept ({e})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beatsync.job", description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--attempt", type=int, required=True)
    ap.add_argument("task_id")
    args = ap.parse_args(argv)
    _die_with_parent()
    store = open_store(Settings.from_env(data_dir=args.data_dir))  # the backend comes from the environment
    folder = store.task_dir(args.task_id)
    try:
        result = run(store, args.task_id, args.attempt)
    except BeatSyncError as e:
        if e.code == STORE_UNAVAILABLE:  # not the job's fault: exit without a report, so it runs again
            print(f"error: {e.message}", file=sys.stderr)
            return EXIT_RETRY
        if e.code == "ffmpeg_killed":  # a signal from outside, not the inputs' fault: run it again
            crash = {"reason": "ffmpeg_signal", "signal": e.params.get("signal"), "step": e.params.get("step")}
            pipeline.write_json(str(folder / CRASH_FILE), crash)
            print(f"error: {e.message}; the job runs again", file=sys.stderr)
            return EXIT_RETRY
        error = ErrorBody(error=e.message, error_code=e.code, error_params=e.params)
        pipeline.write_json(str(folder / ERROR_FILE), error.model_dump(mode="json"))
        print(f"error: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        traceback.print_exc()
        error = ErrorBody(error=f"Something went wrong inside BeatSync ({type(e).__name__}).", error_code="internal")
        pipeline.write_json(str(folder / ERROR_FILE), error.model_dump(mode="json"))
        return EXIT_ERROR
    pipeline.write_json(str(folder / RESULT_FILE), result.model_dump(mode="json"))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

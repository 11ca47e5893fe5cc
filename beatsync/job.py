"""One task's job process: ``python -m beatsync.job --data-dir D --attempt N TASK_ID``.

Started by a worker (`beatsync.tasks.supervisor.Supervisor`, for either backend) in its own process group. Runs the pipeline on the
task's inputs, reports progress into the store, and leaves ``result.json`` (exit 0) or
``error.json`` (exit 2) in the task folder for the worker to conclude the task. If the worker's
process dies, this process kills its whole group (itself and its ffmpeg children) within a second.
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

from beatsync import pipeline
from beatsync.errors import BeatSyncError
from beatsync.tasks import Settings, Store, open_store
from beatsync.tasks.interfaces import (
    ERROR_FILE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RETRY,
    RESULT_FILE,
    STORE_UNAVAILABLE,
)

PROGRESS_EVERY_S = 0.3  # store writes are throttled; stage changes are always written


def _die_with_parent() -> None:
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(store: Store, task_id: str, attempt: int) -> dict:
    """Run the task's job (its ``kind``: ``process``, ``render`` or ``beats``); returns the fields
    its successful record gets (``outputs`` are paths relative to the task folder)."""
    rec = store.get(task_id)
    if rec is None:
        raise BeatSyncError("not_found", "The task no longer exists.")
    folder = store.task_dir(task_id)
    last = {"t": 0.0, "stage": None}
    lock = threading.Lock()  # the pipeline reports from its variants' threads

    def progress(pct: float, stage: str, message: str) -> None:
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

    paths = {role: folder / m["file"] for role, m in rec["inputs"].items()}
    names = {p.name: rec["inputs"][role]["name"] for role, p in paths.items()}
    out = folder / "out" / str(attempt)  # one folder per attempt: a presumed-dead earlier run cannot touch it

    def rel(path) -> str:  # records hold paths relative to the task folder
        return str(Path(path).relative_to(folder))

    kind = rec.get("kind", "process")
    try:
        if kind == "beats":
            pipeline.write_json(str(out / "beats.json"), pipeline.file_beats(str(paths["media"]), on_progress=progress))
            return {"outputs": {}, "beatgrid": rel(out / "beats.json"), "message": "Done", "stage": "done"}
        if kind == "render":
            variant = rec["render"]["variant"]
            path = Path(pipeline.output_path(str(out), str(paths["dance"]), variant))
            result = pipeline.render(str(paths["dance"]), str(paths["bgm"]), str(path), rec["render"]["alignment"],
                                     options=rec["options"], on_progress=progress)
            return {"outputs": {variant: rel(path)}, "message": "Done", "stage": "done",
                    "variants": {variant: {"alignment": result["alignment"], "render": result["render"],
                                           "trim": result["trim"]}},
                    **{k: result[k] for k in ("trim", "warnings", "notices", "seconds")}}
        result = pipeline.process(str(paths["dance"]), str(paths["bgm"]), str(out), options=rec["options"],
                                  on_progress=progress, beatgrid_path=str(out / "beatgrid.json"))
    except BeatSyncError as e:  # name the files as the user knows them, not as they are stored
        raise e.renamed(names) from None
    outputs = {}
    for variant in ("modular", "v2"):
        path = result.pop(f"{variant}_output", None)
        if path:
            outputs[variant] = rel(path)
    for v in result.get("variants", {}).values():
        v.pop("output", None)  # server paths stay on the server; `outputs` names the files
    keep = ("variants", "trim", "agreement", "warnings", "notices", "seconds", "timings")
    return {"outputs": outputs, "beatgrid": rel(out / "beatgrid.json"), "message": result.get("message", "Done"),
            "stage": "done", **{k: result[k] for k in keep if k in result}}


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
        pipeline.write_json(str(folder / ERROR_FILE), e.to_dict())
        print(f"error: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        traceback.print_exc()
        pipeline.write_json(str(folder / ERROR_FILE), {"error": f"Something went wrong inside BeatSync ({type(e).__name__}).",
                                          "error_code": "internal"})
        return EXIT_ERROR
    pipeline.write_json(str(folder / RESULT_FILE), result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

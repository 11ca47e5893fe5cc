"""A stand-in job process for executor tests: follows `beatsync.job`'s protocol without audio.

``python tests/fake_job.py --data-dir DATA_DIR --attempt N TASK_ID`` (the job protocol's arguments;
the store's backend comes from the environment, as for the real job); what it does comes from the task record's
``behaviour``: ``{"steps": n, "step_s": s, "outcome": "ok" | "error" | "crash" | "crash_first" |
"ffmpeg_killed" | "ffmpeg_killed_first", "child": bool}`` (``ffmpeg_killed``: what `beatsync.job`
does when its ffmpeg was killed by a signal: ``crash.json`` and `EXIT_RETRY`). With ``child`` it starts a ``sleep`` child (like ffmpeg) and writes its pid to
``child.pid`` in the task folder. Every run appends its attempt to ``runs.txt``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beatsync.tasks import Settings, open_store  # noqa: E402


def main() -> int:
    assert sys.argv[1] == "--data-dir" and sys.argv[3] == "--attempt", sys.argv
    data_dir, attempt, task_id = sys.argv[2], int(sys.argv[4]), sys.argv[5]
    store = open_store(Settings.from_env(data_dir=data_dir))
    rec = store.get(task_id)
    b = rec.get("behaviour", {})
    folder = store.task_dir(task_id)
    with open(folder / "runs.txt", "a") as f:
        f.write(f"{attempt} {os.getpid()}\n")
    if b.get("child"):
        child = subprocess.Popen(["sleep", "300"])
        (folder / "child.pid").write_text(str(child.pid))
    outcome = b.get("outcome", "ok")
    if outcome == "crash" or (outcome == "crash_first" and attempt == 1):
        os.kill(os.getpid(), signal.SIGKILL)
    if outcome == "ffmpeg_killed" or (outcome == "ffmpeg_killed_first" and attempt == 1):
        (folder / "crash.json").write_text(json.dumps({"reason": "ffmpeg_signal", "signal": 9, "step": "render"}))
        return 3  # EXIT_RETRY
    n = int(b.get("steps", 3))
    for i in range(n):
        time.sleep(float(b.get("step_s", 0.05)))
        store.report_progress(task_id, attempt, 100 * (i + 1) / (n + 1), "work", f"step {i + 1}")
    if outcome == "error":
        (folder / "error.json").write_text(json.dumps({"error": "It went wrong.", "error_code": "song_not_found"}))
        return 2
    (folder / "out" / str(attempt) / "result.mp4").write_bytes(b"x" * 10)  # the attempt's output folder
    (folder / "result.json").write_text(json.dumps({"outputs": {"modular": f"out/{attempt}/result.mp4"},
                                                    "message": "Done"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

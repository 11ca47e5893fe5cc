"""Command line: ``python -m beatsync align|process``.

The last line printed on stdout is always one JSON object (our benchmarks read it); on failure it
is ``{"error": "..."}``, one clear line goes to stderr and the exit code is non-zero. ``process``
prints the pipeline's `beatsync.contract.ProcessResult` (the final status object); its arguments'
defaults and choices are `beatsync.contract.Options`' and its values are validated by it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from beatsync.contract import DEFAULT_ENGINE, ENGINES, FILLS, MARGIN_MAX_S, Options
from beatsync.errors import BeatSyncError

_DEFAULTS = Options()

EPILOG = """\
examples:
  python -m beatsync align class.mp4 song.mp3
      where does song.mp3 start in class.mp4? (prints offset_s, tempo_ratio, confidence, ...)
  python -m beatsync process class.mp4 song.mp3 --out results/
      writes results/class_modular.mp4 and results/class_v2.mp4: the class video with the
      clean song as its sound, in sync, without the silent head and tail.

offset_s is the time in the class video at which the start of the song lines up (negative
when the recording started after the song began); tempo_ratio 0.9 means the class played
the song at 90 % speed. Accepted class videos: mp4 mov m4v mkv webm avi; songs: mp3 m4a aac
wav flac ogg opus, or any of the video formats (its sound is then the song).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m beatsync",
        description="Put the clean song under a dance-class video, in sync to a few milliseconds.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("align", help="find where the song lines up with the class video (prints JSON)",
                       description="Find where the clean song lines up with the class video's sound.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("dance", metavar="DANCE", help="the class video (its sound is the song played in the room)")
    a.add_argument("bgm", metavar="BGM", help="the clean song (audio file, or a video whose sound is the song)")
    a.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"{ENGINES[0]}: feature fusion + sample-precise refinement (default); {ENGINES[1]}: "
                        "beat-grid, faster")
    a.add_argument("--diagnostics", action="store_true", help="include the engine's internal evidence")

    pr = sub.add_parser("process", help="write the synced videos (both variants) into a folder",
                        description=f"Write {' and '.join(f'<name>_{e}.mp4' for e in ENGINES)}: the class video "
                                    "with the clean song as its sound, in sync, trimmed of the parts without music.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("dance", metavar="DANCE", help="the class video")
    pr.add_argument("bgm", metavar="BGM", help="the clean song (audio file or video)")
    pr.add_argument("--out", required=True, metavar="DIR", help="folder for the results (created if missing)")
    pr.add_argument("--no-trim", action="store_true", help="keep the full length instead of cutting the silent head/tail")
    pr.add_argument("--margin", type=float, default=_DEFAULTS.margin_s, metavar="S",
                    help=f"seconds kept before the music starts and after it ends, 0 to "
                         f"{MARGIN_MAX_S:g} (default {_DEFAULTS.margin_s})")
    pr.add_argument("--fill", choices=FILLS, default=_DEFAULTS.fill,
                    help=f"what plays where the song does not: {FILLS[0]} (default) or the {FILLS[1]} recording")
    pr.add_argument("--engines", default=",".join(_DEFAULTS.engines), metavar="LIST",
                    help=f"which variants to write, comma-separated (default {','.join(_DEFAULTS.engines)})")
    pr.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    w = sub.add_parser("worker", help="run job workers on the task store (separately from the web server)",
                       description="Work the web app's task queue in this process: the web server can then run "
                                   "with BEATSYNC_WORKERS=0 and any number of worker processes share its store. "
                                   "Stops on Ctrl-C or SIGTERM; a job running then goes back to the queue. With "
                                   "BEATSYNC_BACKEND=celery this starts a Celery worker (the same as "
                                   "`celery -A beatsync.tasks.celery_app worker`).")
    w.add_argument("--threads", type=int, default=None, metavar="N",
                   help="jobs run at once (default: BEATSYNC_WORKERS, at least 1)")
    w.add_argument("--data-dir", default=None, metavar="DIR", help="the task store (default: BEATSYNC_DATA_DIR)")
    return p


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_align(args) -> dict:
    from beatsync import pipeline

    t0 = time.perf_counter()
    inp = pipeline.load_inputs(args.dance, args.bgm, pipeline.Progress(None))
    al = pipeline.align_inputs(inp, engine=args.engine)
    out = al.to_dict(diagnostics=args.diagnostics)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def cmd_process(args) -> dict:
    from beatsync import pipeline

    def progress(pct, stage, message):
        if not args.quiet:
            print(f"[{pct:5.1f}%] {message}", file=sys.stderr, flush=True)

    opts = Options.parse({"trim": not args.no_trim, "margin_s": args.margin, "fill": args.fill,
                          "engines": args.engines})
    # the final status object (a command-line run is not a queued task, so its task_id is null)
    return pipeline.process(args.dance, args.bgm, args.out, options=opts, on_progress=progress).model_dump(mode="json")


def cmd_worker(args) -> dict:
    import signal
    import threading

    from beatsync.service import BeatSync
    from beatsync.tasks import Settings

    settings = Settings.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    threads = args.threads if args.threads is not None else max(1, settings.workers)
    if threads < 1:
        raise BeatSyncError("bad_option", "--threads must be at least 1.")
    if settings.backend == "celery":
        if args.data_dir:  # the Celery app reads its settings from the environment
            os.environ["BEATSYNC_DATA_DIR"] = str(settings.data_dir)
        from beatsync.tasks.celery_app import app

        app.worker_main(["worker", "--loglevel", "INFO", "--concurrency", str(threads)])
        return {"worker": "celery", "threads": threads, "data_dir": str(settings.data_dir), "stopped": True}
    svc = BeatSync(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ex = svc.start_workers(threads)
    print(f"worker {ex.id}: {threads} thread(s) on {settings.data_dir}", file=sys.stderr, flush=True)
    stop.wait()
    svc.stop_workers()
    return {"worker": ex.id, "threads": threads, "data_dir": str(settings.data_dir), "stopped": True}


COMMANDS = {"align": cmd_align, "process": cmd_process, "worker": cmd_worker}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = COMMANDS[args.command](args)
    except BeatSyncError as e:
        print(f"error: {e.message}", file=sys.stderr)
        _emit({"error": e.message, "error_code": e.code})
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        _emit({"error": "interrupted"})
        return 130
    except Exception as e:  # a bug: still one clear line, and the JSON contract
        print(f"error: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        _emit({"error": f"internal error: {type(e).__name__}: {e}", "error_code": "internal"})
        return 3
    _emit(out)
    return 0

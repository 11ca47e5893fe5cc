"""Running the ffmpeg binary of the ``imageio-ffmpeg`` wheel, killably.

Every ffmpeg child stays in its parent's process group, so that a job process's group (the task
system starts each job in a session of its own) holds its ffmpeg too: a time limit, a cancellation
or the job's own parent-death watchdog kills the group, ffmpeg included, and no ffmpeg outlives
its job to write into a retried attempt's folder. Within the process, each call kills its own
ffmpeg when it times out or when its caller stops with an exception (a closed generator included).
Commands are argument lists, never shell strings.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence

import imageio_ffmpeg

from beatsync.errors import MediaError

__all__ = ["ffmpeg_exe", "run_ffmpeg", "ffmpeg_pipe", "has_soxr"]


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel (cached).

    Never a system ffmpeg from ``PATH``: its version and build options are unknown.
    """
    return imageio_ffmpeg.get_ffmpeg_exe()


def _command(args: Sequence[str]) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *map(str, args)]


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        proc.kill()  # SIGKILL; ffmpeg starts no children of its own


_CONTEXT_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
#: ffmpeg's summary lines that follow the real cause; skipped when choosing the reason to show.
_GENERIC = (
    "Conversion failed",
    "Nothing was written into output file",
    "Task finished with error code",
    "Terminating thread with return code",
    "Error opening input file",
    "Error opening input files",
    "Error opening output file",
    "Error opening output files",
    "Could not write header",
    "Error while filtering",
    "Error writing trailer",
    "Error closing file",
    "Error sending frames to consumers",
    "Error submitting",
)


def _reason(stderr: str, args: Sequence[str]) -> str:
    """The telling line of ffmpeg's stderr, one line, without ``[ctx @ 0x..]`` prefixes or folders.

    ffmpeg 7+ cascades one failure into several lines (the cause, then "Could not write header",
    "Task finished with error code", "Nothing was written...", ...): this is the first line that
    is not one of those generic follow-ups (`_GENERIC`), or the last line if all are.
    """
    lines = [_CONTEXT_PREFIX.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "unknown error"
    specific = [ln for ln in lines if not ln.startswith(_GENERIC)]
    line = specific[0] if specific else lines[-1]
    for arg in map(str, args):
        if os.sep in arg and arg in line:
            line = line.replace(arg, os.path.basename(arg))
    return line


def _failure(what: str, proc: subprocess.Popen, stderr: str, args: Sequence[str], step: str | None = None
             ) -> MediaError:
    """The error of an ffmpeg that ended with ``proc.returncode`` != 0: ``"ffmpeg_killed"`` when a signal
    ended it (from outside: the kernel's out-of-memory killer, an operator; not ffmpeg's own error:
    a job runs it again, `beatsync.job`), else ``"ffmpeg_failed"`` with its telling stderr line."""
    if proc.returncode < 0:
        sig = -proc.returncode
        with contextlib.suppress(ValueError):
            sig = signal.Signals(sig).value
        params = {"what": what, "signal": sig, **({"step": step} if step else {})}
        return MediaError("ffmpeg_killed", f"{what} was killed by signal {sig}", **params)
    reason = _reason(stderr, args)
    return MediaError("ffmpeg_failed", f"{what} failed: {reason}", what=what, reason=reason,
                      exit_code=proc.returncode)


def run_ffmpeg(
    args: Sequence[str], *, what: str, timeout: float | None = None, step: str | None = None
) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (after ``-hide_banner -nostdin -v error``) and wait for it.

    Parameters
    ----------
    args : sequence of str
        ffmpeg arguments (inputs, filters, outputs), as a list: never a shell string.
    what : str
        What the command does, for messages, e.g. ``"Rendering class.mp4"``.
    timeout : float, optional
        Seconds after which the process group is killed.
    step : str, optional
        What part of a job this is (``"decode"``, ``"render"``), in a ``"ffmpeg_killed"`` error's params.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as bytes.

    Raises
    ------
    MediaError
        ``"ffmpeg_failed"`` (exit code > 0; message ends with ffmpeg's telling error line; params
        ``reason``, ``exit_code``), ``"ffmpeg_timeout"`` or ``"ffmpeg_killed"`` (a signal from
        outside ended it; params ``signal``, ``step``).
    """
    cmd = _command(args)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill(proc)
        proc.communicate()
        raise
    if timed_out:
        raise MediaError(
            "ffmpeg_timeout", f"{what} took longer than {timeout:g} s and was stopped", what=what
        )
    if proc.returncode != 0:
        raise _failure(what, proc, err.decode("utf-8", "replace"), args, step)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def ffmpeg_pipe(args: Sequence[str], *, what: str, stdin: bool = False, step: str | None = None
                ) -> Iterator[subprocess.Popen]:
    """Run ffmpeg with its stdout on a pipe, for streaming its output (decoded audio, progress).

    Read ``proc.stdout`` to the end inside the ``with`` block. stderr goes to a temporary file (no
    pipe that could fill up and deadlock). Leaving the block with an exception kills ffmpeg.

    Parameters
    ----------
    args : sequence of str
        ffmpeg arguments; the output must be ``pipe:1`` (or stdout must carry ``-progress pipe:1``).
    what : str
        What the command does, for messages.
    stdin : bool
        Give ffmpeg a pipe as its stdin (an input ``pipe:0``): write to ``proc.stdin`` from another
        thread while this one reads ``proc.stdout``, and close it at the end of the input. Whoever
        writes must expect `BrokenPipeError` when ffmpeg stops reading (it failed, was killed, or
        had all it needed); it is closed, if still open, when the block is left.
    step : str, optional
        As for `run_ffmpeg`.

    Yields
    ------
    subprocess.Popen
        The running process (``stdout`` is a binary pipe).

    Raises
    ------
    MediaError
        ``"ffmpeg_failed"`` if ffmpeg exits with an error (exit code > 0), ``"ffmpeg_killed"`` if a
        signal from outside ended it.
    """
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            _command(args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errfile,
        )
        try:
            yield proc
        except BaseException:
            _kill(proc)
            raise
        finally:
            if proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):  # BrokenPipeError: ffmpeg is gone
                    proc.stdin.close()
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0:
            errfile.seek(0)
            raise _failure(what, proc, errfile.read().decode("utf-8", "replace"), args, step)


@functools.cache
def has_soxr() -> bool:
    """Whether this ffmpeg build can resample with libsoxr (tried once on a silent source, cached)."""
    args = ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "0.01"]
    args += ["-af", "aresample=22050:resampler=soxr", "-f", "null", "-"]
    try:
        run_ffmpeg(args, what="Checking for the soxr resampler", timeout=30)
    except MediaError:
        return False
    return True

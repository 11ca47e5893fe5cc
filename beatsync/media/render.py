"""Rendering the result: the class video's picture, cut, with the clean song as its sound (.mp4).

The picture is stream-copied whenever the codec can go into an mp4 (`OUTPUT_COPY_CODECS`); the
cut then starts on a keyframe, which `plan_cut` chooses. Otherwise it is re-encoded with x264.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from beatsync.errors import MediaError, ParameterError
from beatsync.media.ffmpeg import _kill, ffmpeg_pipe
from beatsync.media.probe import MediaInfo, frame_times, keyframe_times, require_video

__all__ = ["OUTPUT_COPY_CODECS", "CutPlan", "plan_cut", "mux"]

#: Picture codecs that go into .mp4 by stream copy (no re-encoding).
OUTPUT_COPY_CODECS = {"h264", "hevc", "av1", "vp9", "mpeg4"}

_MIN_BITRATE = 192_000
_SNAP_TOLERANCE_S = 1e-4  # a wanted start this close after a frame time counts as on it
_WRITE_CHUNK = 1 << 16  # samples per channel written to ffmpeg at a time


@dataclass
class CutPlan:
    """Which part of the class video to render, and how.

    Attributes
    ----------
    start_s : float
        Dance time in seconds of the first frame actually kept: with stream copy, the keyframe at
        or before the wanted start; with re-encoding, the frame at or before it.
    end_s : float
        Dance time in seconds where the output ends.
    copy_video : bool
        Stream-copy the picture (True) or re-encode it with x264.
    reason : str
        Why the picture is re-encoded ("" when copied).
    """

    start_s: float
    end_s: float
    copy_video: bool
    reason: str = ""

    @property
    def duration_s(self) -> float:
        """Length of the output in seconds."""
        return self.end_s - self.start_s


def _at_or_before(times: np.ndarray, t: float) -> float:
    """The largest of ``times`` that is <= ``t`` (within `_SNAP_TOLERANCE_S`), else the first."""
    if times.size == 0:
        return max(0.0, t)
    i = int(np.searchsorted(times, t + _SNAP_TOLERANCE_S, side="right")) - 1
    return float(times[max(i, 0)])


def plan_cut(
    info: MediaInfo, *, start_s: float, end_s: float, keyframes: np.ndarray | None = None
) -> CutPlan:
    """Decide how to cut ``[start_s, end_s]`` (dance time, seconds) out of the class video.

    Parameters
    ----------
    info : MediaInfo
        `probe` of the class video.
    start_s, end_s : float
        Wanted start and end in seconds of dance time (0 = first frame). Clamped to the picture.
    keyframes : numpy.ndarray, optional
        `keyframe_times` of the video (file timeline), if already known; demuxed otherwise.

    Returns
    -------
    CutPlan
        ``start_s`` is snapped back to a keyframe (stream copy) or to a frame (re-encoding), so
        that it is exactly the time of the first frame of the output.
    """
    video = require_video(info)
    if not end_s > start_s:
        raise ParameterError(f"end_s ({end_s}) must be after start_s ({start_s})")
    total = info.video_duration_s
    start_s = max(0.0, float(start_s))
    end_s = min(float(end_s), total) if total > 0 else float(end_s)
    copy = video.codec in OUTPUT_COPY_CODECS
    if copy:
        kf = keyframes if keyframes is not None else keyframe_times(info.path, video_index=video.index)
        start = _at_or_before(np.asarray(kf, dtype=np.float64) - video.start_s, start_s)
        reason = ""
    else:
        start = _at_or_before(frame_times(info.path, video_index=video.index) - video.start_s, start_s)
        reason = (
            f"the picture codec {video.codec!r} cannot be copied into an mp4, so it is re-encoded (H.264)"
        )
    if not end_s > start:
        raise ParameterError(f"nothing to render: end_s ({end_s}) is not after the start ({start})")
    return CutPlan(start_s=start, end_s=end_s, copy_video=copy, reason=reason)


# --------------------------------------------------------------------------------------------
# mux
# --------------------------------------------------------------------------------------------


def _bitrate_bps(bitrate: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(bitrate))
    if not m:
        raise ParameterError(f"bitrate must look like '192k', got {bitrate!r}")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def _check_channels(channels: int, shape) -> None:
    if not 1 <= channels <= 8:
        raise ParameterError(f"audio must be (n,) or (channels, n) with 1..8 channels, got shape {shape}")


def _blocks_of(audio: np.ndarray) -> tuple[int, Iterable[np.ndarray]]:
    """``(channels, blocks)`` of an array ``(n,)`` or ``(channels, n)`` (views, no copy)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ParameterError(f"audio must be (n,) or (channels, n) with 1..8 channels, got shape {a.shape}")
    _check_channels(a.shape[0], a.shape)
    return a.shape[0], (a[:, i : i + _WRITE_CHUNK] for i in range(0, a.shape[1], _WRITE_CHUNK))


class _Feeder(threading.Thread):
    """Writes the sound, block by block, to ffmpeg's stdin as interleaved little-endian float32:
    exactly ``n`` frames (cut, or padded with silence), then closes it.

    The blocks are made as they are written (a generator's work runs in this thread). If making
    them fails, ffmpeg is killed (so that it does not finish a file with the sound cut short) and
    the exception is kept in ``error``. If ffmpeg stops reading (it failed, was killed, or had
    enough), writing stops quietly: ffmpeg's exit status tells what happened.
    """

    def __init__(self, proc, blocks: Iterable[np.ndarray], *, n: int, channels: int):
        super().__init__(name="beatsync-mux-feeder", daemon=True)
        self.proc, self.blocks, self.n, self.channels = proc, blocks, n, channels
        self.error: BaseException | None = None

    def _write(self, frames: np.ndarray) -> None:
        self.proc.stdin.write(memoryview(np.ascontiguousarray(frames, dtype="<f4")).cast("B"))

    def run(self) -> None:
        left = self.n
        it = iter(self.blocks)
        try:
            try:
                for block in it:
                    block = np.atleast_2d(np.asarray(block))
                    if block.shape[0] != self.channels:
                        raise ParameterError(
                            f"every block must have {self.channels} channels, got shape {block.shape}"
                        )
                    for i in range(0, min(left, block.shape[1]), _WRITE_CHUNK):
                        chunk = block[:, i : min(i + _WRITE_CHUNK, left)]
                        self._write(chunk.T)
                    left -= min(left, block.shape[1])
                    if left == 0:
                        break
                while left > 0:
                    k = min(left, _WRITE_CHUNK)
                    self._write(np.zeros((k, self.channels), np.float32))
                    left -= k
                self.proc.stdin.close()
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # a generator's own clean-up (e.g. a decoder it reads from)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg stopped reading; its exit status tells why
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits for ffmpeg
            self.error = exc
            _kill(self.proc)


def _seek_arg(t: float) -> str:
    """File time as an ffmpeg time string, rounded *up* to the microsecond.

    ffmpeg seeks to the last keyframe at or before this time, and shifts timestamps by it
    (rounded to the stream's time base), so the wanted frame gets pts 0.
    """
    return f"{math.ceil(round(t * 1e6, 3)) / 1e6:.6f}"


def _video_args(info: MediaInfo, plan: CutPlan) -> list[str]:
    video = info.video
    if plan.copy_video:
        args = ["-c:v", "copy"]
        if video.codec == "hevc":
            args += ["-tag:v", "hvc1"]
        return args
    return [
        "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2,scale=out_range=tv,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-fps_mode", "passthrough", "-enc_time_base", "demux",
    ]  # fmt: skip


def _mux_args(
    *,
    video_path: str,
    info: MediaInfo,
    plan: CutPlan,
    sr: int,
    channels: int,
    bitrate: str,
    out: str,
) -> list[str]:
    video = info.video
    ss = _seek_arg(video.start_s + plan.start_s)
    args = [] if plan.copy_video else ["-noautorotate"]  # keep the display matrix, don't rotate pixels
    args += ["-ss", ss, "-seek_timestamp", "1", "-i", video_path]
    args += ["-f", "f32le", "-ar", str(sr), "-ac", str(channels), "-i", "pipe:0"]
    args += ["-map", f"0:{video.index}", "-map", "1:a:0", "-map_chapters", "-1"]
    args += _video_args(info, plan)
    args += ["-c:a", "aac", "-b:a", bitrate]
    args += ["-t", f"{plan.duration_s:.6f}", "-movflags", "+faststart"]
    args += ["-progress", "pipe:1", "-stats_period", "0.25", "-nostats", "-f", "mp4", "-y", out]
    return args


def _follow_progress(stdout, *, duration_s: float, on_progress: Callable[[float], None] | None) -> None:
    """Read ffmpeg's ``-progress`` key=value lines to the end, reporting fractions 0..1 (non-decreasing)."""
    best = 0.0
    for raw in stdout:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if on_progress is None or key != "out_time_us" or not value.lstrip("-").isdigit():
            continue
        frac = min(1.0, max(0.0, int(value) / 1e6 / duration_s)) if duration_s > 0 else 0.0
        if frac > best:
            best = frac
            on_progress(frac)


#: ffmpeg's telling lines that say the class video itself could not be read or decoded (not the writing)
_INPUT_TROUBLE = re.compile(
    r"decod|invalid data found|corrupt|moov atom|error reading|end of file|truncat|invalid nal|"
    r"no frame|could not find codec|error while seeking|partial file", re.I)


def _render_failure(exc: MediaError, *, video_path: str, partial: str) -> MediaError:
    """A render's ffmpeg that failed with an error of its own (exit code > 0): ``"decode_failed"``
    when its telling line is about reading the class video, else ``"encode_failed"``; both name the
    class video (``name``; the job renames its stored name to the user's) and keep ffmpeg's line
    (``reason``), the output's temporary name replaced by what it is."""
    name = os.path.basename(video_path)
    reason = str(exc.params.get("reason") or "unknown error").replace(os.path.basename(partial), "the result video")
    if _INPUT_TROUBLE.search(reason):
        return MediaError("decode_failed", f"The picture of {name} cannot be decoded, so the result video could "
                          f"not be written: {reason}", name=name, reason=reason, step="render")
    return MediaError("encode_failed", f"The result video could not be written from {name}: {reason}",
                      name=name, reason=reason)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def mux(
    *,
    video_path,
    info: MediaInfo,
    plan: CutPlan,
    audio: np.ndarray | Iterable[np.ndarray],
    sr: int,
    out_path,
    bitrate: str = "192k",
    on_progress: Callable[[float], None] | None = None,
    channels: int | None = None,
) -> dict:
    """Write an .mp4 with the class video's picture over ``plan`` and ``audio`` as its sound.

    The picture of ``[plan.start_s, plan.end_s]`` is stream-copied (input seek exactly to the
    keyframe, whose pts becomes 0) or re-encoded with x264 (veryfast, CRF 20, yuv420p). The
    display rotation, frame rate and (when copying) variable-frame-rate timestamps are kept. Only
    the picture stream and the new AAC sound go into the output. ffmpeg's mp4 muxer writes an edit
    list for the AAC priming (1024 samples), so ``audio[0]`` plays with the first frame. When
    copying, ffmpeg ends the picture in decode order, so with B-frames up to two frames past
    ``plan.end_s`` may be kept (the sound still ends at ``plan.end_s``).

    The sound goes to ffmpeg through a pipe (its stdin), written by a thread of its own while
    this one follows ffmpeg's progress: an iterable of blocks is made as ffmpeg takes it, so a
    long sound track never needs to exist in memory at once.

    The file is written as ``.<stem>.partial.mp4`` next to ``out_path`` and renamed on success;
    on failure nothing is left behind.

    Parameters
    ----------
    video_path : str or os.PathLike
        The class video (the file ``info`` describes).
    info : MediaInfo
        `probe` of ``video_path``.
    plan : CutPlan
        From `plan_cut`.
    audio : numpy.ndarray or iterable of numpy.ndarray
        float32 ``(channels, n)`` or ``(n,)``: the song at its own rate ``sr``; sample 0 plays at
        ``plan.start_s``. Or an iterable of such ``(channels, k)`` blocks, one after the other
        (e.g. `beatsync.render_audio.track_blocks`), with ``channels`` given. Cut or zero-padded
        to ``plan.duration_s``. If the iterable raises, ffmpeg is stopped, nothing is left behind
        and its exception is raised here.
    sr : int
        Sample rate of ``audio`` in Hz.
    out_path : str or os.PathLike
        The .mp4 to write (replaced if it exists).
    bitrate : str
        AAC bit rate, at least ``"192k"``.
    on_progress : callable, optional
        Called with the fraction done (0..1, non-decreasing) while ffmpeg runs, from the calling
        thread.
    channels : int, optional
        Channel count of the blocks when ``audio`` is an iterable (required then; 1..8).

    Returns
    -------
    dict
        ``{"video": "copy" | "x264", "reason", "start_s", "end_s", "duration_s", "audio_codec":
        "aac", "audio_bitrate", "sample_rate", "channels"}``.

    Raises
    ------
    MediaError
        ``"write_failed"`` (output folder missing or not writable), ``"encode_failed"`` (ffmpeg
        failed writing: ``name`` is the class video's, ``reason`` ffmpeg's telling line),
        ``"decode_failed"`` (ffmpeg could not read the class video), ``"ffmpeg_killed"`` (a signal
        ended ffmpeg: ``signal``, ``step`` "render").
    """
    require_video(info)
    if _bitrate_bps(bitrate) < _MIN_BITRATE:
        raise ParameterError(f"bitrate must be at least 192k, got {bitrate!r}")
    if int(sr) <= 0:
        raise ParameterError(f"sr must be a positive sample rate in Hz, got {sr!r}")
    if not plan.duration_s > 0:
        raise ParameterError("plan.end_s must be after plan.start_s")
    if isinstance(audio, np.ndarray):
        channels, blocks = _blocks_of(audio)
    else:
        if channels is None:
            raise ParameterError("channels is required when audio is an iterable of blocks")
        _check_channels(int(channels), f"(channels={channels}, ...)")
        channels, blocks = int(channels), audio
    n = int(round(plan.duration_s * sr))
    out_path = os.fspath(out_path)
    folder, name = os.path.split(os.path.abspath(out_path))
    stem = os.path.splitext(name)[0]
    partial = os.path.join(folder, f".{stem}.partial.mp4")
    try:
        try:
            with open(partial, "wb"):  # the folder exists and takes files (ffmpeg then writes over it)
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MediaError(
                "write_failed", f"could not write {name}: {reason}", name=name, reason=reason
            ) from exc
        args = _mux_args(
            video_path=os.fspath(video_path), info=info, plan=plan, sr=int(sr),
            channels=channels, bitrate=bitrate, out=partial,
        )  # fmt: skip
        try:
            with ffmpeg_pipe(args, what=f"Rendering {name}", stdin=True, step="render") as proc:
                feeder = _Feeder(proc, blocks, n=n, channels=channels)
                feeder.start()
                try:
                    _follow_progress(proc.stdout, duration_s=plan.duration_s, on_progress=on_progress)
                except BaseException:
                    _kill(proc)  # so that the feeder's writes fail at once
                    feeder.join()
                    raise
                feeder.join()
                if feeder.error is not None:
                    raise feeder.error
        except MediaError as exc:
            if exc.code != "ffmpeg_failed":
                raise  # (a signal: "ffmpeg_killed", which a job runs again)
            raise _render_failure(exc, video_path=os.fspath(video_path), partial=partial) from exc
        os.replace(partial, out_path)
    except BaseException:
        _remove(partial)
        raise
    if on_progress is not None:
        on_progress(1.0)
    return {
        "video": "copy" if plan.copy_video else "x264",
        "reason": plan.reason,
        "start_s": plan.start_s,
        "end_s": plan.end_s,
        "duration_s": plan.duration_s,
        "audio_codec": "aac",
        "audio_bitrate": bitrate,
        "sample_rate": int(sr),
        "channels": channels,
    }

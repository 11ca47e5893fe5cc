"""Looking at the picture: black frames at the start and the end of a class video."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import av
import numpy as np

from beatsync.errors import MediaError, ParameterError
from beatsync.media.probe import MediaInfo, _open, require_video

__all__ = ["black_frames"]

_STEP = 8  # look at every 8th pixel of every 8th row of the luma plane


def _luma(frame) -> np.ndarray:
    """Subsampled luma of ``frame`` as float32 in 0..1 (full range), without a full-size copy."""
    fmt = frame.format
    if fmt.name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")) and fmt.components[0].bits <= 8:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        y = rows[: frame.height : _STEP, : frame.width : _STEP].astype(np.float32)
        full = fmt.name.startswith("yuvj") or frame.color_range == 2  # 2 = JPEG (full) range
        if fmt.name.startswith("gray") or full:
            return y / 255.0
        return (y - 16.0) / 219.0
    small = frame.reformat(
        width=max(2, frame.width // _STEP), height=max(2, frame.height // _STEP), format="gray"
    )
    return small.to_ndarray().astype(np.float32) / 255.0


def _is_black(frame, threshold: float) -> bool:
    y = _luma(frame)
    return bool(y.mean() < threshold and y.std() < threshold)


def _frames(
    container, stream, *, v0: float, from_s: float | None, fps: float
) -> Iterator[tuple[float, float, object]]:
    """Yield ``(dance time, duration, frame)`` of ``stream``, from the start or from dance time ``from_s``.

    With ``from_s``, seeks to the keyframe at or before it and skips the frames before it.
    """
    if from_s is not None:
        target = int((v0 + from_s) / stream.time_base)
        container.seek(target, stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.time) - v0
        if from_s is not None and t < from_s - 1e-6:
            continue
        dur = float(frame.duration * frame.time_base) if frame.duration else (1.0 / fps if fps else 0.0)
        yield t, dur, frame


def _head_end(frames, *, until_s: float, threshold: float) -> float:
    end = 0.0
    for t, dur, frame in frames:
        if t > until_s or not _is_black(frame, threshold):
            return max(0.0, t)
        end = t + dur
    return end  # black to the end of the video


def _tail_start(frames, *, threshold: float, end_s: float) -> float:
    run_start = None  # dance time of the first frame of the current black run
    for t, dur, frame in frames:
        end_s = t + dur
        if not _is_black(frame, threshold):
            run_start = None
        elif run_start is None:
            run_start = t
    return run_start if run_start is not None else end_s


def black_frames(
    path, *, info: MediaInfo, head_until_s: float, tail_from_s: float, threshold: float = 0.06
) -> tuple[float, float]:
    """Find the black picture at the very start and the very end of a video.

    Decodes only ``[0, head_until_s]`` and ``[tail_from_s, end]`` (the latter from the keyframe
    before it), one frame at a time, looking at a subsampled luma plane.

    A frame is black when its mean luma and the spread (standard deviation) of its luma are both
    below ``threshold`` (on 0..1, black to white; limited-range video is scaled to that first).

    Parameters
    ----------
    path : str or os.PathLike
        The video.
    info : MediaInfo
        `probe` of ``path``.
    head_until_s : float
        Dance time in seconds until which the start is examined.
    tail_from_s : float
        Dance time in seconds from which the end is examined.
    threshold : float
        Darkness threshold, fraction of full scale (0.06 ≈ 15/255).

    Returns
    -------
    (float, float)
        ``(black_head_end_s, black_tail_start_s)`` in seconds of dance time: the time of the first
        non-black frame (0.0 if the first frame is not black; the first frame after
        ``head_until_s`` if the picture is black that long), and the time of the first frame of
        the black run that lasts to the end (else the end of the last frame, i.e. the duration
        of the picture).
    """
    if head_until_s < 0 or tail_from_s < 0:
        raise ParameterError("head_until_s and tail_from_s must be >= 0 seconds")
    video = require_video(info)
    path = os.fspath(path)
    try:
        with _open(path) as container:
            stream = container.streams[video.index]
            stream.thread_type = "AUTO"
            with contextlib.closing(
                _frames(container, stream, v0=video.start_s, from_s=None, fps=video.fps)
            ) as frames:
                head = _head_end(frames, until_s=head_until_s, threshold=threshold)
        with _open(path) as container:
            stream = container.streams[video.index]
            stream.thread_type = "AUTO"
            frames = _frames(container, stream, v0=video.start_s, from_s=tail_from_s, fps=video.fps)
            tail = _tail_start(frames, threshold=threshold, end_s=info.video_duration_s)  # runs to the end
    except av.error.FFmpegError as exc:
        name = os.path.basename(path)
        raise MediaError(
            "decode_failed", f"could not decode the picture of {name}: {exc}", name=name, reason=str(exc)
        ) from exc
    return head, tail

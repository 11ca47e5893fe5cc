"""What is in a media file: streams, timing, rotation, keyframes. Structured data from PyAV only.

Two timelines appear here:

* the *file timeline*: presentation timestamps as stored in the container, in seconds
  (``VideoStreamInfo.start_s``, `keyframe_times`);
* the *dance timeline*: seconds since the first video frame is shown (0 = first picture).
  For an audio-only file, 0 is the first decoded sample.

``MediaInfo.audio_origin_s`` links the decoded sound to the dance timeline: sample ``k`` of
`beatsync.media.decode_audio` is the sound at dance time ``audio_origin_s + k / sr``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from beatsync.errors import MediaError

__all__ = [
    "AudioStreamInfo",
    "VideoStreamInfo",
    "MediaInfo",
    "probe",
    "require_audio",
    "require_video",
    "keyframe_times",
    "frame_times",
]

#: Formats of the ISO base media family (mp4, mov, m4a, m4v, 3gp): the ones whose index can
#: be missing (moov at the end of a cut file) or point past the end of the data.
_ISOBMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"}
#: How many packets `probe` demuxes at most to find the first audio and video frames.
_MAX_PROBE_PACKETS = 4000


@dataclass(frozen=True)
class AudioStreamInfo:
    """The sound track chosen from a file.

    Attributes
    ----------
    index : int
        Stream index in the container (``-map 0:<index>``).
    codec : str
        Codec name (``"aac"``, ``"mp3"``, ``"opus"``, ...).
    sample_rate : int
        Sample rate in Hz.
    channels : int
        Number of channels.
    start_s : float
        File-timeline time in seconds of the first *decoded* sample (after encoder priming,
        pre-skip and edit lists are applied).
    duration_s : float or None
        Stream duration in seconds, if the container says.
    bit_rate : int or None
        Bit rate in bits per second, if known.
    """

    index: int
    codec: str
    sample_rate: int
    channels: int
    start_s: float
    duration_s: float | None
    bit_rate: int | None


@dataclass(frozen=True)
class VideoStreamInfo:
    """The picture track chosen from a file (cover art of songs is never chosen).

    Attributes
    ----------
    index : int
        Stream index in the container.
    codec : str
        Codec name (``"h264"``, ``"hevc"``, ``"vp9"``, ``"mjpeg"``, ...).
    width, height : int
        Coded size in pixels (before rotation).
    fps : float
        Average frame rate in frames per second.
    rotation : int
        Display rotation in degrees *counter-clockwise*, one of 0, 90, 180, 270, from the display
        matrix (same convention as ffmpeg's ``-display_rotation`` and PyAV's
        ``VideoFrame.rotation``). A phone held upright usually records 270 (= 90° clockwise).
    start_s : float
        File-timeline time in seconds of the first frame shown (dance time 0).
    duration_s : float or None
        Stream duration in seconds, if the container says.
    frame_count : int or None
        Number of frames, if the container says.
    vfr : bool
        Variable frame rate: ``r_frame_rate`` differs from ``avg_frame_rate`` by more than 1 %, or
        the frame timestamps of the container index are irregular.
    pix_fmt : str or None
        Pixel format of the decoded picture (``"yuv420p"``, ...).
    """

    index: int
    codec: str
    width: int
    height: int
    fps: float
    rotation: int
    start_s: float
    duration_s: float | None
    frame_count: int | None
    vfr: bool
    pix_fmt: str | None

    @property
    def display_width(self) -> int:
        """Width in pixels as shown (after rotation)."""
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        """Height in pixels as shown (after rotation)."""
        return self.width if self.rotation in (90, 270) else self.height


@dataclass(frozen=True)
class MediaInfo:
    """A probed media file.

    Attributes
    ----------
    path : str
        The file's path.
    format_name : str
        Container format as ffmpeg names it (``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``).
    duration_s : float
        Duration of the file in seconds (0.0 if unknown).
    size_bytes : int
        File size in bytes.
    audio, video : AudioStreamInfo or VideoStreamInfo or None
        The chosen sound and picture tracks.
    """

    path: str
    format_name: str
    duration_s: float
    size_bytes: int
    audio: AudioStreamInfo | None
    video: VideoStreamInfo | None

    @property
    def name(self) -> str:
        """Base name of the file, for messages."""
        return os.path.basename(self.path)

    @property
    def audio_origin_s(self) -> float:
        """Dance time in seconds of decoded audio sample 0.

        ``audio.start_s - video.start_s`` when there is a picture (both measured by decoding the
        first frame of each stream, exactly as ffmpeg's decoder delivers them), else 0.0. Negative
        when the sound starts before the first picture.

        This is where the decoder really starts, not the container's nominal start: e.g. when an
        mp4's AAC sound starts 0.3 s after the picture, the 1024 samples of encoder priming are
        decoded too and the origin is ``0.3 - 1024 / sr``. For a song file that has a picture
        (a music video), ignore it: sample 0 is song time 0.
        """
        if self.audio is None or self.video is None:
            return 0.0
        return self.audio.start_s - self.video.start_s

    @property
    def video_duration_s(self) -> float:
        """Length of the picture in seconds (dance timeline), falling back to the file's duration."""
        if self.video is not None and self.video.duration_s:
            return self.video.duration_s
        return self.duration_s


# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------


def _is_isobmff(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return len(head) >= 8 and head[4:8] in _ISOBMFF_BOXES


def clock(seconds: float) -> str:
    """A length for messages: ``"42.5 s"``, ``"3:07"`` or ``"1:02:07"``."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def truncated_error(name: str, *, playable_s: float = 0.0, duration_s: float | None = None) -> MediaError:
    """``"truncated"``: the file's data stops before its end (an upload or a copy cut short).

    ``playable_s``: how many seconds of it still play (0 when nothing can: an mp4 cut before its
    index); ``duration_s``: the length its header claims, when known.
    """
    playable_s = round(max(0.0, float(playable_s)), 1)
    params: dict = {"name": name, "playable_s": playable_s}
    if duration_s is not None and duration_s > 0:
        params["duration_s"] = round(float(duration_s), 1)
    if playable_s > 0:
        of = f" of its {clock(duration_s)}" if "duration_s" in params else ""
        msg = (f"{name} is incomplete: only the first {clock(playable_s)}{of} can be played. Was the upload or "
               "the copy cut short? Copy or export it again.")
    else:
        msg = (f"{name} is incomplete: it was cut short before the part that makes it playable. Copy or export "
               "it again.")
    return MediaError("truncated", msg, **params)


def _truncated(name: str) -> MediaError:
    return truncated_error(name)


def _check_file(path: str) -> int:
    """Raise for a missing or empty file; return its size in bytes."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise MediaError("file_missing", f"{name} was not found", name=name)
    if not os.access(path, os.R_OK):
        raise MediaError("unreadable", f"{name} cannot be read (permission denied)", name=name)
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError("empty_file", f"{name} is empty (0 bytes)", name=name)
    return size


@contextlib.contextmanager
def _open(path: str) -> Iterator[av.container.InputContainer]:
    """Open ``path`` with PyAV, turning failures into `MediaError` (missing, empty, not media, cut)."""
    _check_file(path)
    name = os.path.basename(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _is_isobmff(path):
            raise _truncated(name) from exc
        raise MediaError(
            "not_media", f"{name} is not a sound or video file that can be played.", name=name
        ) from exc
    with container:
        yield container


# --------------------------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------------------------


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _codec_name(stream) -> str:
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def _pick_video(container):
    """The main picture stream: the best non-cover-art video stream, or None."""
    cands = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not cands:
        return None
    best = container.streams.best("video")
    if best in cands:
        return best
    return max(cands, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def _pick_audio(container, video):
    if not container.streams.audio:
        return None
    best = container.streams.best("audio", related=video) if video is not None else None
    return best or container.streams.best("audio") or container.streams.audio[0]


def _first_frames(container, streams) -> dict[int, object]:
    """Decode the first frame of each of ``streams``; ``{stream index: frame}`` (missing on failure)."""
    found: dict[int, object] = {}
    if not streams:
        return found
    for n, packet in enumerate(container.demux(*streams)):
        idx = packet.stream.index
        if idx not in found:
            with contextlib.suppress(av.error.FFmpegError):
                for frame in packet.decode():
                    if frame.pts is not None:
                        found[idx] = frame
                        break
        if len(found) == len(streams) or n >= _MAX_PROBE_PACKETS:
            break
    return found


def _rotation(frame) -> int:
    if frame is None:
        return 0
    return int(round(frame.rotation / 90.0)) % 4 * 90


def _irregular_index(stream) -> bool:
    """True if the container index lists every frame and their timestamps are irregular."""
    entries = stream.index_entries
    n = len(entries)
    if n < 8 or not stream.frames or n < 0.9 * stream.frames or stream.time_base is None:
        return False
    m = min(n, 2000)
    ts = np.array([entries[i].timestamp for i in range(m)], dtype=np.float64)
    d = np.diff(np.sort(ts))
    med = float(np.median(d))
    if med <= 0:
        return False
    return bool(np.max(np.abs(d - med)) > 1.0 + 0.02 * med)


def _vfr(stream) -> bool:
    avg, base = stream.average_rate, stream.base_rate
    if avg and base and abs(float(base) / float(avg) - 1.0) > 0.01:
        return True
    return _irregular_index(stream)


def _video_info(stream, frame) -> VideoStreamInfo:
    cc = stream.codec_context
    tb = stream.time_base
    start = float(frame.time) if frame is not None else (_seconds(stream.start_time, tb) or 0.0)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    pix = frame.format.name if frame is not None else getattr(cc, "pix_fmt", None)
    return VideoStreamInfo(
        index=stream.index,
        codec=_codec_name(stream),
        width=int(cc.width or (frame.width if frame is not None else 0)),
        height=int(cc.height or (frame.height if frame is not None else 0)),
        fps=float(rate) if rate else 0.0,
        rotation=_rotation(frame),
        start_s=start,
        duration_s=_seconds(stream.duration, tb),
        frame_count=int(stream.frames) or None,
        vfr=_vfr(stream),
        pix_fmt=pix,
    )


def _audio_info(stream, frame) -> AudioStreamInfo:
    cc = stream.codec_context
    tb = stream.time_base
    start = float(frame.time) if frame is not None else (_seconds(stream.start_time, tb) or 0.0)
    return AudioStreamInfo(
        index=stream.index,
        codec=_codec_name(stream),
        sample_rate=int(cc.sample_rate or (frame.sample_rate if frame is not None else 0)),
        channels=int(cc.channels or (len(frame.layout.channels) if frame is not None else 0)),
        start_s=start,
        duration_s=_seconds(stream.duration, tb),
        bit_rate=int(cc.bit_rate) if cc.bit_rate else None,
    )


def _first_missing(entries, size: int) -> int | None:
    """Index of the first of ``entries`` (in time order) whose data ends past ``size`` bytes, by
    bisection (the data of an mp4 track is laid out in time order); None when all are there."""
    n = len(entries)
    tail = range(max(0, n - 16), n)
    if not any(entries[i].pos + entries[i].size > size for i in tail):
        return None
    lo, hi = 0, n - 1  # entries[hi] is missing
    while lo < hi:
        mid = (lo + hi) // 2
        e = entries[mid]
        if e.pos + e.size > size:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _check_index(streams, *, size: int, name: str, duration_s: float) -> None:
    """Raise "truncated" if an ISO-BMFF index points past the end of the file, with the seconds
    that still play (where the first track's data stops)."""
    ends = []
    for stream in streams:
        i = _first_missing(stream.index_entries, size)
        if i is not None:
            e = stream.index_entries[i]
            start = stream.start_time or 0
            ends.append(float((e.timestamp - start) * stream.time_base))
    if ends:
        raise truncated_error(name, playable_s=min(ends), duration_s=duration_s)


def _duration(container, streams) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    durs = [_seconds(s.duration, s.time_base) for s in streams]
    return max((d for d in durs if d), default=0.0)


def probe(path) -> MediaInfo:
    """Read the structure of a media file: format, duration, main sound and picture tracks.

    Decodes the first audio frame and the first video frame (nothing else) to learn where the
    decoder really starts each stream and the display rotation.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    MediaInfo

    Raises
    ------
    MediaError
        ``"file_missing"``, ``"unreadable"``, ``"empty_file"``, ``"not_media"``, ``"truncated"`` (an mp4/mov whose
        index is missing or points past the end), ``"no_streams"`` (neither sound nor picture).
        A missing sound or picture track is not an error here: see `require_audio`,
        `require_video`.
    """
    path = os.fspath(path)
    size = _check_file(path)
    name = os.path.basename(path)
    with _open(path) as container:
        video = _pick_video(container)
        audio = _pick_audio(container, video)
        streams = [s for s in (audio, video) if s is not None]
        if not streams:
            raise MediaError("no_streams", f"{name} contains no sound or picture", name=name)
        duration = _duration(container, streams)
        if _is_isobmff(path):
            _check_index(streams, size=size, name=name, duration_s=duration)
        frames = _first_frames(container, streams)
        return MediaInfo(
            path=path,
            format_name=container.format.name,
            duration_s=float(duration),
            size_bytes=size,
            audio=_audio_info(audio, frames.get(audio.index)) if audio is not None else None,
            video=_video_info(video, frames.get(video.index)) if video is not None else None,
        )


def require_audio(info: MediaInfo, role: str = "file") -> AudioStreamInfo:
    """Return ``info.audio`` or raise `MediaError` ``"no_audio"`` ("<name> has no sound track").

    Parameters
    ----------
    info : MediaInfo
    role : str
        What the file is for (``"dance video"``, ``"song"``), passed on in the error's params.
    """
    if info.audio is None:
        raise MediaError("no_audio", f"{info.name} has no sound track", name=info.name, role=role)
    return info.audio


def require_video(info: MediaInfo) -> VideoStreamInfo:
    """Return ``info.video`` or raise `MediaError` ``"no_video"`` ("<name> has no picture")."""
    if info.video is None:
        raise MediaError("no_video", f"{info.name} has no picture (it is not a video)", name=info.name)
    return info.video


# --------------------------------------------------------------------------------------------
# packet timestamps (demux only, no decoding)
# --------------------------------------------------------------------------------------------


def _packet_times(path, *, video_index: int | None, keyframes_only: bool) -> np.ndarray:
    path = os.fspath(path)
    name = os.path.basename(path)
    with _open(path) as container:
        if video_index is None:
            stream = _pick_video(container)
        else:
            stream = next((s for s in container.streams.video if s.index == video_index), None)
        if stream is None:
            raise MediaError("no_video", f"{name} has no picture (it is not a video)", name=name)
        for other in container.streams:
            if other is not stream:
                other.discard = av.stream.Discard.all
        tb = stream.time_base
        ticks = [
            p.pts
            for p in container.demux(stream)
            if p.pts is not None and (p.is_keyframe or not keyframes_only) and not p.is_discard
        ]
    return np.sort(np.asarray(ticks, dtype=np.int64)).astype(np.float64) * float(tb)


def keyframe_times(path, *, video_index: int | None = None) -> np.ndarray:
    """Presentation times of the keyframes of the picture stream, by demuxing (no decoding).

    Parameters
    ----------
    path : str or os.PathLike
        The video file.
    video_index : int, optional
        Stream index; the main picture stream (as in `probe`) by default.

    Returns
    -------
    numpy.ndarray
        float64 seconds on the file timeline (same as ``VideoStreamInfo.start_s``), sorted.
        Subtract ``info.video.start_s`` for dance time.
    """
    return _packet_times(path, video_index=video_index, keyframes_only=True)


def frame_times(path, *, video_index: int | None = None) -> np.ndarray:
    """Presentation times of all frames of the picture stream, by demuxing (no decoding).

    Same timeline and conventions as `keyframe_times`.
    """
    return _packet_times(path, video_index=video_index, keyframes_only=False)

"""Checking that a file really plays, cheaply: decode a little of its sound at the start, the middle
and the end, and compare where its data ends with the duration its header claims.

`verify` never reads a file through: it seeks (PyAV's ``seek``, the container's own index, table of
contents or bisection) to each place and decodes `WINDOW_S` seconds there, so its cost does not grow
with the file's size (a few tens of milliseconds for a 500 MB video; benchmarks/bench_upload_verify.py).
When the data stops before the claimed end (an upload or a copy cut short), the real playable end is
found by bisection with seeks (`playable_end`), each one demuxing a few packets only.

It is what the service runs on every upload (`beatsync.service.Upload.commit`), after `probe`, so
that random bytes named ``.mp3`` (``not_media``), a file cut short (``truncated``, with the length
that still plays in ``playable_s``) or sound that cannot be decoded (``decode_failed``) are refused
at once, with the user's file named, instead of failing later in a job.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import av

from beatsync.errors import MediaError
from beatsync.media.probe import MediaInfo, _open, clock, probe, truncated_error

__all__ = ["Verified", "verify", "playable_end", "clock"]

#: seconds of sound decoded at the start and in the middle
WINDOW_S = 2.0
#: the end check starts this long before the claimed end and demuxes to the end of the file
END_WINDOW_S = 4.0
#: packets read at most per window or probe (a bound, whatever the file's timestamps say)
MAX_PACKETS = 6000
#: the data may stop this short of the claimed end (plus `END_SLACK_FRACTION` of the duration)
END_SLACK_S = 1.0
END_SLACK_FRACTION = 0.01
#: bisection of the playable end stops when it knows it within this many seconds
BISECT_RESOLUTION_S = 0.25


@dataclass
class Window:
    """What one place of the file gave: seconds of sound decoded, packets seen, where the data ends."""

    at_s: float  # file time the window starts at (None seek: the stream's start)
    decoded_s: float = 0.0
    audio_packets: int = 0
    errors: int = 0
    last_end_s: float | None = None  # end of the latest packet of any stream read (file time)


@dataclass(frozen=True)
class Verified:
    """A file that plays: its duration in seconds (the header's, or where the sound really ends when
    the header does not say), and what each window gave (for benchmarks and tests)."""

    duration_s: float
    windows: list[Window] = field(default_factory=list)
    seconds: float = 0.0  # how long the check took


def _end(packet) -> float | None:
    if packet.pts is None or packet.time_base is None:
        return None
    return float((packet.pts + (packet.duration or 0)) * packet.time_base)


def _seek(container, stream, t: float) -> bool:
    """Seek ``stream`` to the packet at or before file time ``t``; False when the container cannot."""
    try:
        container.seek(max(0, int(t / stream.time_base)), stream=stream, backward=True, any_frame=False)
    except (av.error.FFmpegError, OverflowError, ValueError):
        return False
    return True


def _seek_stream(container, audio, video):
    """The stream to seek on: the sound's, except in Matroska/WebM, whose index (Cues) usually lists
    the picture's keyframes only: seeking on a stream without cues reads the file from its start."""
    if video is not None and "matroska" in (container.format.name or ""):
        return video
    return audio


def _window(container, audio, others, *, at_s: float | None, length_s: float | None, seek=None) -> Window:
    """Decode the sound from file time ``at_s`` (None: from the stream's start, no seek) for
    ``length_s`` seconds (None: to the end of the file), demuxing ``others`` alongside to see where
    their data ends. ``seek``: the stream to seek on (`_seek_stream`; the sound's by default)."""
    w = Window(at_s=at_s if at_s is not None else 0.0)
    if at_s is not None and not _seek(container, seek or audio, at_s):
        return w
    decoder = audio.codec_context
    with contextlib.suppress(av.error.FFmpegError):
        decoder.flush_buffers()  # (after a seek; a fresh stream's decoder has nothing in it)
    stop = None if length_s is None else (at_s or 0.0) + length_s
    first_audio = None
    try:
        for n, packet in enumerate(container.demux(audio, *others)):
            if n >= MAX_PACKETS:
                break
            end = _end(packet)
            if end is not None and packet.size:
                w.last_end_s = end if w.last_end_s is None else max(w.last_end_s, end)
            if packet.stream.index != audio.index:
                continue
            if packet.size:
                w.audio_packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                w.errors += 1
                continue
            for frame in frames:
                if not frame.samples or not frame.sample_rate:
                    continue
                t = float(frame.time) if frame.time is not None else None
                dur = frame.samples / frame.sample_rate
                if at_s is not None and t is not None and t + dur < at_s:
                    continue  # before the wanted place (the seek lands on the packet before it)
                w.decoded_s += dur
                if first_audio is None:
                    first_audio = t if t is not None else 0.0
            if stop is not None and end is not None and end >= stop and w.decoded_s >= length_s * 0.5:
                break
    except av.error.FFmpegError:
        w.errors += 1  # a demux error: the data stops being readable here
    return w


def _reaches(container, audio, t: float, seek=None) -> bool:
    """Whether the sound's data reaches file time ``t``: seek a second before it and demux (no
    decoding) until a packet ends at or after it."""
    if not _seek(container, seek or audio, t - 1.0):
        return False
    try:
        for n, packet in enumerate(container.demux(audio)):
            end = _end(packet)
            if end is not None and packet.size and end >= t:
                return True
            if n >= MAX_PACKETS:
                return False
    except av.error.FFmpegError:
        return False
    return False


def playable_end(container, audio, *, known_s: float, claimed_s: float | None, seek=None) -> float:
    """File time in seconds where the sound's data really ends, by bisection with seeks.

    ``known_s``: a time known to have data (the end of what the start window decoded);
    ``claimed_s``: where the header says the file ends (None: unknown, found by doubling first).
    Each step seeks and demuxes a few packets; the last step demuxes from the bound found to the
    end of the file, whose latest packet's end is the answer. ``seek``: the stream to seek on
    (`_seek_stream`). (A Matroska file cut before its index is read through once by the first
    seek past its data: the demuxer indexes the clusters it reads, so the next steps are quick.)
    """
    lo = max(0.0, known_s)
    if claimed_s is None:  # no upper bound: double until the data stops
        hi = max(2.0 * lo, 8.0)
        for _ in range(24):
            if not _reaches(container, audio, hi, seek):
                break
            lo, hi = hi, 2.0 * hi
    else:
        hi = claimed_s
    steps = 0
    while hi - lo > BISECT_RESOLUTION_S and steps < 40:
        mid = 0.5 * (lo + hi)
        if _reaches(container, audio, mid, seek):
            lo = mid
        else:
            hi = mid
        steps += 1
    last = lo
    if _seek(container, seek or audio, lo - 1.0):
        try:
            for n, packet in enumerate(container.demux(audio)):
                end = _end(packet)
                if end is not None and packet.size:
                    last = max(last, end)
                if n >= MAX_PACKETS:
                    break
        except av.error.FFmpegError:
            pass
    return last


def _wav_claim(path: str, size: int) -> tuple[float, float] | None:
    """(seconds the header of a RIFF/WAVE file claims, seconds its data holds), from the ``fmt `` and
    ``data`` chunk headers; None when it is not one or does not say (a streaming writer's 0 or
    0xFFFFFFFF). ffmpeg trusts the file's size, so a WAV cut short shows only here."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16:pos + 20], "little")
        elif cid == b"data":
            if byte_rate <= 0 or n in (0, 0xFFFFFFFF):
                return None
            return n / byte_rate, max(0, size - (pos + 8)) / byte_rate
        pos += 8 + n + (n & 1)
    return None


def _claimed_end(container, streams, begin: float, duration: float) -> float:
    """File time where the chosen streams claim to end: the latest of their own durations when the
    container gives them (an mp4's data or subtitle track may be longer), else the file's."""
    ends = [float((s.start_time or 0) * s.time_base + s.duration * s.time_base)
            for s in streams if s.duration and s.time_base is not None]
    return max(ends) if ends else begin + duration


def _not_media(name: str) -> MediaError:
    return MediaError("not_media", f"{name} is not a sound or video file that can be played.", name=name)


def verify(path, info: MediaInfo | None = None) -> Verified:
    """Check that a file's sound decodes at its start, middle and end and that its data reaches the
    duration its header claims; returns `Verified` or raises `MediaError`.

    Files without sound are not decoded (whoever needs sound refuses them with ``no_audio``).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    info : MediaInfo, optional
        `probe` of ``path``, if already known (its errors are this function's too).

    Raises
    ------
    MediaError
        ``"not_media"`` (nothing decodes: not a sound or video file at all), ``"decode_failed"``
        (a real sound track that does not decode at its start, middle or end: ``at_s``),
        ``"truncated"`` (the data stops before the claimed end: ``playable_s``, ``duration_s``),
        and the errors of `probe`.
    """
    t0 = time.perf_counter()
    path = os.fspath(path)
    info = info if info is not None else probe(path)
    name = os.path.basename(path)
    if info.audio is None:
        return Verified(duration_s=info.duration_s, seconds=time.perf_counter() - t0)
    a = info.audio
    sane = a.sample_rate > 0 and a.channels > 0
    windows: list[Window] = []
    with _open(path) as container:
        audio = next(s for s in container.streams if s.index == a.index)
        others = [s for s in container.streams if info.video is not None and s.index == info.video.index]
        for s in container.streams:
            if s is not audio and s not in others:
                s.discard = av.stream.Discard.all
        begin = (container.start_time or 0) / 1_000_000 if container.start_time is not None else 0.0
        seek = _seek_stream(container, audio, others[0] if others else None)
        duration = info.duration_s if info.duration_s > 0 else None
        head = _window(container, audio, [], at_s=None, length_s=WINDOW_S)
        windows.append(head)
        # random bytes hold a few chance frame headers: most of what the demuxer finds fails to decode
        if head.audio_packets > 0 and 2 * head.errors >= head.audio_packets:
            raise _not_media(name)
        if head.decoded_s <= 0:
            if not sane or head.audio_packets == 0 or head.errors >= head.audio_packets:
                raise _not_media(name)
            raise MediaError("decode_failed", f"The sound of {name} cannot be decoded: the file is damaged.",
                             name=name, at_s=0.0)
        known = head.last_end_s if head.last_end_s is not None else begin + head.decoded_s
        if duration is None:  # the header does not say: find where the sound ends
            end = playable_end(container, audio, known_s=known, claimed_s=None, seek=seek)
            return Verified(duration_s=max(0.0, end - begin), windows=windows, seconds=time.perf_counter() - t0)
        claimed = _claimed_end(container, [audio, *others], begin, duration)
        slack = END_SLACK_S + END_SLACK_FRACTION * duration
        wav = _wav_claim(path, info.size_bytes)
        if wav is not None and wav[1] < wav[0] - slack:
            raise truncated_error(name, playable_s=wav[1], duration_s=wav[0])
        places = []
        if duration > 2 * WINDOW_S + END_WINDOW_S:
            places.append(begin + 0.5 * duration - 0.5 * WINDOW_S)
        broken = None
        for at in places:
            w = _window(container, audio, [], at_s=at, length_s=WINDOW_S, seek=seek)
            windows.append(w)
            if w.decoded_s <= 0:
                broken = w
                break
        if broken is None and known < claimed - slack:
            at = max(begin, claimed - END_WINDOW_S)
            w = _window(container, audio, [], at_s=at, length_s=None, seek=seek)
            if (w.last_end_s is None or w.last_end_s < claimed - slack) and others:
                # the sound may end before the picture: where does the picture's data end?
                w = _window(container, audio, others, at_s=at, length_s=None, seek=seek)
            windows.append(w)
            if w.last_end_s is None or w.last_end_s < claimed - slack:
                broken = w
            elif w.decoded_s <= 0 and w.audio_packets > 0:
                raise MediaError("decode_failed", f"The sound of {name} cannot be decoded near its end: the file "
                                 "is damaged.", name=name, at_s=round(w.at_s - begin, 3))
        if broken is not None:
            end = playable_end(container, audio, known_s=known, claimed_s=claimed, seek=seek)
            if end < claimed - slack:
                raise truncated_error(name, playable_s=end - begin, duration_s=duration)
            if broken.audio_packets > 0:  # the data is there, but its sound does not decode
                raise MediaError("decode_failed", f"The sound of {name} cannot be decoded at "
                                 f"{clock(broken.at_s - begin)}: the file is damaged.", name=name,
                                 at_s=round(broken.at_s - begin, 3))
    return Verified(duration_s=info.duration_s, windows=windows, seconds=time.perf_counter() - t0)

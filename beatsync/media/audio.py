"""Decoding a file's sound to a numpy array, with ffmpeg, on the dance timeline."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from beatsync.errors import MediaError, ParameterError
from beatsync.media.ffmpeg import ffmpeg_pipe, has_soxr
from beatsync.media.probe import MediaInfo, probe, require_audio

__all__ = ["decode_audio", "stream_audio"]

_CHUNK_BYTES = 1 << 20  # 1 MiB reads from the pipe


def _filter(sr: int) -> str:
    """Resample to ``sr``; fill gaps (or trim overlaps) of more than 0.1 s in the timestamps.

    Without ``min_comp``/``min_hard_comp`` ffmpeg would simply butt the decoded frames together,
    so a recording that dropped audio for a moment would shift all later sound earlier. Smaller
    jitter is left alone (no stretching), and nothing is padded at the start.
    """
    resampler = ":resampler=soxr" if has_soxr() else ""
    return f"aresample={sr}{resampler}:min_comp=0.1:min_hard_comp=0.1"


def _decode_args(path: str, *, index: int, sr: int, channels: int) -> list[str]:
    return [
        "-i", path,
        "-map", f"0:{index}",
        "-vn", "-sn", "-dn",
        "-af", _filter(sr),
        "-ac", str(channels),
        "-c:a", "pcm_f32le",
        "-f", "f32le",
        "pipe:1",
    ]  # fmt: skip


def _read_into(stream, *, expected_samples: int, channels: int) -> np.ndarray:
    """Read interleaved float32 from ``stream`` into one growing buffer; shape ``(n, channels)``.

    The buffer is sized from the expected length (+2 %), grown by half when full and shrunk in
    place at the end: at most one copy of the samples exists at a time, except while growing.
    """
    frame_bytes = 4 * channels
    buf = np.empty(int(expected_samples * 1.02) + 4096, dtype=np.float32)
    raw = memoryview(buf).cast("B")
    pos = 0  # bytes
    while True:
        if pos + _CHUNK_BYTES > raw.nbytes:
            raw.release()
            bigger = np.empty(
                int(buf.size * 1.5) + _CHUNK_BYTES, dtype=np.float32
            )  # rare: duration was short
            bigger[: buf.size] = buf
            buf = bigger
            raw = memoryview(buf).cast("B")
        got = stream.readinto(raw[pos : pos + _CHUNK_BYTES])
        if not got:
            break
        pos += got
    raw.release()
    n = pos // frame_bytes
    buf.resize(n * channels, refcheck=False)  # in place (realloc), no copy of the samples
    return buf.reshape(n, channels)


def decode_audio(path, *, sr: int, mono: bool = True, info: MediaInfo | None = None) -> np.ndarray:
    """Decode the sound of a file to float32 samples at ``sr`` Hz, on the dance timeline.

    ffmpeg decodes and resamples (soxr when the build has it) and streams raw float32 through a
    pipe straight into one numpy buffer.

    Contract: sample ``k`` is the sound at dance time ``info.audio_origin_s + k / sr`` seconds
    (dance time 0 = the first video frame; for an audio file, 0 = its first sample). Nothing is
    dropped or padded at the start: the decoder's own handling of AAC priming (mp4/mov edit
    lists, iTunSMPB), Opus pre-skip (Ogg, Matroska/WebM CodecDelay), MP3 encoder delay
    (LAME/Xing gapless header) and Vorbis is what both this function and `probe` see. Gaps of
    more than 0.1 s in the audio timestamps (a phone dropping sound for a moment) are filled with
    silence, so later samples stay on the timeline.

    Measured with clicks encoded by this ffmpeg build (tests/test_media.py): within 0.02 ms for
    wav, flac, mp3 (LAME header), m4a/mp4 AAC, ogg Vorbis, Opus (ogg, webm, mkv), and
    mp4/mov/m4v/mkv/webm/avi dance videos. Known biases:

    * MP3 inside AVI has no gapless information, so the encoder + decoder delay stays in the
      sound (1105 samples with LAME: +25.1 ms at 44.1 kHz, +23.0 ms at 48 kHz, i.e. the sound
      decodes that much late). Every player plays it just as late.
    * Matroska/WebM store times in whole milliseconds, and ffmpeg's muxer rounds the Opus codec
      delay too: an Opus track that starts after the picture can be off by up to ~1 ms.

    Parameters
    ----------
    path : str or os.PathLike
        Video or audio file.
    sr : int
        Output sample rate in Hz.
    mono : bool
        Mix down to one channel (ffmpeg's downmix); else keep the stream's channel count.
    info : MediaInfo, optional
        The result of `probe` for ``path``, if already known.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n,)`` if ``mono`` else ``(channels, n)``. The multichannel array is a
        transposed view of the interleaved samples (Fortran order, no extra copy); use
        ``numpy.ascontiguousarray`` if C order is needed.

    Raises
    ------
    MediaError
        ``"no_audio"``; ``"decode_failed"`` ("could not decode the sound of <name>: <reason>");
        the errors of `probe`.
    """
    if int(sr) <= 0:
        raise ParameterError(f"sr must be a positive sample rate in Hz, got {sr!r}")
    path = os.fspath(path)
    info = info if info is not None else probe(path)
    stream = require_audio(info)
    channels = 1 if mono else stream.channels
    duration = stream.duration_s or info.duration_s or 60.0
    expected = int(duration * sr) * channels
    name = os.path.basename(path)
    args = _decode_args(path, index=stream.index, sr=int(sr), channels=channels)
    try:
        with ffmpeg_pipe(args, what=f"Decoding the sound of {name}", step="decode") as proc:
            samples = _read_into(proc.stdout, expected_samples=expected, channels=channels)
    except MediaError as exc:
        if exc.code == "ffmpeg_killed":
            raise
        reason = exc.params.get("reason", exc.message)
        raise MediaError(
            "decode_failed", f"could not decode the sound of {name}: {reason}", name=name, reason=reason
        ) from exc
    if samples.shape[0] == 0:
        raise MediaError(
            "decode_failed",
            f"could not decode the sound of {name}: no sound came out",
            name=name,
            reason="no samples",
        )
    return samples[:, 0] if mono else samples.T


def stream_audio(
    path, *, sr: int, mono: bool = False, info: MediaInfo | None = None, block: int = 1 << 16
) -> Iterator[np.ndarray]:
    """The sound of a file as `decode_audio` gives it, a block at a time, without holding it all.

    The same ffmpeg command and timeline as `decode_audio` (sample ``k`` of the concatenated
    blocks is the sound at dance time ``info.audio_origin_s + k / sr``), read from the pipe as it
    is consumed: ffmpeg waits while the blocks are not taken. Closing the generator early stops
    ffmpeg.

    Parameters
    ----------
    path, sr, mono, info
        As for `decode_audio`.
    block : int
        Samples per channel in each block (the last one may be shorter).

    Yields
    ------
    numpy.ndarray
        float32 ``(channels, k)`` blocks (``(1, k)`` when ``mono``).

    Raises
    ------
    MediaError
        As `decode_audio`: ``"no_audio"``, ``"decode_failed"`` (also when no sound came out),
        ``"ffmpeg_killed"``; raised when the failure shows (at the end of the pipe).
    """
    if int(sr) <= 0:
        raise ParameterError(f"sr must be a positive sample rate in Hz, got {sr!r}")
    if int(block) <= 0:
        raise ParameterError(f"block must be a positive number of samples, got {block!r}")
    path = os.fspath(path)
    info = info if info is not None else probe(path)
    stream = require_audio(info)
    channels = 1 if mono else stream.channels
    name = os.path.basename(path)
    args = _decode_args(path, index=stream.index, sr=int(sr), channels=channels)
    frame_bytes = 4 * channels
    total = 0
    try:
        with ffmpeg_pipe(args, what=f"Decoding the sound of {name}", step="decode") as proc:
            while True:
                buf = np.empty(int(block) * channels, np.float32)
                raw = memoryview(buf).cast("B")
                pos = 0
                while pos < raw.nbytes:  # a pipe gives what is there: fill the block
                    got = proc.stdout.readinto(raw[pos:])
                    if not got:
                        break
                    pos += got
                raw.release()
                k = pos // frame_bytes
                if k:
                    total += k
                    yield buf[: k * channels].reshape(k, channels).T
                if pos < buf.nbytes:
                    break
    except MediaError as exc:
        if exc.code == "ffmpeg_killed":
            raise
        reason = exc.params.get("reason", exc.message)
        raise MediaError(
            "decode_failed", f"could not decode the sound of {name}: {reason}", name=name, reason=reason
        ) from exc
    if total == 0:
        raise MediaError(
            "decode_failed",
            f"could not decode the sound of {name}: no sound came out",
            name=name,
            reason="no samples",
        )

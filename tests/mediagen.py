"""Synthetic test media: music-like signals (numpy) and small files written with ffmpeg.

Everything here is deterministic (seeded) and small, so tests can make their own media in
``tmp_path`` in a fraction of a second. Files are written with the imageio-ffmpeg binary through
argument lists (never a shell).

Signals are float32 arrays shaped ``(channels, n)`` at a sample rate ``sr`` in Hz; times are in
seconds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

SONG_FORMATS = ("mp3", "m4a", "wav", "flac", "ogg", "opus", "mp4")
CLICK_TIMES_S = (0.75, 2.5)  # where the test fixtures put their clicks, in seconds

#: ffmpeg audio encoder arguments per song file extension.
_SONG_CODECS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    "m4a": ["-c:a", "aac", "-b:a", "192k"],
    "mp4": ["-c:a", "aac", "-b:a", "192k"],
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "6"],
    "opus": ["-c:a", "libopus", "-b:a", "160k"],
}

#: Default audio codec per class-video container.
_VIDEO_AUDIO_CODECS: dict[str, list[str]] = {
    ".mp4": ["-c:a", "aac", "-b:a", "160k"],
    ".m4v": ["-c:a", "aac", "-b:a", "160k"],
    ".mov": ["-c:a", "aac", "-b:a", "160k"],
    ".mkv": ["-c:a", "aac", "-b:a", "160k"],
    ".webm": ["-c:a", "libopus", "-b:a", "128k"],
    ".avi": ["-c:a", "pcm_s16le"],
}


def ffmpeg(*args: str) -> None:
    """Run the imageio-ffmpeg binary quietly; raise ``CalledProcessError`` with stderr on failure."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)


def ffmpeg_children(pid: int | None = None) -> list[int]:
    """Pids of the ffmpeg children of process ``pid`` (default: this one) that `beatsync.media` started,
    from /proc. Zombies count (a child nobody waited for is left behind too); imageio-ffmpeg's own
    ``ffmpeg -version`` check (the first `ffmpeg_exe` call of a process) does not: only command lines
    with ``-nostdin``, which beatsync always passes."""
    pid = os.getpid() if pid is None else pid
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                name, rest = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)
                state, ppid = rest.split()[:2]
                if int(ppid) != pid or not name.split("(", 1)[1].startswith("ffmpeg"):
                    continue
                if state == "Z" or b"-nostdin" in Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0"):
                    out.append(int(d))
    return out


# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------


def _env(n: int, *, sr: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr)).astype(np.float32)


def _add(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    if start >= out.shape[-1]:
        return
    m = min(sound.shape[-1], out.shape[-1] - start)
    out[..., start : start + m] += sound[..., :m]


def music(
    duration_s: float,
    *,
    sr: int = 44100,
    tempo_bpm: float = 120.0,
    seed: int = 0,
    channels: int = 2,
    level: float = 0.5,
) -> np.ndarray:
    """Synthesize a music-like signal: kick/snare/hi-hat drums, a bass line and chords.

    Parameters
    ----------
    duration_s : float
        Length in seconds.
    sr : int
        Sample rate in Hz.
    tempo_bpm : float
        Tempo in beats per minute (4/4, drums on every beat, hi-hat on eighths).
    seed : int
        Seed for the noise of the drums and the choice of chords.
    channels : int
        Number of channels; channels differ slightly (chords panned).
    level : float
        Peak amplitude of the result (linear, full scale = 1).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(channels, n)`` with ``n = round(duration_s * sr)``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    beat = 60.0 / tempo_bpm
    drums = np.zeros(n, np.float32)
    bass = np.zeros(n, np.float32)
    chords = np.zeros((2, n), np.float32)
    kick_n = int(0.15 * sr)
    tk = np.arange(kick_n) / sr
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk / 0.03)) * 0.03)) * _env(
        kick_n, sr=sr, decay_s=0.05
    )
    snare = rng.standard_normal(int(0.12 * sr)).astype(np.float32) * _env(int(0.12 * sr), sr=sr, decay_s=0.03)
    hat = rng.standard_normal(int(0.04 * sr)).astype(np.float32) * _env(int(0.04 * sr), sr=sr, decay_s=0.008)
    hat = np.diff(hat, prepend=0.0).astype(np.float32)  # brighter
    roots = [45, 41, 48, 43]  # A2 F2 C3 G2 (MIDI)
    rng.shuffle(roots)
    n_beats = int(duration_s / beat) + 1
    for b in range(n_beats):
        start = int(round(b * beat * sr))
        _add(drums, start, kick.astype(np.float32) if b % 2 == 0 else 0.6 * snare)
        _add(drums, start, 0.25 * hat)
        _add(drums, int(round((b + 0.5) * beat * sr)), 0.15 * hat)
        root = roots[(b // 4) % len(roots)]
        f0 = 440.0 * 2 ** ((root - 69) / 12)
        note_n = int(beat * sr)
        t = np.arange(note_n) / sr
        _add(bass, start, (np.sin(2 * np.pi * f0 * t) * _env(note_n, sr=sr, decay_s=beat)).astype(np.float32))
        if b % 4 == 0:
            bar_n = int(4 * beat * sr)
            tb = np.arange(bar_n) / sr
            tone = sum(np.sin(2 * np.pi * f0 * 4 * 2 ** (k / 12) * tb) for k in (0, 4, 7))
            tone = (tone * _env(bar_n, sr=sr, decay_s=2 * beat) / 3).astype(np.float32)
            _add(chords, start, np.stack([tone, 0.7 * tone]))
    mix = 0.5 * drums + 0.35 * bass
    out = np.stack([mix + 0.3 * chords[k % 2] for k in range(channels)]).astype(np.float32)
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (level / peak)).astype(np.float32)


def click(*, sr: int, freq_hz: float = 2000.0, width_s: float = 0.0005) -> np.ndarray:
    """A short Gaussian-windowed tone burst centred on its middle sample (a "click").

    Survives lossy codecs well enough to be located to a small fraction of a millisecond by
    cross-correlation (see `find_click`).

    Parameters
    ----------
    sr : int
        Sample rate in Hz.
    freq_hz : float
        Carrier frequency in Hz.
    width_s : float
        Standard deviation of the Gaussian window in seconds.

    Returns
    -------
    numpy.ndarray
        float32 array of odd length; the click's time is its middle sample.
    """
    half = int(np.ceil(4 * width_s * sr))
    t = np.arange(-half, half + 1) / sr
    return (np.exp(-0.5 * (t / width_s) ** 2) * np.cos(2 * np.pi * freq_hz * t)).astype(np.float32)


def add_clicks(y: np.ndarray, *, sr: int, times_s, amp: float = 0.8) -> np.ndarray:
    """Return a copy of ``y`` (``(n,)`` or ``(channels, n)``) with clicks centred at ``times_s`` seconds."""
    out = np.array(y, dtype=np.float32, copy=True)
    c = click(sr=sr) * amp
    half = len(c) // 2
    for t in times_s:
        centre = int(round(t * sr))
        _add(out, centre - half, c if out.ndim == 1 else np.broadcast_to(c, (out.shape[0], len(c))))
    return out


def find_click(y: np.ndarray, *, sr: int, near_s: float, search_s: float = 0.1) -> float:
    """Locate the click nearest ``near_s`` seconds in ``y`` (mono or first channel), in seconds.

    Cross-correlates with the click template within ``near_s ± search_s`` and refines the peak
    with a parabola through the correlation envelope.
    """
    x = y if y.ndim == 1 else y[0]
    c = click(sr=sr)
    half = len(c) // 2
    lo = max(0, int((near_s - search_s) * sr) - half)
    hi = min(len(x), int((near_s + search_s) * sr) + half)
    seg = x[lo:hi].astype(np.float64)
    corr = np.correlate(seg, c.astype(np.float64), mode="valid")
    # envelope of the correlation (robust to small phase changes of lossy codecs)
    spec = np.fft.fft(corr)
    h = np.zeros(len(corr))
    h[0] = 1
    h[1 : (len(corr) + 1) // 2] = 2
    if len(corr) % 2 == 0:
        h[len(corr) // 2] = 1
    env = np.abs(np.fft.ifft(spec * h))
    k = int(np.argmax(env))
    return (lo + k + parabolic_offset(env, k) + half) / sr


def parabolic_offset(y: np.ndarray, k: int) -> float:
    """Sub-sample position of the peak at ``k`` of ``y`` relative to ``k`` (parabola through 3 points)."""
    if not 0 < k < len(y) - 1:
        return 0.0
    a, b, d = y[k - 1], y[k], y[k + 1]
    den = a - 2 * b + d
    return float(0.5 * (a - d) / den) if den else 0.0


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _raw_audio_input(y: np.ndarray, *, sr: int, tmpdir: str) -> list[str]:
    """Write ``y`` as interleaved f32le to a temp file; return the ffmpeg input arguments for it."""
    y2 = y[None, :] if y.ndim == 1 else y
    fd, raw = tempfile.mkstemp(suffix=".f32", dir=tmpdir)
    with os.fdopen(fd, "wb") as fh:
        fh.write(np.ascontiguousarray(y2.T, dtype="<f4").tobytes())
    return ["-f", "f32le", "-ar", str(sr), "-ac", str(y2.shape[0]), "-i", raw]


def write_song(path, y: np.ndarray, *, sr: int, extra: list[str] | None = None) -> Path:
    """Write a song file; the format follows the extension (mp3, m4a, wav, flac, ogg, opus, mp4).

    Parameters
    ----------
    path : str or Path
        Output path; its extension picks the codec (see ``_SONG_CODECS``).
    y : numpy.ndarray
        float32 samples, ``(n,)`` or ``(channels, n)``.
    sr : int
        Sample rate of ``y`` in Hz (opus is resampled to 48 kHz by its encoder).
    extra : list of str, optional
        Extra output arguments for ffmpeg.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        inp = _raw_audio_input(y, sr=sr, tmpdir=tmp)
        ffmpeg(*inp, *_SONG_CODECS[ext], *(extra or []), str(path))
    return path


def _picture_filters(*, duration_s: float, fps: float, head_s: float, tail_s: float, vfr: bool) -> str:
    vf = []
    if head_s > 0 or tail_s > 0:
        cond = f"lt(t,{head_s})+gte(t,{duration_s - tail_s})"
        vf.append(f"drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{cond}'")
    if vfr:  # alternate frame durations 1.3/fps and 0.7/fps: the average rate stays fps
        vf.append(f"settb=1/90000,setpts='(N/{fps}+mod(N,2)*0.3/{fps})/TB'")
    return ",".join(vf)


def _sound_timestamps(*, delay_s: float, gap: tuple[float, float] | None) -> str:
    """``asetpts`` filter delaying the sound (``-itsoffset`` on a raw sound input is ignored)."""
    expr = f"PTS+{delay_s}/TB"
    if gap is not None:
        expr += f"+gte(T\\,{gap[0]})*{gap[1]}/TB"
    return f"asetpts={expr}"


def _encoder_args(vcodec: str, *, gop: int | None, bframes: int | None, vfr: bool) -> list[str]:
    args = ["-c:v", vcodec]
    if vcodec in ("libx264", "libx265"):
        args += ["-preset", "ultrafast" if bframes is None else "veryfast", "-pix_fmt", "yuv420p"]
    if vcodec == "libx264" and bframes is not None:
        args += ["-bf", str(bframes)]
    if vcodec == "libx265":
        args += ["-x265-params", "log-level=error"]
    if vcodec.startswith("libvpx"):
        args += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
    if gop is not None:
        args += ["-g", str(gop), "-keyint_min", str(gop)]
        args += ["-sc_threshold", "0"] if vcodec == "libx264" else []
    if vfr:
        args += ["-fps_mode", "passthrough", "-enc_time_base", "filter"]
    return args


def write_class_video(
    path,
    *,
    duration_s: float = 4.0,
    size: tuple[int, int] = (160, 120),
    fps: float = 30.0,
    vcodec: str = "libx264",
    vargs: list[str] | None = None,
    gop: int | None = None,
    bframes: int | None = None,
    audio: np.ndarray | None = None,
    sr: int = 48000,
    acodec: list[str] | None = None,
    rotation: int = 0,
    black_head_s: float = 0.0,
    black_tail_s: float = 0.0,
    vfr: bool = False,
    audio_delay_s: float = 0.0,
    audio_gap: tuple[float, float] | None = None,
) -> Path:
    """Write a small "class video": testsrc2 picture, optional black head/tail, sound from ``audio``.

    Parameters
    ----------
    path : str or Path
        Output file; the container follows the extension (mp4, mov, m4v, mkv, webm, avi).
    duration_s : float
        Length of the picture in seconds (the sound is cut to end with it).
    size : (int, int)
        Coded width and height in pixels.
    fps : float
        Frame rate in frames per second.
    vcodec : str
        ffmpeg video encoder (libx264, libvpx-vp9, mjpeg, libtheora, libvpx, mpeg4, libx265).
    vargs : list of str, optional
        Extra video encoder arguments.
    gop : int, optional
        Keyframe interval in frames (``-g``, with scene-cut keyframes disabled for x264).
    bframes : int, optional
        Number of B-frames (x264 only).
    audio : numpy.ndarray, optional
        Sound track, float32 ``(n,)`` or ``(channels, n)`` at ``sr``; no audio stream if None.
    sr : int
        Sample rate of ``audio`` in Hz.
    acodec : list of str, optional
        Audio encoder arguments; a container-appropriate default otherwise.
    rotation : int
        Display rotation in degrees counter-clockwise (ffmpeg ``-display_rotation``), added by a
        stream-copy remux, as phones do for portrait video.
    black_head_s, black_tail_s : float
        Seconds of black picture at the start / end.
    vfr : bool
        Make variable-frame-rate timestamps (frame durations alternate between two values).
    audio_delay_s : float
        Seconds by which the sound starts after the first picture frame (``asetpts``);
        negative: the picture starts that much after the sound (``-itsoffset``). Either way,
        audio sample ``k`` plays at dance time ``audio_delay_s + k / sr`` (0 = first picture).
    audio_gap : (float, float), optional
        ``(at_s, gap_s)``: the sound's timestamps jump by ``gap_s`` seconds after ``at_s`` seconds
        (as when a phone drops audio for a moment); later samples play ``gap_s`` later.
    """
    path = Path(path)
    ext = path.suffix.lower()
    w, h = size
    args: list[str] = ["-itsoffset", str(-audio_delay_s)] if audio_delay_s < 0 else []
    args += ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration_s}"]
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        if audio is not None:
            # end the sound with the picture by trimming the array: ffmpeg 9's output -t can hang
            # when the picture starts after the sound
            audio = audio[..., : max(1, int(round((duration_s - audio_delay_s) * sr)))]
            args += _raw_audio_input(audio, sr=sr, tmpdir=tmp)
        args += ["-map", "0:v"] + (["-map", "1:a"] if audio is not None else [])
        vf = _picture_filters(
            duration_s=duration_s, fps=fps, head_s=black_head_s, tail_s=black_tail_s, vfr=vfr
        )
        args += ["-vf", vf] if vf else []
        if audio is not None and (audio_delay_s > 0 or audio_gap is not None):
            args += ["-af", _sound_timestamps(delay_s=max(audio_delay_s, 0.0), gap=audio_gap)]
        args += _encoder_args(vcodec, gop=gop, bframes=bframes, vfr=vfr)
        args += vargs or []
        if audio is not None:
            args += acodec if acodec is not None else _VIDEO_AUDIO_CODECS[ext]
        if rotation:
            tmp_out = os.path.join(tmp, "norot" + ext)
            ffmpeg(*args, tmp_out)
            ffmpeg("-display_rotation", str(rotation), "-i", tmp_out, "-map", "0", "-c", "copy", str(path))
        else:
            ffmpeg(*args, str(path))
    return path


def add_cover_art(src, dst) -> Path:
    """Copy song ``src`` to ``dst`` with a small PNG cover picture (an ``attached_pic`` stream)."""
    dst = Path(dst)
    ffmpeg(
        "-i", str(src), "-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04,format=rgb24",
        "-map", "0:a", "-map", "1:v", "-c:a", "copy", "-c:v", "png", "-frames:v", "1",
        "-disposition:v:0", "attached_pic", str(dst),
    )  # fmt: skip
    return dst


def add_subtitle_track(src, dst) -> Path:
    """Copy video ``src`` to Matroska ``dst`` with an extra SubRip subtitle stream."""
    dst = Path(dst)
    srt = dst.with_suffix(".srt")
    srt.write_text("1\n00:00:00,500 --> 00:00:01,500\nhello\n", encoding="utf-8")
    ffmpeg("-i", str(src), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt", str(dst))
    return dst


def zero_mdat(path) -> int:
    """Overwrite the payload of the top-level ``mdat`` box(es) of an mp4 with zeros, in place.

    The index (``moov``) stays intact, so demuxing still works while decoding cannot. Returns the
    number of bytes zeroed.
    """
    data = bytearray(Path(path).read_bytes())
    pos, zeroed = 0, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            data[pos + header : pos + size] = bytes(size - header)
            zeroed += size - header
        pos += size
    Path(path).write_bytes(bytes(data))
    return zeroed


def write_big_video(path, *, target_mb: float = 500.0, chunk_s: float = 10.0, size: tuple[int, int] = (320, 240),
                    bitrate: str = "8M", faststart: bool = False) -> Path:
    """A large class video, made cheaply: a ``chunk_s`` chunk of ``testsrc2`` (x264 ``ultrafast`` at
    ``bitrate``, so that a little picture makes many bytes) with a sound track, looped by stream copy
    (``-stream_loop``: no re-encoding) until the file is about ``target_mb`` MB. ``faststart``: the
    index at the front (as many phones and editors write it), else at the end."""
    path = Path(path)
    chunk = path.with_name(f".chunk-{path.stem}.mp4")
    w, h = size
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30:duration={chunk_s}",
           "-f", "lavfi", "-i", f"sine=f=440:r=48000:d={chunk_s}",
           "-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate,
           "-bufsize", bitrate, "-x264-params", "nal-hrd=cbr:filler=1", "-g", "60",
           "-c:a", "aac", "-b:a", "128k", "-shortest", str(chunk))
    loops = max(0, int(round(target_mb * 2**20 / chunk.stat().st_size)) - 1)
    args = ["-stream_loop", str(loops), "-i", str(chunk), "-map", "0", "-c", "copy"]
    args += ["-movflags", "+faststart"] if faststart else []
    try:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args, str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    finally:
        chunk.unlink(missing_ok=True)
    return path

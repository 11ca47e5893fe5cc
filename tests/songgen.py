"""Non-periodic synthetic songs and the ways a dance class degrades them (numpy, seeded).

`mediagen.music` repeats exactly every four bars, so any alignment against it is ambiguous by
whole multiples of four bars. `song` draws every bar afresh (chord, melody, drum pattern, fills),
so a song made here matches itself at one lag only, unless a section is copied on purpose
(`with_repeated_chorus`).

Signals are float32 ``(channels, n)`` (songs) or ``(n,)`` (recordings, babble) at ``sr`` Hz;
times are in seconds. Every function that draws random numbers takes a ``seed``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soxr
from scipy import signal

__all__ = [
    "ClassMedia",
    "Truth",
    "clip",
    "noise",
    "place",
    "room",
    "song",
    "speech_like",
    "speed",
    "stretch",
    "with_repeated_chorus",
    "write_class_media",
]

#: chords as semitone offsets from A (MIDI 57 = A3); triads and sevenths of a few keys
CHORDS = (
    (0, 4, 7),  # A
    (-4, 0, 3),  # F
    (3, 7, 10),  # C
    (-2, 2, 5),  # G
    (2, 5, 9),  # Dm
    (7, 10, 14),  # Em
    (0, 3, 7, 10),  # Am7
    (5, 9, 12, 16),  # D7-ish
)
_BASE_MIDI = 57


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _add(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    if start >= out.shape[-1] or start + sound.shape[-1] <= 0:
        return
    a = max(0, start)
    sound = sound[..., a - start:]
    m = min(sound.shape[-1], out.shape[-1] - a)
    out[..., a:a + m] += sound[..., :m]


def _decay(n: int, sr: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * sr))


def _tone(f0: float, n: int, sr: int, *, harmonics=(1.0, 0.5, 0.3, 0.15), vibrato_hz: float = 0.0,
          vibrato_depth: float = 0.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) / sr
    inst = f0 * (1.0 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t))
    ph = 2 * np.pi * np.cumsum(inst) / sr + phase
    return sum(a * np.sin((k + 1) * ph) for k, a in enumerate(harmonics) if (k + 1) * f0 < 0.45 * sr)


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    kn = int(0.18 * sr)
    tk = np.arange(kn) / sr
    kick = np.sin(2 * np.pi * (48 * tk + 90 * 0.035 * (1 - np.exp(-tk / 0.035)))) * _decay(kn, sr, 0.06)
    sn = int(0.16 * sr)
    snare = (0.7 * rng.standard_normal(sn) * _decay(sn, sr, 0.045)
             + 0.5 * np.sin(2 * np.pi * 190 * np.arange(sn) / sr) * _decay(sn, sr, 0.03))
    hn = int(0.05 * sr)
    hat = np.diff(rng.standard_normal(hn + 1)) * _decay(hn, sr, 0.01)
    on = int(0.25 * sr)
    openhat = np.diff(rng.standard_normal(on + 1)) * _decay(on, sr, 0.08)
    tn = int(0.2 * sr)
    toms = [np.sin(2 * np.pi * f * np.arange(tn) / sr) * _decay(tn, sr, 0.07) for f in (110, 150, 200)]
    return {"kick": kick, "snare": snare, "hat": hat, "openhat": openhat, "toms": toms}


def song(duration_s: float, *, sr: int = 22050, tempo_bpm: float = 110.0, seed: int = 0,
         channels: int = 1, level: float = 0.5) -> np.ndarray:
    """A non-periodic music-like signal: chords, melody, bass and drums, drawn bar by bar.

    Per 4/4 bar: a random chord from `CHORDS`; a melody on eighth notes (chord tones and passing
    tones, random rests, a little vibrato, harmonics); a bass on the chord's root with a random
    rhythm; drums from one of several kick/snare/hat patterns, with a random fill now and then.

    Parameters
    ----------
    duration_s : float
        Length in seconds.
    sr : int
        Sample rate in Hz.
    tempo_bpm : float
        Beats per minute.
    seed : int
        Seed of every random choice.
    channels : int
        1 or more; channels differ a little (the chords and melody are panned).
    level : float
        Peak amplitude of the result.

    Returns
    -------
    numpy.ndarray
        float32 ``(channels, round(duration_s * sr))``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    beat = 60.0 / tempo_bpm
    eighth = beat / 2
    kit = _drum_kit(rng, sr)
    drums = np.zeros(n)
    bass = np.zeros(n)
    harm = np.zeros((2, n))  # chords + melody, two pans
    kick_patterns = ((0, 4), (0, 3, 4), (0, 4, 6), (0, 2, 5), (0, 3, 6, 7))
    snare_patterns = ((2, 6), (2, 6, 7), (2, 5, 6), (2, 6))
    n_bars = int(np.ceil(duration_s / (4 * beat))) + 1
    for bar in range(n_bars):
        b0 = bar * 4 * beat
        chord = CHORDS[rng.integers(len(CHORDS))]
        # drums (positions in eighths)
        fill = rng.random() < 0.25
        kicks = kick_patterns[rng.integers(len(kick_patterns))]
        snares = snare_patterns[rng.integers(len(snare_patterns))]
        for e in range(8):
            at = int(round((b0 + e * eighth) * sr))
            if fill and e >= 4:
                tom = kit["toms"][rng.integers(3)]
                _add(drums, at, 0.8 * tom)
                if rng.random() < 0.5:
                    _add(drums, at + int(round(eighth / 2 * sr)), 0.6 * kit["toms"][rng.integers(3)])
                continue
            if e in kicks:
                _add(drums, at, 1.0 * kit["kick"])
            if e in snares:
                _add(drums, at, (0.5 + 0.3 * rng.random()) * kit["snare"])
            if rng.random() < 0.12:
                _add(drums, at, 0.25 * kit["openhat"])
            else:
                _add(drums, at, (0.15 + 0.15 * rng.random()) * kit["hat"])
        # chord pad: one or two hits per bar
        hits = (0,) if rng.random() < 0.5 else (0, int(rng.choice([4, 5, 6])))
        for i, h in enumerate(hits):
            start = b0 + h * eighth
            length = (8 - h) * eighth if i == len(hits) - 1 else (hits[i + 1] - h) * eighth
            m = int(length * sr)
            pad = sum(_tone(_hz(_BASE_MIDI + iv), m, sr, harmonics=(1.0, 0.3, 0.1), phase=rng.random() * 6)
                      for iv in chord) / len(chord)
            pad = pad * _decay(m, sr, 1.2 * beat) * np.minimum(1, np.arange(m) / (0.01 * sr))
            pan = rng.random()
            _add(harm, int(round(start * sr)), 0.35 * np.stack([pan * pad, (1 - pan) * pad]))
        # bass on the root: rhythm drawn per bar
        root = _hz(_BASE_MIDI - 24 + chord[0] % 12)
        bass_hits = sorted({0, *rng.choice(np.arange(1, 8), size=rng.integers(1, 4), replace=False).tolist()})
        for i, h in enumerate(bass_hits):
            nxt = bass_hits[i + 1] if i + 1 < len(bass_hits) else 8
            m = int((nxt - h) * eighth * sr)
            f = root * (2.0 if rng.random() < 0.2 else 1.0)
            tone = _tone(f, m, sr, harmonics=(1.0, 0.4, 0.2)) * _decay(m, sr, 0.5 * beat)
            _add(bass, int(round((b0 + h * eighth) * sr)), tone * np.minimum(1, np.arange(m) / (0.005 * sr)))
        # melody on eighths: chord tones mostly, passing tones, rests, held notes, vibrato
        e = 0
        while e < 8:
            dur = int(rng.choice([1, 1, 1, 2, 2, 3]))
            dur = min(dur, 8 - e)
            if rng.random() < 0.25:  # rest
                e += dur
                continue
            if rng.random() < 0.7:
                iv = chord[rng.integers(len(chord))] + 12 * int(rng.integers(0, 2))
            else:
                iv = int(rng.integers(0, 19))
            m = int(dur * eighth * sr)
            f = _hz(_BASE_MIDI + 12 + iv)
            note = _tone(f, m, sr, harmonics=(1.0, 0.6, 0.35, 0.2, 0.1), vibrato_hz=5 + 2 * rng.random(),
                         vibrato_depth=0.004 * rng.random() * (dur > 1))
            env = np.minimum(1, np.arange(m) / (0.008 * sr)) * _decay(m, sr, 0.35 + 0.3 * rng.random())
            pan = 0.3 + 0.4 * rng.random()
            _add(harm, int(round((b0 + e * eighth) * sr)), 0.3 * np.stack([pan * note * env, (1 - pan) * note * env]))
            e += dur
    mix = 0.55 * drums + 0.45 * bass
    if channels == 1:
        out = (mix + harm.sum(axis=0))[None, :]
    else:
        out = np.stack([mix + harm[k % 2] * 1.4 + 0.3 * harm[(k + 1) % 2] for k in range(channels)])
    out = out.astype(np.float64)
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (level / peak)).astype(np.float32)


def with_repeated_chorus(*, chorus_s: float = 12.0, sections=("verse", "chorus", "verse", "chorus", "outro"),
                         section_s: float = 8.0, sr: int = 22050, tempo_bpm: float = 110.0, seed: int = 0,
                         channels: int = 1) -> tuple[np.ndarray, list[float]]:
    """A song in which one chorus (``chorus_s`` seconds) appears several times, sample-identical.

    Every other section (``section_s`` seconds) is freshly drawn. Returns ``(y, chorus_starts_s)``:
    the song ``(channels, n)`` and the song times at which each copy of the chorus begins. Section
    boundaries are rounded to whole samples; the copies are exact array slices.
    """
    chorus = song(chorus_s, sr=sr, tempo_bpm=tempo_bpm, seed=seed * 1000 + 999, channels=channels)
    parts = []
    starts = []
    pos = 0
    for i, name in enumerate(sections):
        if name == "chorus":
            starts.append(pos / sr)
            piece = chorus.copy()
        else:
            piece = song(section_s, sr=sr, tempo_bpm=tempo_bpm, seed=seed * 1000 + i, channels=channels)
        parts.append(piece)
        pos += piece.shape[1]
    return np.concatenate(parts, axis=1), starts


# --------------------------------------------------------------------------------------------
# degradations (mono or (channels, n) arrays)
# --------------------------------------------------------------------------------------------


def room(y: np.ndarray, sr: int, rt60: float, seed: int = 0, *, wet: float = 1.0) -> np.ndarray:
    """Reverberate ``y``: direct path at lag 0 plus exponentially decaying noise (-60 dB at ``rt60`` s).

    ``wet`` is the energy of the reverberant tail relative to the direct path. The output has the
    length of ``y`` (the tail past the end is dropped).
    """
    rng = np.random.default_rng(seed)
    m = int(rt60 * sr)
    t = np.arange(m) / sr
    tail = rng.standard_normal(m) * np.exp(-6.91 * t / rt60)
    tail[: int(0.005 * sr)] = 0.0  # first reflections a few ms after the direct sound
    tail *= np.sqrt(wet / max(float(np.sum(tail**2)), 1e-12))
    ir = tail
    ir[0] = 1.0
    out = signal.fftconvolve(np.atleast_2d(y).astype(np.float64), ir[None, :], axes=-1)[..., : y.shape[-1]]
    return out.reshape(y.shape).astype(np.float32)


def _active_rms(y: np.ndarray, frame: int = 2048) -> float:
    x = np.atleast_2d(y).mean(axis=0).astype(np.float64)
    k = len(x) // frame
    if k == 0:
        return float(np.sqrt(np.mean(x**2)))
    e = np.sqrt((x[: k * frame].reshape(k, frame) ** 2).mean(axis=1))
    act = e[e > 0.05 * e.max()]
    return float(np.sqrt(np.mean(act**2))) if len(act) else float(np.sqrt(np.mean(x**2)))


def pink(n: int, seed: int = 0) -> np.ndarray:
    """Pink-ish (1/f power) noise of unit RMS, float64 ``(n,)``."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def noise(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``y`` plus pink-ish noise at ``snr_db`` below the RMS of its active (non-silent) part."""
    level = _active_rms(y) * 10 ** (-snr_db / 20)
    nz = pink(y.shape[-1], seed) * level
    return (y + nz).astype(np.float32)


def speech_like(n: int, sr: int, seed: int = 0, *, talkers: int = 2, level: float = 0.3) -> np.ndarray:
    """Babble that stands in for talking or counting: ``(n,)`` float32, peak about ``level``.

    Each talker says syllables (0.08-0.3 s, ~4-5 per second, with pauses between phrases); a
    syllable is voiced (harmonics of a gliding 90-250 Hz pitch through two formant band-passes) or
    unvoiced (band-passed noise), amplitude-modulated by a smooth envelope.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    for _ in range(talkers):
        f0_base = rng.uniform(90, 250)
        t = rng.uniform(0, 0.3)
        while t < n / sr:
            if rng.random() < 0.12:  # pause between phrases
                t += rng.uniform(0.3, 0.9)
                continue
            dur = rng.uniform(0.08, 0.3)
            m = int(dur * sr)
            if rng.random() < 0.75:
                f0 = f0_base * rng.uniform(0.85, 1.2)
                glide = np.linspace(1.0, rng.uniform(0.85, 1.15), m)
                ph = 2 * np.pi * np.cumsum(f0 * glide) / sr
                src = sum(np.sin(k * ph) / k for k in range(1, int(3500 / f0)))
                f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2500)
                y = np.zeros(m)
                for fc, g in ((f1, 1.0), (f2, 0.5)):
                    b, a = signal.butter(2, [0.8 * fc, 1.25 * fc], btype="bandpass", fs=sr)
                    y += g * signal.lfilter(b, a, src)
            else:
                fc = rng.uniform(2500, 6000)
                b, a = signal.butter(2, [0.7 * fc, min(1.3 * fc, 0.45 * sr)], btype="bandpass", fs=sr)
                y = 0.5 * signal.lfilter(b, a, rng.standard_normal(m))
            env = np.sin(np.pi * np.arange(m) / m) ** 2 * rng.uniform(0.4, 1.0)
            _add(out, int(t * sr), y * env)
            t += dur + rng.uniform(0.02, 0.12)
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (level / peak)).astype(np.float32)


def clip(y: np.ndarray, drive: float) -> np.ndarray:
    """Soft clipping: ``tanh(drive * y) / tanh(drive)`` (full scale stays full scale)."""
    return (np.tanh(drive * np.asarray(y, np.float64)) / np.tanh(drive)).astype(np.float32)


def speed(y: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """``y`` played ``rate`` times as fast, the pitch moving with it (soxr resampling by ``1 / rate``).

    Output sample ``k`` is input time ``k * rate / sr`` (soxr compensates its own filter delay).
    """
    if abs(rate - 1.0) < 1e-12:
        return np.asarray(y, np.float32).copy()
    x = np.asarray(y, np.float32)
    out = soxr.resample(x.T if x.ndim == 2 else x, sr * 1.0, sr / rate, quality="VHQ")
    return np.ascontiguousarray(out.T if x.ndim == 2 else out, dtype=np.float32)


def stretch(y: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """``y`` played ``rate`` times as fast with the pitch kept (ffmpeg ``atempo``, WSOLA)."""
    x = np.atleast_2d(np.asarray(y, np.float32))
    ch = x.shape[0]
    with tempfile.TemporaryDirectory(prefix="songgen-") as tmp:
        src, dst = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")
        np.ascontiguousarray(x.T, dtype="<f4").tofile(src)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
               "-f", "f32le", "-ar", str(sr), "-ac", str(ch), "-i", src,
               "-af", f"atempo={rate:.8f}", "-f", "f32le", "-ar", str(sr), "-ac", str(ch), dst]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        out = np.fromfile(dst, dtype="<f4").reshape(-1, ch).T
    return np.ascontiguousarray(out if np.asarray(y).ndim == 2 else out[0], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# class recordings with known truth
# --------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """Where the song really is in a recording made by `place` (dance seconds / song seconds)."""

    dance_start_s: float
    dance_end_s: float
    bgm_start_s: float
    rate: float

    @property
    def offset_s(self) -> float:
        """Dance time at which song time 0 lines up (`beatsync.contract.Alignment` ``offset_s``)."""
        return self.dance_start_s - self.bgm_start_s / self.rate

    @property
    def tempo_ratio(self) -> float:
        return self.rate

    def bgm_time(self, t):
        return self.bgm_start_s + (np.asarray(t) - self.dance_start_s) * self.rate


def place(song_y: np.ndarray, at_s: float, bgm_start_s: float, length_s: float, rate: float, total_s: float,
          sr: int, *, mode: str = "speed") -> tuple[np.ndarray, Truth]:
    """A mono class recording of ``total_s`` seconds with the song played from ``bgm_start_s`` at dance
    time ``at_s`` for ``length_s`` dance seconds at ``rate`` (silence elsewhere).

    ``mode`` "speed" resamples (pitch moves, sample-exact timing), "stretch" uses `stretch`
    (pitch kept). The song part is cut short where the song file ends. ``at_s`` and
    ``bgm_start_s`` are rounded to whole samples; the returned `Truth` holds the rounded values.

    Returns ``(recording (n,), truth)``.
    """
    y = np.atleast_2d(song_y).mean(axis=0)
    n = int(round(total_s * sr))
    rec = np.zeros(n, np.float32)
    i_at = int(round(at_s * sr))
    i_bgm = int(round(bgm_start_s * sr))
    src_len = int(np.ceil(length_s * rate * sr)) + int(0.2 * sr)
    src = y[i_bgm:i_bgm + src_len]
    if abs(rate - 1.0) < 1e-12:
        played = src
    elif mode == "speed":
        played = speed(src, sr, rate)
    else:
        played = stretch(src, sr, rate)
    m = int(round(length_s * sr))
    played = played[:m]
    if len(src) < src_len:  # the song ended: its last sample maps to this many dance samples
        played = played[: int(np.floor(len(src) / rate))]
    lo = max(0, i_at)
    piece = played[lo - i_at:]
    k = min(len(piece), n - lo)
    rec[lo:lo + k] = piece[:k]
    truth = Truth(dance_start_s=i_at / sr, dance_end_s=(i_at + len(played)) / sr, bgm_start_s=i_bgm / sr, rate=rate)
    return rec, truth


# --------------------------------------------------------------------------------------------
# files: a class video and its song, with the truth
# --------------------------------------------------------------------------------------------


@dataclass
class ClassMedia:
    """A song file and a class video whose sound has that song at a known dance time."""

    song_path: Path
    song: np.ndarray  # (channels, n) at song_sr: the samples written to song_path
    song_sr: int
    video_path: Path
    sound: np.ndarray  # (2, n) at video_sr: the camera's sound before encoding
    video_sr: int
    music_at_s: float  # dance time (0 = first picture) at which song time 0 is heard
    music_len_s: float  # how long it plays before the class stops it
    video_s: float
    delay_s: float  # dance time of the camera sound's sample 0


def class_sound(song: np.ndarray, *, song_sr: int, video_sr: int, music_at_s: float, music_len_s: float,
                total_s: float, seed: int) -> np.ndarray:
    """A stereo room recording at ``video_sr`` of ``song`` played from its start at ``music_at_s`` for
    ``music_len_s`` seconds, with light reverb, talking all along and a little noise (30 dB SNR)."""
    mono = soxr.resample(np.atleast_2d(song).mean(axis=0), song_sr, video_sr, quality="VHQ").astype(np.float32)
    rec, _ = place(mono, music_at_s, 0.0, music_len_s, 1.0, total_s, video_sr)
    rec = room(0.6 * rec, video_sr, 0.3, seed=seed, wet=0.3)
    talk = speech_like(len(rec), video_sr, seed=seed + 1, level=0.12)
    left = noise(rec + talk, 30.0, seed=seed + 2)
    right = noise(0.9 * rec + talk, 30.0, seed=seed + 3)
    return np.stack([left, right]).astype(np.float32)


def write_class_media(folder, *, ext: str = "mp4", song_ext: str = "wav", song_channels: int = 2,
                      song_sr: int = 44100, song_s: float = 24.0, video_s: float = 30.0, video_sr: int = 48000,
                      music_at_s: float = 5.0, music_len_s: float = 15.0, delay_s: float = 0.0,
                      seed: int = 21, tempo_bpm: float = 112.0, size=(160, 120), fps: float = 30.0,
                      gop: int | None = 15, **video_kw) -> ClassMedia:
    """Write ``song.<song_ext>`` and ``class.<ext>`` into ``folder`` (see `ClassMedia`).

    ``delay_s``: the camera's sound starts that long after its picture (mediagen ``audio_delay_s``);
    the music is still heard from dance time ``music_at_s``. Extra keywords go to
    `mediagen.write_class_video` (``vcodec``, ``acodec``, ...).
    """
    import mediagen

    folder = Path(folder)
    song_y = song(song_s, sr=song_sr, tempo_bpm=tempo_bpm, seed=seed, channels=song_channels)
    song_path = mediagen.write_song(folder / f"song.{song_ext}", song_y, sr=song_sr)
    sound = class_sound(song_y, song_sr=song_sr, video_sr=video_sr, music_at_s=music_at_s - delay_s,
                        music_len_s=music_len_s, total_s=video_s - delay_s + 1.0, seed=seed)
    video = mediagen.write_class_video(folder / f"class.{ext}", duration_s=video_s, size=size, fps=fps, gop=gop,
                                       audio=sound, sr=video_sr, audio_delay_s=delay_s, **video_kw)
    return ClassMedia(song_path, song_y, song_sr, video, sound, video_sr, music_at_s, music_len_s, video_s, delay_s)


# --------------------------------------------------------------------------------------------
# class structures: several run-throughs, dance edits, quiet passages, buried music, no music
# (each returns ``(recording (n,), truths)``: one `Truth` per stretch of song, in dance order)
# --------------------------------------------------------------------------------------------


def back_to_back(song_y: np.ndarray, sr: int, *, at_s: float, pieces, total_s: float,
                 rate: float = 1.0) -> tuple[np.ndarray, list[Truth]]:
    """A dance edit: the song pieces ``[(bgm_start_s, length_s), ...]`` played one right after the
    other from dance time ``at_s`` (no gap, no overlap: each piece starts on the sample where the
    previous one ended), at ``rate`` with the pitch moving. Silence elsewhere."""
    rec = np.zeros(int(round(total_s * sr)), np.float32)
    truths = []
    t = at_s
    for bgm_start_s, length_s in pieces:
        r, truth = place(song_y, t, bgm_start_s, length_s, rate, total_s, sr)
        rec += r
        truths.append(truth)
        t = truth.dance_end_s
    return rec, truths


def edit_cut(song_y: np.ndarray, sr: int, *, at_s: float = 2.0, first=(0.0, 15.0), then=(25.0, 40.0),
             total_s: float = 35.0) -> tuple[np.ndarray, list[Truth]]:
    """A section cut: song ``first[0]``-``first[1]`` s then, with no pause, ``then[0]``-``then[1]`` s
    (the music jumps ahead), from dance time ``at_s``. Returns ``(recording, [truth1, truth2])``."""
    return back_to_back(song_y, sr, at_s=at_s, total_s=total_s,
                        pieces=[(first[0], first[1] - first[0]), (then[0], then[1] - then[0])])


def edit_repeat(song_y: np.ndarray, sr: int, *, at_s: float = 1.0, first=(0.0, 20.0), then=(12.0, 35.0),
                total_s: float = 46.0) -> tuple[np.ndarray, list[Truth]]:
    """A repeated section: song ``first`` then, with no pause, ``then`` which starts before ``first``
    ended (the music jumps back). Returns ``(recording, [truth1, truth2])``."""
    return edit_cut(song_y, sr, at_s=at_s, first=first, then=then, total_s=total_s)


def two_speeds(song_y: np.ndarray, sr: int, *, slow_rate: float, mode: str = "speed", at_s: float = 1.5,
               bgm_start_s: float = 0.0, slow_len_s: float = 20.0, gap_s: float = 5.0, fast_len_s: float = 25.0,
               tail_s: float = 2.0, talk_seed: int = 0, talk_level: float = 0.3) -> tuple[np.ndarray, list[Truth]]:
    """A slow run-through then full speed: the song from ``bgm_start_s`` at ``slow_rate`` (``mode``
    "speed": pitch moved, "stretch": pitch kept) for ``slow_len_s`` dance seconds from ``at_s``, then
    ``gap_s`` seconds of talking (`speech_like`), then the song again from ``bgm_start_s`` at 1.0x for
    ``fast_len_s`` seconds, then ``tail_s`` of silence. Returns ``(recording, [slow, full])``."""
    total_s = at_s + slow_len_s + gap_s + fast_len_s + tail_s
    r1, t1 = place(song_y, at_s, bgm_start_s, slow_len_s, slow_rate, total_s, sr, mode=mode)
    r2, t2 = place(song_y, t1.dance_end_s + gap_s, bgm_start_s, fast_len_s, 1.0, total_s, sr)
    rec = r1 + r2
    a = int(round(t1.dance_end_s * sr))
    b = int(round(t2.dance_start_s * sr))
    rec[a:b] += speech_like(b - a, sr, seed=talk_seed, level=talk_level)
    return rec, [t1, t2]


def quiet_passage(song_y: np.ndarray, sr: int, start_s: float, end_s: float, *, gain: float = 0.03,
                  ramp_s: float = 0.05) -> np.ndarray:
    """A copy of the song with ``start_s``-``end_s`` turned down to ``gain`` (a breakdown), through
    raised-cosine ramps of ``ramp_s`` inside the passage (no artificial clicks at its edges)."""
    y = np.array(song_y, dtype=np.float32, copy=True)
    a, b = int(round(start_s * sr)), int(round(end_s * sr))
    r = max(1, int(round(ramp_s * sr)))
    g = np.full(b - a, gain, np.float64)
    fade = gain + (1 - gain) * 0.5 * (1 + np.cos(np.pi * np.arange(r) / r))  # 1 -> gain
    g[:r] = fade
    g[-r:] = fade[::-1]
    y[..., a:b] *= g.astype(np.float32)
    return y


def buried(song_y: np.ndarray, sr: int, *, at_s: float, bgm_start_s: float, length_s: float, total_s: float,
           snr_db: float, seed: int = 0, talkers: int = 3) -> tuple[np.ndarray, list[Truth]]:
    """``length_s`` seconds of the song (from ``bgm_start_s``, at 1.0x, from dance time ``at_s``) inside
    ``total_s`` seconds of babble (`speech_like`, ``talkers``) plus pink noise of the same RMS, the
    music ``snr_db`` below that background (RMS over the span where the music plays).
    Returns ``(recording, [truth])``."""
    music, truth = place(song_y, at_s, bgm_start_s, length_s, 1.0, total_s, sr)
    n = len(music)
    talk = speech_like(n, sr, seed=seed, talkers=talkers, level=0.3).astype(np.float64)
    talk_rms = float(np.sqrt(np.mean(talk**2))) or 1.0
    back = talk + pink(n, seed=seed + 1) * talk_rms
    a, b = int(round(truth.dance_start_s * sr)), int(round(truth.dance_end_s * sr))
    music_rms = float(np.sqrt(np.mean(music[a:b].astype(np.float64) ** 2)))
    back_rms = float(np.sqrt(np.mean(back[a:b] ** 2)))
    back *= music_rms / back_rms * 10 ** (-snr_db / 20)
    out = music + back
    out *= 0.9 / float(np.max(np.abs(out)))  # the phone's gain: full scale, no clipping
    return out.astype(np.float32), [truth]


def clap_train(n: int, sr: int, *, tempo_bpm: float, start_s: float = 0.5, seed: int = 0,
               level: float = 0.5) -> np.ndarray:
    """Hand claps (band-passed noise bursts, ~10 ms decay) exactly on every beat at ``tempo_bpm``
    from ``start_s``: a metronome-steady clapping teacher. ``(n,)`` float32."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    b, a = signal.butter(2, [800, 3000], btype="bandpass", fs=sr)
    m = int(0.08 * sr)
    t = start_s
    while t < n / sr:
        burst = signal.lfilter(b, a, rng.standard_normal(m)) * _decay(m, sr, 0.012)
        _add(out, int(round(t * sr)), rng.uniform(0.7, 1.0) * burst)
        t += 60.0 / tempo_bpm
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (level / peak)).astype(np.float32)


def footsteps(n: int, sr: int, *, tempo_bpm: float, seed: int = 0, level: float = 0.5,
              jitter_s: float = 0.03, p: float = 0.7) -> np.ndarray:
    """Dancers' footsteps: low thumps (a 50-90 Hz sine and a little low-passed noise, ~70 ms decay)
    on a random ``p`` of the beats at ``tempo_bpm``, each ``jitter_s`` (s.d.) off the beat. ``(n,)``."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    b, a = signal.butter(2, 200, btype="lowpass", fs=sr)
    m = int(0.3 * sr)
    tm = np.arange(m) / sr
    t = rng.uniform(0, 60.0 / tempo_bpm)
    while t < n / sr:
        if rng.random() < p:
            f = rng.uniform(50, 90)
            thump = (np.sin(2 * np.pi * f * tm) + 0.5 * signal.lfilter(b, a, rng.standard_normal(m))) \
                * _decay(m, sr, 0.07)
            _add(out, int(round((t + rng.normal(0, jitter_s)) * sr)), rng.uniform(0.5, 1.0) * thump)
        t += 60.0 / tempo_bpm
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (level / peak)).astype(np.float32)


def songless_rhythm(total_s: float, sr: int, *, tempo_bpm: float, seed: int = 0) -> tuple[np.ndarray, list[Truth]]:
    """Rhythm with no music: claps on the beat (`clap_train`), a teacher counting (one talker of
    `speech_like`) and footsteps (`footsteps`), all at ``tempo_bpm``, with a little room noise.
    Returns ``(recording, [])``: the song is not in it."""
    n = int(round(total_s * sr))
    y = (clap_train(n, sr, tempo_bpm=tempo_bpm, seed=seed, level=0.5)
         + speech_like(n, sr, seed=seed + 1, talkers=1, level=0.4)
         + footsteps(n, sr, tempo_bpm=tempo_bpm, seed=seed + 2, level=0.4))
    return noise(y, 30.0, seed=seed + 3), []


__all__ += ["back_to_back", "buried", "clap_train", "edit_cut", "edit_repeat", "footsteps", "quiet_passage",
            "songless_rhythm", "two_speeds"]

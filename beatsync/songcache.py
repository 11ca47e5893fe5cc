"""The song's analysis, computed once and reused by every job with the same song file.

A class's takes are matched against one song: a batch of them (or any jobs whose songs are the same
bytes) needs the song decoded and analysed once. `SongCache.get` gives a job the song as the pipeline
needs it (`AnalysedSong`: the decoded sound for rendering, its mono mix at the analysis rate, and what
`beatsync.align.lines.Signals` computes from the song alone, `SongSide`), from the cache or by
computing it and keeping it there.

Content-addressed: an entry's key (`song_key`) is the SHA-256 of the song file's bytes, with the
analysis version in front (`ANALYSIS_VERSION`, and the analysis rate and envelope shape: a change to
any of them makes new keys, and the old entries expire unused). Two uploads of the same file share
an entry. Layout, under the data directory::

    songs/<key>/meta.json        what the entry holds (key, version, sample rate, channels, ...)
    songs/<key>/song.npy         the decoded song, (samples, channels) float32 at its own rate
    songs/<key>/bgm.npy          its mono mix at ANALYSIS_SR
    songs/<key>/envelope.npy     its fine onset envelopes; beats.npy its beats (seconds)
    songs/<key>/features.<name>.npy  its frame features (`beatsync.analysis.Features`)
    songs/<key>/uses             one byte per job that reused it
    songs/<key>.lock             the entry's lock (fcntl.flock)

Guarantees:

* An entry appears whole or not at all: it is written in a temporary folder and renamed into place,
  and never changed after that (but for ``uses`` and its modification time, the last use). A reader
  never sees a partial entry; one that does not read back (cut short by a crash of the disk,
  damaged, of another version) is computed again, never a job's failure. Nor is a cache that cannot
  be written (a full disk): the job goes on with what it computed.
* Exactly one job computes a missing entry: the jobs that want it at once (in any processes on any
  machines sharing the folder, where the file system honours ``flock``) take its lock in turn; the
  first computes it, the others find it done and reuse it. If the computing job dies, the kernel
  releases its lock and the next computes. A job waits at most ``lock_wait_s`` (a holder that hangs),
  then computes the song itself without keeping it.
* The arrays are memory-mapped, not read: the song to render is mapped read-only (its pages are
  given back after use, `beatsync.pipeline.release_memory`), the analysis arrays copy-on-write (a
  write, which the numerics never make, would stay in the job's memory, never reach the file).
* Each use touches the entry; `expire` (called by the workers' maintenance with the task TTL)
  removes entries unused for longer, and what crashed writers left behind.

Free of Streamlit and of ffmpeg: what to compute is the caller's (`beatsync.pipeline`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from beatsync.align.lines import ENV_BANDS, FINE_HOP, SongSide
from beatsync.analysis import ANALYSIS_SR, Features
from beatsync.contract import SongAnalysis

log = logging.getLogger("beatsync.songcache")

#: the version of what an entry holds: raise it whenever the song's analysis changes (the features,
#: the envelopes, the beats, the decoding), so that no job reuses an entry made the old way
ANALYSIS_VERSION = 1
#: the cache's folder under the data directory
DIR = "songs"
#: longest wait for another job computing the same song (s); then the job computes it itself
LOCK_WAIT_S = 600.0
#: how often a waiting job tries the lock again (s)
LOCK_POLL_S = 0.05
#: what a crashed writer left (temporary and condemned folders) is removed after this long (s)
LEFTOVER_S = 3600.0

_KEY = re.compile(r"[0-9a-f]{64}")
_FEATURES = tuple(f.name for f in fields(Features) if f.name != "frame_rate")
_META = "meta.json"
_USES = "uses"


def folder(data_dir: str | os.PathLike) -> Path:
    """The song cache of a data directory."""
    return Path(data_dir) / DIR


def song_key(path: str | os.PathLike, *, version: int = ANALYSIS_VERSION) -> str:
    """The entry key of a song file: SHA-256 (hex) of the analysis version and the file's bytes."""
    h = hashlib.sha256(f"beatsync song analysis v{version} sr{ANALYSIS_SR} hop{FINE_HOP} bands{ENV_BANDS}\n"
                       .encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class AnalysedSong:
    """A song as a job needs it: ``song`` (channels, n) float32 at ``sr`` (what gets rendered), ``bgm_y``
    its mono mix at ANALYSIS_SR, ``side`` what the analysis computes from it alone. ``mapped``: the
    memory map under ``song`` when it comes from the cache (read-only), else None."""

    song: np.ndarray
    sr: int
    bgm_y: np.ndarray
    side: SongSide
    mapped: np.memmap | None = None


class SongCache:
    """The entries under ``root`` (`folder` of a data directory). ``version``: the analysis version the
    keys are made with (`ANALYSIS_VERSION`)."""

    def __init__(self, root: str | os.PathLike, *, version: int = ANALYSIS_VERSION,
                 lock_wait_s: float = LOCK_WAIT_S):
        self.root = Path(root)
        self.version = version
        self.lock_wait_s = lock_wait_s

    def key(self, path: str | os.PathLike) -> str:
        return song_key(path, version=self.version)

    def entry(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a song key: {key[:80]!r}")
        return self.root / key

    # ------------------------------------------------------------------ the job's side

    def get(self, path: str | os.PathLike, compute: Callable[[], AnalysedSong]) -> tuple[AnalysedSong, SongAnalysis]:
        """The song of ``path`` from the cache, or ``compute()``'d and kept there (by exactly one of
        the jobs asking at once: the others wait and reuse it); with how it was got (`SongAnalysis`:
        the key, whether it was reused, the seconds it took, waiting included). An error of
        ``compute`` is raised as it is (nothing is kept)."""
        t0 = time.perf_counter()
        key = self.key(path)
        got = self.load(key)
        reused = got is not None
        if got is None:
            fd = self._lock(key)
            try:
                got = self.load(key)  # made by another job while this one waited
                reused = got is not None
                if got is None:
                    got = compute()
                    if fd is not None:  # (without the lock, another job may be writing it)
                        got = self._store(key, got)
            finally:
                if fd is not None:
                    os.close(fd)  # (releases the lock)
        self._used(key, reused=reused)
        return got, SongAnalysis(key=key, reused=reused, seconds=round(time.perf_counter() - t0, 3))

    def lookup(self, path: str | os.PathLike) -> tuple[AnalysedSong, SongAnalysis] | None:
        """The song of ``path`` if the cache has it (never computed, never waited for)."""
        t0 = time.perf_counter()
        key = self.key(path)
        got = self.load(key)
        if got is None:
            return None
        self._used(key, reused=True)
        return got, SongAnalysis(key=key, reused=True, seconds=round(time.perf_counter() - t0, 3))

    def load(self, key: str) -> AnalysedSong | None:
        """The entry ``key`` mapped from its files; None when there is none, or it does not read back
        whole (a partial or damaged entry, another version)."""
        d = self.entry(key)
        try:
            meta = json.loads((d / _META).read_text())
            if meta.get("key") != key or meta.get("version") != self.version:
                raise ValueError("another entry's meta")
            channels, n, sr = int(meta["channels"]), int(meta["samples"]), int(meta["sample_rate"])
            rows = _load(d / "song.npy", "r", (n, channels))
            bgm = _load(d / "bgm.npy", "c", (int(meta["bgm_samples"]),))
            env = _load(d / "envelope.npy", "c", (ENV_BANDS, int(meta["envelope_frames"])))
            beats = _load(d / "beats.npy", "c", (int(meta["beats"]),), np.float64)
            feats = {name: _load(d / f"features.{name}.npy", "c", None) for name in _FEATURES
                     if name in meta["features"]}
            frames = int(meta["feature_frames"])
            if any(a.shape[-1] != frames for a in feats.values()) or len(feats) != len(meta["features"]):
                raise ValueError("features of different lengths")
            side = SongSide(features=Features(frame_rate=float(meta["frame_rate"]), **feats), envelope=env,
                            tempo_bpm=float(meta["tempo_bpm"]), beats_s=beats)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
            if d.exists():
                log.warning("song cache entry %s does not read back (%s): it is computed again", key[:12], e)
            return None
        return AnalysedSong(song=rows.T, sr=sr, bgm_y=bgm, side=side, mapped=rows)

    def _store(self, key: str, song: AnalysedSong) -> AnalysedSong:
        """Keep ``song`` as the entry ``key`` (the caller holds its lock) and return it mapped from
        there; ``song`` itself when it cannot be written (the job goes on without the cache)."""
        final = self.entry(key)
        tmp = self.root / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            side, f = song.side, song.side.features
            np.save(tmp / "song.npy", np.ascontiguousarray(song.song.T))  # (the decoder's interleaved samples)
            np.save(tmp / "bgm.npy", np.asarray(song.bgm_y, np.float32))
            np.save(tmp / "envelope.npy", side.envelope)
            np.save(tmp / "beats.npy", np.asarray(side.beats_s, np.float64))
            names = [name for name in _FEATURES if getattr(f, name) is not None]
            for name in names:
                np.save(tmp / f"features.{name}.npy", getattr(f, name))
            meta = {"key": key, "version": self.version, "sample_rate": int(song.sr),
                    "channels": int(song.song.shape[0]), "samples": int(song.song.shape[1]),
                    "duration_s": round(song.song.shape[1] / song.sr, 3), "analysis_sr": ANALYSIS_SR,
                    "bgm_samples": len(song.bgm_y), "envelope_frames": int(side.envelope.shape[1]),
                    "feature_frames": int(f.n_frames), "frame_rate": f.frame_rate, "features": names,
                    "tempo_bpm": side.tempo_bpm, "beats": len(side.beats_s), "created": time.time()}
            (tmp / _META).write_text(json.dumps(meta))
            if final.exists():  # one that does not read back (`load` said so under this lock): replace it
                _remove(final, self.root)
            os.rename(tmp, final)
        except OSError as e:
            log.warning("song cache: could not keep %s (%s); the job goes on without it", key[:12], e)
            shutil.rmtree(tmp, ignore_errors=True)
            return song
        return self.load(key) or song

    def _used(self, key: str, *, reused: bool) -> None:
        """Touch the entry (its last use, for `expire`) and count a reuse; never the job's failure."""
        d = self.entry(key)
        with contextlib.suppress(OSError):
            if reused:
                with open(d / _USES, "ab") as f:
                    f.write(b".")
            os.utime(d)

    def _lock(self, key: str) -> int | None:
        """A descriptor holding the entry's lock, or None after waiting ``lock_wait_s`` in vain (or when
        the folder cannot be written: then nothing is kept either)."""
        path = self.root / f"{key}.lock"
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                log.warning("song cache: no lock for %s (%s)", key[:12], e)
                return None
            if not _flock(fd, deadline):
                os.close(fd)
                log.warning("song cache: waited %.0f s for %s in vain; computing it here", self.lock_wait_s,
                            key[:12])
                return None
            try:  # the lock file may have been removed (`expire`) while this job waited: lock the new one
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    # ------------------------------------------------------------------ looking in

    def entries(self) -> list[str]:
        """The keys of the entries there are."""
        try:
            return sorted(d.name for d in self.root.iterdir() if _KEY.fullmatch(d.name) and d.is_dir())
        except FileNotFoundError:
            return []

    def info(self, key: str) -> dict | None:
        """An entry's meta, with ``uses`` (the jobs that reused it) and ``last_used`` (epoch s)."""
        d = self.entry(key)
        try:
            meta = json.loads((d / _META).read_text())
            uses = (d / _USES).stat().st_size if (d / _USES).exists() else 0
            return {**meta, "uses": uses, "last_used": d.stat().st_mtime}
        except (OSError, ValueError):
            return None


def _flock(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_S)


def _load(path: Path, mode: str, shape: tuple | None, dtype=np.float32) -> np.memmap:
    """An array file mapped (``mode`` "r": read-only, "c": copy-on-write), checked against what the
    entry's meta says (np.load itself refuses a file shorter than its header)."""
    a = np.load(path, mmap_mode=mode, allow_pickle=False)
    if a.dtype != dtype or (shape is not None and a.shape != shape):
        raise ValueError(f"{path.name}: {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a


def _remove(d: Path, root: Path) -> None:
    """Remove an entry folder: renamed out of the way first (at once, whole), then deleted."""
    trash = root / f".trash-{d.name[:16]}-{uuid.uuid4().hex[:8]}"
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


def expire(root: str | os.PathLike, *, before: float, now: float | None = None) -> list[str]:
    """Remove the entries of the cache at ``root`` last used before ``before`` (epoch s), with their
    locks (an entry some job is computing or waiting for is left), and what crashed writers left
    (temporary folders) `LEFTOVER_S` after; returns the keys removed."""
    root = Path(root)
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return removed
    for name in names:
        p = root / name
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        if name.startswith((".tmp-", ".trash-")):
            if mtime < now - LEFTOVER_S:
                shutil.rmtree(p, ignore_errors=True)
            continue
        key = name[:-5] if name.endswith(".lock") else name
        if not _KEY.fullmatch(key) or mtime >= before:
            continue
        if name.endswith(".lock") and (root / key).exists():
            continue  # (goes with its entry)
        lock = root / f"{key}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a job is computing it, or waiting for it
            entry = root / key
            with contextlib.suppress(OSError):
                if entry.exists():
                    if entry.stat().st_mtime >= before:  # used meanwhile
                        continue
                    _remove(entry, root)
                    removed.append(key)
                lock.unlink()
        finally:
            os.close(fd)
    return removed

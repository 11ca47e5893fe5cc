"""The song's analysis, computed once and reused by every job with the same song file.

A class's takes are matched against one song: a batch of them (or any jobs whose songs are the same
bytes) needs the song decoded and analysed once. `SongCache.get` gives a job the song as the pipeline
needs it (`AnalysedSong`: the decoded sound for rendering, its mono mix at the analysis rate, and what
`beatsync.align.lines.Signals` computes from the song alone, `SongSide`), from the cache or by
computing it and keeping it there.

Content-addressed: an entry's key (`song_key`) is the SHA-256 of the song file's bytes, with the
analysis version in front (`ANALYSIS_VERSION`, and the analysis rate and envelope shape: a change to
any of them makes new keys, and the old entries expire unused). Two uploads of the same file share
an entry. An entry is a folder of `beatsync.cachedir` (which gives the guarantees below), under the
data directory's ``cache/songs/``::

    <key>/meta.json          what it holds (key, version, sample rate, channels, samples, duration, ...)
    <key>/song.npy           the decoded song, (samples, channels) float32 at its own rate
    <key>/bgm.npy            its mono mix at ANALYSIS_SR
    <key>/envelope.npy       its fine onset envelopes; beats.npy its beats (seconds)
    <key>/features.<name>.npy  its frame features (`beatsync.analysis.Features`)

Guarantees:

* An entry appears whole or not at all (written in a temporary folder, renamed into place) and is
  never changed after that. One that does not read back (damaged, of another version) is computed
  again, never a job's failure; nor is a cache that cannot be written (a full disk): the job goes
  on with what it computed.
* Exactly one job computes a missing entry: the jobs that want it at once (in any processes on any
  machines sharing the folder, where the file system honours ``flock``) take its lock in turn; the
  first computes it, the others find it made and reuse it. If the computing job dies, the kernel
  releases its lock and the next computes. A job waits at most ``lock_wait_s`` (a holder that hangs),
  then computes the song itself without keeping it.
* The arrays are memory-mapped, not read: the song to render read-only (its pages are given back
  after use, `beatsync.pipeline.release_memory`), the analysis arrays copy-on-write (a write, which
  the numerics never make, would stay in the job's memory, never reach the file).
* Each use touches the entry; the workers' maintenance removes entries unused for longer than the
  task TTL (`beatsync.cachedir.expire_all`).

Free of Streamlit and of ffmpeg: what to compute is the caller's (`beatsync.pipeline`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from beatsync.align.lines import ENV_BANDS, FINE_HOP, SongSide
from beatsync.analysis import ANALYSIS_SR, Features
from beatsync.cachedir import CacheDir, caches_root
from beatsync.contract import SongAnalysis

log = logging.getLogger("beatsync.songcache")

#: the version of what an entry holds: raise it whenever the song's analysis changes (the features,
#: the envelopes, the beats, the decoding), so that no job reuses an entry made the old way
ANALYSIS_VERSION = 1
#: the cache's folder under the caches of the data directory
NAME = "songs"
#: longest wait for another job computing the same song (s); then the job computes it itself
LOCK_WAIT_S = 600.0

_FEATURES = tuple(f.name for f in fields(Features) if f.name != "frame_rate")


def folder(data_dir: str | os.PathLike) -> Path:
    """The song cache of a data directory."""
    return caches_root(data_dir) / NAME


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
    """The song entries under ``root`` (`folder` of a data directory). ``version``: the analysis version
    the keys are made with (`ANALYSIS_VERSION`)."""

    def __init__(self, root: str | os.PathLike, *, version: int = ANALYSIS_VERSION,
                 lock_wait_s: float = LOCK_WAIT_S):
        self.dir = CacheDir(root, lock_wait_s=lock_wait_s)
        self.root = self.dir.root
        self.version = version

    def key(self, path: str | os.PathLike) -> str:
        return song_key(path, version=self.version)

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
            fd = self.dir.lock(key)
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
        self.dir.touch(key, reused=reused)
        return got, SongAnalysis(key=key, reused=reused, seconds=round(time.perf_counter() - t0, 3))

    def lookup(self, path: str | os.PathLike) -> tuple[AnalysedSong, SongAnalysis] | None:
        """The song of ``path`` if the cache has it (never computed, never waited for)."""
        t0 = time.perf_counter()
        key = self.key(path)
        got = self.load(key)
        if got is None:
            return None
        self.dir.touch(key, reused=True)
        return got, SongAnalysis(key=key, reused=True, seconds=round(time.perf_counter() - t0, 3))

    def load(self, key: str) -> AnalysedSong | None:
        """The entry ``key`` mapped from its files; None when there is none, or it does not read back
        whole (a damaged entry, another version)."""
        d = self.dir.entry(key)
        try:
            meta = self.dir.meta(key)
            if meta.get("version") != self.version:
                raise ValueError(f"version {meta.get('version')}")
            channels, n, sr = int(meta["channels"]), int(meta["samples"]), int(meta["sample_rate"])
            rows = _load(d / "song.npy", "r", (n, channels))
            bgm = _load(d / "bgm.npy", "c", (int(meta["bgm_samples"]),))
            env = _load(d / "envelope.npy", "c", (ENV_BANDS, int(meta["envelope_frames"])))
            beats = _load(d / "beats.npy", "c", (int(meta["beats"]),), np.float64)
            names = list(meta["features"])
            if not set(names) <= set(_FEATURES):
                raise ValueError(f"features {names}")
            feats = {name: _load(d / f"features.{name}.npy", "c", None) for name in names}
            if any(a.shape[-1] != int(meta["feature_frames"]) for a in feats.values()):
                raise ValueError("features of different lengths")
            side = SongSide(features=Features(frame_rate=float(meta["frame_rate"]), **feats), envelope=env,
                            tempo_bpm=float(meta["tempo_bpm"]), beats_s=beats)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
            log.warning("song cache entry %s does not read back (%s): it is computed again", key[:12], e)
            return None
        return AnalysedSong(song=rows.T, sr=sr, bgm_y=bgm, side=side, mapped=rows)

    def _store(self, key: str, song: AnalysedSong) -> AnalysedSong:
        """Keep ``song`` as the entry ``key`` (the caller holds its lock) and return it mapped from
        there; ``song`` itself when it cannot be written (the job goes on without the cache)."""
        side, f = song.side, song.side.features
        names = [name for name in _FEATURES if getattr(f, name) is not None]

        def fill(tmp: Path) -> None:
            np.save(tmp / "song.npy", np.ascontiguousarray(song.song.T))  # (the decoder's interleaved samples)
            np.save(tmp / "bgm.npy", np.asarray(song.bgm_y, np.float32))
            np.save(tmp / "envelope.npy", side.envelope)
            np.save(tmp / "beats.npy", np.asarray(side.beats_s, np.float64))
            for name in names:
                np.save(tmp / f"features.{name}.npy", getattr(f, name))

        meta = {"version": self.version, "sample_rate": int(song.sr), "channels": int(song.song.shape[0]),
                "samples": int(song.song.shape[1]), "duration_s": round(song.song.shape[1] / song.sr, 3),
                "analysis_sr": ANALYSIS_SR, "bgm_samples": len(song.bgm_y),
                "envelope_frames": int(side.envelope.shape[1]), "feature_frames": int(f.n_frames),
                "frame_rate": f.frame_rate, "features": names, "tempo_bpm": side.tempo_bpm,
                "beats": len(side.beats_s)}
        if not self.dir.publish(key, fill, meta):
            return song
        return self.load(key) or song

    def entries(self) -> list[str]:
        """The keys of the songs there are."""
        return self.dir.entries()

    def info(self, key: str) -> dict | None:
        """A song's meta, with ``uses`` (the jobs that reused it) and ``last_used`` (epoch s)."""
        return self.dir.info(key)


def _load(path: Path, mode: str, shape: tuple | None, dtype=np.float32) -> np.memmap:
    """An array file mapped (``mode`` "r": read-only, "c": copy-on-write), checked against what the
    entry's meta says (np.load itself refuses a file shorter than its header)."""
    a = np.load(path, mmap_mode=mode, allow_pickle=False)
    if a.dtype != dtype or (shape is not None and a.shape != shape):
        raise ValueError(f"{path.name}: {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a

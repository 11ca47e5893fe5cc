"""A folder of content-addressed entries that jobs share: made whole or not at all, by one job at a
time, touched on use, expired when unused (the mechanics of `beatsync.songcache`; standard library only,
so that the workers' maintenance can expire entries without the numerics).

Layout, under the data directory::

    cache/<name>/<key>/          an entry (``key``: 64 hex digits, a SHA-256), never changed once there
    cache/<name>/<key>/meta.json what the entry holds (its owner's business)
    cache/<name>/<key>/uses      one byte per reuse
    cache/<name>/<key>.lock      the entry's lock (fcntl.flock)
    cache/<name>/.tmp-*          an entry being written (renamed into place whole)

Guarantees (`CacheDir`):

* `publish` writes an entry in a temporary folder and renames it into place: a reader sees it whole
  or not at all. A crash leaves a temporary folder, which `expire` removes later.
* `lock` takes an entry's lock, waiting at most ``lock_wait_s``: exactly one process (of any on any
  machine sharing the folder, where the file system honours ``flock``) holds it; a process that dies
  holding it releases it (the kernel does). The lock file is the one at the path: when `expire`
  removed it while a process waited, the process locks the new one.
* `touch` marks an entry used (its modification time); `expire` removes entries unused since a
  time, skipping any whose lock is held (a process computing or waiting for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("beatsync.cachedir")

#: the caches' folder under the data directory (one folder per kind of entry in it)
ROOT = "cache"
#: what an entry's key looks like (a SHA-256 in hex)
KEY = re.compile(r"[0-9a-f]{64}")
#: an entry's description (written by its owner)
META = "meta.json"
#: what a crashed writer left (temporary and condemned folders) is removed after this long (s)
LEFTOVER_S = 3600.0
#: how often a waiting process tries the lock again (s)
LOCK_POLL_S = 0.05
_USES = "uses"


def caches_root(data_dir: str | os.PathLike) -> Path:
    """The folder of a data directory's caches."""
    return Path(data_dir) / ROOT


class CacheDir:
    """The entries under ``root``; a process waits at most ``lock_wait_s`` for an entry's lock."""

    def __init__(self, root: str | os.PathLike, *, lock_wait_s: float):
        self.root = Path(root)
        self.lock_wait_s = lock_wait_s

    def entry(self, key: str) -> Path:
        if not KEY.fullmatch(key):
            raise ValueError(f"not an entry key: {key[:80]!r}")
        return self.root / key

    def lock(self, key: str) -> int | None:
        """A descriptor holding the entry's lock (close it to release), or None after waiting
        ``lock_wait_s`` in vain, or when the folder cannot be written."""
        path = self.root / f"{self.entry(key).name}.lock"
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                log.warning("cache %s: no lock for %s (%s)", self.root.name, key[:12], e)
                return None
            if not _flock(fd, deadline):
                os.close(fd)
                log.warning("cache %s: waited %.0f s for %s in vain", self.root.name, self.lock_wait_s, key[:12])
                return None
            try:  # the lock file may have been removed (`expire`) while this one waited: lock the new one
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def publish(self, key: str, fill: Callable[[Path], None], meta: dict) -> bool:
        """Make the entry ``key`` (the caller holds its lock): ``fill(folder)`` writes its files into a
        temporary folder, ``meta`` (JSON) is written last, and the folder is renamed into place, replacing
        an entry there (one that did not read back). False when it cannot be written (a full disk:
        nothing is left of it)."""
        final = self.entry(key)
        tmp = self.root / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            fill(tmp)
            (tmp / META).write_text(json.dumps({"key": key, **meta, "created": time.time()}))
            if final.exists():
                _remove(final, self.root)
            os.rename(tmp, final)
        except OSError as e:
            log.warning("cache %s: could not keep %s (%s)", self.root.name, key[:12], e)
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        return True

    def meta(self, key: str) -> dict:
        """An entry's meta (FileNotFoundError: no such entry; ValueError: not its own)."""
        meta = json.loads((self.entry(key) / META).read_text())
        if not isinstance(meta, dict) or meta.get("key") != key:
            raise ValueError("another entry's meta")
        return meta

    def touch(self, key: str, *, reused: bool) -> None:
        """Mark the entry used now (for `expire`), counting a reuse; never an error."""
        d = self.entry(key)
        with contextlib.suppress(OSError):
            if reused:
                with open(d / _USES, "ab") as f:
                    f.write(b".")
            os.utime(d)

    def entries(self) -> list[str]:
        """The keys of the entries there are."""
        try:
            return sorted(name for name in os.listdir(self.root) if KEY.fullmatch(name))
        except FileNotFoundError:
            return []

    def info(self, key: str) -> dict | None:
        """An entry's meta with ``uses`` (how many times it was reused) and ``last_used`` (epoch s)."""
        d = self.entry(key)
        try:
            meta = self.meta(key)
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


def _remove(d: Path, root: Path) -> None:
    """Remove an entry folder: renamed out of the way first (at once, whole), then deleted."""
    trash = root / f".trash-{d.name[:16]}-{uuid.uuid4().hex[:8]}"
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


def expire(root: str | os.PathLike, *, before: float, now: float | None = None) -> list[str]:
    """Remove the entries under ``root`` last used before ``before`` (epoch s) with their locks (not one
    whose lock is held: a process computing or waiting for it), and what crashed writers left
    `LEFTOVER_S` ago; returns the keys removed."""
    root = Path(root)
    now = time.time() if now is None else now
    removed: list[str] = []
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
        key = name.removesuffix(".lock")
        if not KEY.fullmatch(key) or mtime >= before or (name != key and (root / key).exists()):
            continue  # (a lock goes with its entry)
        lock = root / f"{key}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
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


def expire_all(data_dir: str | os.PathLike, *, before: float) -> list[str]:
    """`expire` every cache of a data directory; returns the keys removed."""
    root = caches_root(data_dir)
    try:
        kinds = [d for d in root.iterdir() if d.is_dir()]
    except FileNotFoundError:
        return []
    return [key for d in kinds for key in expire(d, before=before)]

"""The song cache (`beatsync.songcache`, `beatsync.cachedir`): the song decoded and analysed once, kept
content-addressed under the data directory and reused by every job with the same song file.

Real media only (songs and class videos written with ffmpeg by the test generators) and real
processes: the cache itself (hit, miss, a damaged entry, a version change, a failing analysis, a
full wait), several processes asking for one song at once (exactly one computes, the others reuse
it; a holder that dies hands the work over), the pipeline with and without the cache (the same
alignments), three real jobs with one song run by the local executor's worker threads (one
analysis, counted in their statuses), and the workers' maintenance expiring what is unused.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mediagen
import numpy as np
import pytest
import songgen as sg

from beatsync import cachedir, pipeline, songcache
from beatsync.errors import MediaError
from beatsync.songcache import SongCache

SR = 44100


@pytest.fixture(scope="module")
def song_file(tmp_path_factory) -> Path:
    """8 s of a stereo 44.1-kHz song (wav)."""
    folder = tmp_path_factory.mktemp("song")
    return mediagen.write_song(folder / "song.wav", sg.song(8.0, sr=SR, tempo_bpm=104.0, seed=5, channels=2), sr=SR)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> sg.ClassMedia:
    """A 14-s class video (song heard at 2.5-10.5 s) and its 12-s song."""
    return sg.write_class_media(tmp_path_factory.mktemp("class"), video_s=14.0, song_s=12.0, music_at_s=2.5,
                                music_len_s=8.0, size=(128, 96))


def read(path) -> songcache.AnalysedSong:
    """What a job computes of its song (the cache's ``compute``)."""
    return pipeline.read_song(str(path))


def same_song(a: songcache.AnalysedSong, b: songcache.AnalysedSong) -> None:
    """Bit for bit the same song and analysis."""
    assert a.sr == b.sr
    assert np.array_equal(a.song, b.song) and np.array_equal(a.bgm_y, b.bgm_y)
    fa, fb = a.side.features, b.side.features
    for name in ("onset", "flux", "chroma", "mfcc", "logmel"):
        assert np.array_equal(getattr(fa, name), getattr(fb, name)), name
    assert fa.frame_rate == fb.frame_rate
    assert np.array_equal(a.side.envelope, b.side.envelope)
    assert a.side.tempo_bpm == b.side.tempo_bpm and np.array_equal(a.side.beats_s, b.side.beats_s)


# ----------------------------------------------------------------------------- the cache


def test_a_miss_computes_and_keeps_then_a_hit_maps_the_same_numbers(tmp_path, song_file):
    cache = SongCache(tmp_path / "songs")
    calls = []

    def compute():
        calls.append(1)
        return read(song_file)

    first, how = cache.get(song_file, compute)
    assert how.reused is False and how.key == songcache.song_key(song_file) and len(how.key) == 64
    again, how2 = cache.get(song_file, compute)
    assert how2.reused is True and how2.key == how.key and len(calls) == 1
    fresh = read(song_file)
    same_song(first, fresh)
    same_song(again, fresh)
    # the song to render is mapped read-only from the entry, the rest copy-on-write (never written back)
    assert isinstance(again.mapped, np.memmap) and not again.song.flags.writeable
    assert np.shares_memory(again.song, again.mapped)
    again.bgm_y[:10] = 1.0  # a write stays in this process
    assert not np.any(cache.load(how.key).bgm_y[:10] == 1.0)
    info = cache.info(how.key)
    assert info["sample_rate"] == SR and info["channels"] == 2 and info["duration_s"] == 8.0
    assert info["version"] == songcache.ANALYSIS_VERSION and info["uses"] == 1 and info["last_used"] > time.time() - 60
    assert cache.entries() == [how.key]
    # another file with the same bytes (another upload of it) is the same entry
    copy = tmp_path / "copy.wav"
    copy.write_bytes(song_file.read_bytes())
    assert cache.lookup(copy)[1].reused is True and cache.info(how.key)["uses"] == 2
    other = tmp_path / "other.wav"
    mediagen.write_song(other, sg.song(5.0, sr=SR, seed=9, channels=1), sr=SR)
    assert cache.lookup(other) is None  # (a lookup never computes)


@pytest.mark.parametrize("damage", ["truncated song", "missing features", "garbled meta", "other version",
                                    "wrong shape", "empty folder"])
def test_a_damaged_entry_is_computed_again_never_a_failure(tmp_path, song_file, damage):
    cache = SongCache(tmp_path / "songs")
    _, how = cache.get(song_file, lambda: read(song_file))
    d = cache.root / how.key
    if damage == "truncated song":
        with open(d / "song.npy", "r+b") as f:
            f.truncate(os.path.getsize(d / "song.npy") // 2)
    elif damage == "missing features":
        (d / "features.chroma.npy").unlink()
    elif damage == "garbled meta":
        (d / "meta.json").write_text("{not json")
    elif damage == "other version":
        meta = json.loads((d / "meta.json").read_text())
        (d / "meta.json").write_text(json.dumps({**meta, "version": meta["version"] + 1}))
    elif damage == "wrong shape":
        np.save(d / "bgm.npy", np.zeros(100, np.float32))
    else:
        for p in d.iterdir():
            p.unlink()
    assert cache.load(how.key) is None
    got, how2 = cache.get(song_file, lambda: read(song_file))
    assert how2.reused is False and how2.key == how.key
    same_song(got, read(song_file))
    assert cache.load(how.key) is not None and cache.entries() == [how.key]
    assert not [p for p in cache.root.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_a_new_analysis_version_makes_new_keys(tmp_path, song_file):
    root = tmp_path / "songs"
    _, v1 = SongCache(root).get(song_file, lambda: read(song_file))
    _, v2 = SongCache(root, version=songcache.ANALYSIS_VERSION + 1).get(song_file, lambda: read(song_file))
    assert v2.reused is False and v2.key != v1.key
    assert sorted(SongCache(root).entries()) == sorted([v1.key, v2.key])
    assert SongCache(root).get(song_file, lambda: read(song_file))[1].reused is True


def test_a_song_that_fails_is_not_kept_and_its_lock_is_released(tmp_path):
    silent = mediagen.write_song(tmp_path / "silent.wav", np.zeros((2, 5 * SR), np.float32), sr=SR)
    cache = SongCache(tmp_path / "songs", lock_wait_s=1.0)
    for _ in range(2):  # (the second would wait in vain for a lock left held)
        with pytest.raises(MediaError) as e:
            cache.get(silent, lambda: read(silent))
        assert e.value.code == "silent"
    assert cache.entries() == []


def test_an_unwritable_cache_leaves_the_job_its_song(tmp_path, song_file):
    root = tmp_path / "songs"
    root.parent.mkdir(exist_ok=True)
    root.write_text("a file where the folder should be")
    got, how = SongCache(root).get(song_file, lambda: read(song_file))
    assert how.reused is False and got.mapped is None
    same_song(got, read(song_file))


# ----------------------------------------------------------------------------- several processes


def _get_in_process(root: str, song: str, barrier, out) -> None:
    """A job's part: wait for the others, then get the song (in a process of its own)."""
    barrier.wait(30)
    t0 = time.time()
    got, how = SongCache(root).get(song, lambda: pipeline.read_song(song))
    out.put({"pid": os.getpid(), "reused": how.reused, "key": how.key, "start": t0, "end": time.time(),
             "bgm_sum": float(np.sum(got.bgm_y, dtype=np.float64)), "mapped": got.mapped is not None})


def test_three_processes_asking_at_once_compute_it_once(tmp_path, song_file):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_get_in_process, args=(str(tmp_path / "songs"), str(song_file), barrier, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    rows = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    computed = [r for r in rows if not r["reused"]]
    assert len(computed) == 1, rows
    assert len({r["key"] for r in rows}) == 1 and len({r["bgm_sum"] for r in rows}) == 1 and all(r["mapped"] for r in rows)
    # the others asked while it computed (they started together) and got it only once it was kept
    assert all(r["start"] < computed[0]["end"] and r["end"] >= computed[0]["end"] - 0.05 for r in rows)
    cache = SongCache(tmp_path / "songs")
    assert cache.entries() == [rows[0]["key"]] and cache.info(rows[0]["key"])["uses"] == 2


HOLD = """
import sys, time
from beatsync.cachedir import CacheDir
fd = CacheDir(sys.argv[1], lock_wait_s=5).lock(sys.argv[2])
assert fd is not None
print("held", flush=True)
time.sleep(60)
"""


def _holder(root: Path, key: str) -> subprocess.Popen:
    """Another process holding an entry's lock (as a job computing it would), until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), key], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).parents[1])})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_holder_that_dies_hands_the_work_to_a_waiter(tmp_path, song_file):
    root = tmp_path / "songs"
    key = songcache.song_key(song_file)
    holder = _holder(root, key)
    box = {}
    waiter = threading.Thread(target=lambda: box.update(r=SongCache(root).get(song_file, lambda: read(song_file))))
    try:
        t0 = time.monotonic()
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive(), "it did not wait for the lock"
        os.kill(holder.pid, signal.SIGKILL)  # (the kernel releases its lock)
        waiter.join(60)
    finally:
        holder.kill()
        holder.wait()
    assert not waiter.is_alive() and time.monotonic() - t0 >= 1.0
    got, how = box["r"]
    assert how.reused is False and how.seconds >= 1.0 and got.mapped is not None
    assert SongCache(root).entries() == [key]


def test_the_wait_is_bounded(tmp_path, song_file):
    root = tmp_path / "songs"
    holder = _holder(root, songcache.song_key(song_file))
    try:
        t0 = time.monotonic()
        got, how = SongCache(root, lock_wait_s=0.5).get(song_file, lambda: read(song_file))
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert 0.5 <= waited < 30 and how.reused is False
    assert got.mapped is None and SongCache(root).entries() == []  # (computed here, not kept: not its lock)


# ----------------------------------------------------------------------------- the pipeline and the jobs


def _alignments(result) -> dict:
    out = {}
    for e, v in result.variants.items():
        al = v.alignment.model_dump()
        al.pop("seconds")
        out[e] = al
    return out


def test_cached_and_uncached_jobs_find_the_same_alignments(tmp_path, media):
    cache = SongCache(tmp_path / "songs")
    runs = {}
    for name, kw in (("plain", {}), ("computed", {"song_cache": cache}), ("reused", {"song_cache": cache.root})):
        told = []
        runs[name] = pipeline.process(str(media.video_path), str(media.song_path), str(tmp_path / name), **kw,
                                      on_song=told.append)
        assert told == ([runs[name].song_analysis] if kw else [])
    plain, computed, reused = runs["plain"], runs["computed"], runs["reused"]
    assert plain.song_analysis is None  # (the command line's output: no cache, nothing to say)
    assert computed.song_analysis.reused is False and reused.song_analysis.reused is True
    assert computed.song_analysis.key == reused.song_analysis.key == songcache.song_key(media.song_path)
    assert _alignments(plain) == _alignments(computed) == _alignments(reused)
    assert abs(plain.variants["modular"].alignment.offset_s - media.music_at_s) < 0.005
    for r in runs.values():  # the song's step lies within reading the inputs
        s0, s1 = r.timings["song_analysis"]
        assert 0.0 <= s0 <= s1 <= r.timings["inputs"][1]
    span = {k: r.timings["song_analysis"][1] - r.timings["song_analysis"][0] for k, r in runs.items()}
    assert span["reused"] < span["computed"], span
    # the same videos: the song rendered from the entry is the song decoded
    for e in ("modular", "v2"):
        a = pipeline.media.decode_audio(plain.outputs()[e], sr=SR, mono=False)
        b = pipeline.media.decode_audio(reused.outputs()[e], sr=SR, mono=False)
        assert a.shape == b.shape and np.array_equal(a, b), e
    # a correction (no analysis) takes the decoded song from the cache when it is there
    fix = pipeline.render(str(media.video_path), str(media.song_path), str(tmp_path / "fix.mp4"),
                          reused.variants["modular"].alignment, song_cache=cache)
    assert fix.song_analysis.reused is True and fix.song_analysis.key == reused.song_analysis.key
    assert cache.info(reused.song_analysis.key)["uses"] == 2


def test_a_batch_of_three_jobs_with_one_song_analyses_it_once(tmp_path, media):
    """Three takes with one song (three uploads of the same file), submitted at once and run by three
    worker threads of the local executor (each job in its own process): three results, one analysis."""
    from beatsync.contract import SUCCESS
    from beatsync.service import BeatSync
    from beatsync.tasks import Settings

    svc = BeatSync(Settings.from_env({}, data_dir=tmp_path / "data", workers=3))
    owner = None
    ids = []
    for _ in range(3):
        with open(media.video_path, "rb") as fh:
            dance = svc.upload_file("class.mp4", fh, owner=owner)
        owner = dance.owner_token
        with open(media.song_path, "rb") as fh:
            song = svc.upload_file("song.wav", fh, owner=owner)
        ids.append((dance.file_id, song.file_id))
    tasks = [svc.submit(d, b, owner=owner).task_id for d, b in ids]
    svc.start_workers()
    try:
        deadline = time.monotonic() + 240
        while True:
            sts = [svc.status(t) for t in tasks]
            if all(s.status in ("success", "failed") for s in sts) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        svc.stop_workers()
    assert [s.status for s in sts] == [SUCCESS] * 3, [(s.status, s.error) for s in sts]
    analyses = [s.song_analysis for s in sts]
    assert sum(not a.reused for a in analyses) == 1, analyses  # one song analysis: count it
    key = songcache.song_key(media.song_path)
    assert {a.key for a in analyses} == {key}
    offsets = {round(s.variants["modular"].alignment.offset_s, 6) for s in sts}
    assert len(offsets) == 1, offsets
    cache = SongCache(songcache.folder(svc.store.root))
    assert cache.entries() == [key] and cache.info(key)["uses"] == 2
    # the record says it too (what the API's status is built from)
    assert sum(svc.store.get(t)["song_analysis"]["reused"] is False for t in tasks) == 1


# ----------------------------------------------------------------------------- expiry


def test_maintenance_expires_unused_entries_and_leftovers(tmp_path, song_file):
    from beatsync.tasks import Settings, TaskStore
    from beatsync.tasks.supervisor import Maintenance, Supervisor

    settings = Settings.from_env({}, data_dir=tmp_path / "data", ttl_s=3600.0)
    store = TaskStore(settings.data_dir)
    root = songcache.folder(settings.data_dir)
    cache = SongCache(root)
    _, old = cache.get(song_file, lambda: read(song_file))
    other = mediagen.write_song(tmp_path / "b.wav", sg.song(4.0, sr=SR, seed=2, channels=1), sr=SR)
    _, fresh = cache.get(other, lambda: read(other))
    busy = "b" * 64  # a song some job is computing: its lock is held, there is no entry yet
    lost = "c" * 64  # a lock left by an entry that is gone
    (root / f"{lost}.lock").touch()
    leftover = root / ".tmp-dead-writer"
    leftover.mkdir()
    past = time.time() - 2 * settings.ttl_s
    for p in (root / old.key, root / f"{old.key}.lock", root / f"{lost}.lock", leftover):
        os.utime(p, (past, past))
    holder = _holder(root, busy)
    try:
        os.utime(root / f"{busy}.lock", (past, past))
        sup = Supervisor(store, settings, job_argv=lambda t, a: [], job_env=None, stopping=threading.Event())
        Maintenance(store, settings, sup, node_id="test:1:x", host="test", threads=1).once()
        left = sorted(p.name for p in root.iterdir())
    finally:
        holder.kill()
        holder.wait()
        store.close()
    assert left == sorted([fresh.key, f"{fresh.key}.lock", f"{busy}.lock"]), left
    # a use keeps an entry: touched, it is not expired
    _, again = cache.get(song_file, lambda: read(song_file))
    assert again.reused is False  # (it was gone)
    assert cachedir.expire(root, before=time.time() - 60) == []
    assert sorted(cache.entries()) == sorted([old.key, fresh.key])

"""Uploads are verified by decoding (`beatsync.media.verify`, run by `beatsync.service.Upload.commit`).

Real files made here with the tests' generators and ffmpeg: random bytes named ``.mp3``
(``not_media``), an mp3, a wav, an mkv and two mp4s (index at the end, index at the front) cut to
10 % (``truncated``, with the seconds that still play in ``playable_s``), a sound-only file given in
the class video's slot (``no_video``), a video without sound (``no_audio``), and valid files of
every accepted type (accepted, with their duration). Through the service directly and through a real
server's ``POST /api/upload``; every message names the file as uploaded (never the stored name, never
"ffmpeg"), in English and Chinese. A 100 MB video shows that verifying does not read the file through
(bytes read, from /proc/self/io; the time on a 500 MB file is in benchmarks/bench_upload_verify.py).
"""

from __future__ import annotations

from pathlib import Path

import mediagen
import numpy as np
import pytest
import server_util as su
from server_util import Server, check

from beatsync import media
from beatsync.errors import BeatSyncError, MediaError
from beatsync.service import BeatSync
from beatsync.tasks import Settings

SONG_S = 20.0
VIDEO_S = 12.0


def _cut(src: Path, dst: Path, fraction: float = 0.1) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Every case's file, made once: ``{case: path}``."""
    d = tmp_path_factory.mktemp("verify_media")
    y = mediagen.music(SONG_S, sr=44100, seed=3)
    out: dict[str, Path] = {}
    for ext in ("mp3", "m4a", "wav", "flac", "ogg", "opus"):
        out[f"song_{ext}"] = mediagen.write_song(d / f"song.{ext}", y, sr=44100)
    sound = mediagen.music(VIDEO_S + 1.0, sr=48000, seed=4, level=0.3)
    for ext in ("mp4", "mov", "mkv", "webm", "avi", "m4v"):
        kw = {"vcodec": "mjpeg"} if ext == "avi" else {"vcodec": "libvpx-vp9"} if ext == "webm" else {}
        out[f"video_{ext}"] = mediagen.write_class_video(d / f"class.{ext}", duration_s=VIDEO_S, size=(128, 96),
                                                         fps=15.0, audio=sound, sr=48000, **kw)
    fs = d / "class_faststart.mp4"
    mediagen.ffmpeg("-i", str(out["video_mp4"]), "-c", "copy", "-movflags", "+faststart", str(fs))
    out["random_mp3"] = d / "random.mp3"
    # seeded: about 1 in 100 random files holds no chance frame header at all, which the probe already
    # refuses as no_streams (also a clear refusal, but not the one this case checks)
    out["random_mp3"].write_bytes(np.random.default_rng(20261205).bytes(200_000))
    out["cut_mp3"] = _cut(out["song_mp3"], d / "cut.mp3")
    out["cut_wav"] = _cut(out["song_wav"], d / "cut.wav")
    out["cut_mp4"] = _cut(out["video_mp4"], d / "cut.mp4")  # index (moov) at the end: cut off
    out["cut_faststart_mp4"] = _cut(fs, d / "cut_faststart.mp4")  # index at the front: points past the end
    out["cut_mkv"] = _cut(out["video_mkv"], d / "cut.mkv")
    out["song_as_mp4"] = mediagen.write_song(d / "sound_only.mp4", y, sr=44100)
    out["silent_video"] = mediagen.write_class_video(d / "silent.mp4", duration_s=4.0, size=(128, 96), fps=15.0)
    return out


#: case -> (error code, role given, how many seconds still play (truncated), +-)
REFUSED = {
    "random_mp3": ("not_media", None, None),
    "cut_mp3": ("truncated", "bgm", (0.1 * SONG_S, 1.0)),
    "cut_wav": ("truncated", "bgm", (0.1 * SONG_S, 0.3)),
    "cut_mp4": ("truncated", "dance", (0.0, 0.0)),
    "cut_faststart_mp4": ("truncated", "dance", (0.1 * VIDEO_S, 1.5)),
    "cut_mkv": ("truncated", "dance", (0.1 * VIDEO_S, 1.5)),
    "song_as_mp4": ("no_video", "dance", None),
    "silent_video": ("no_audio", "dance", None),
}
ACCEPTED = {**{f"song_{e}": ("bgm", SONG_S) for e in ("mp3", "m4a", "wav", "flac", "ogg", "opus")},
            **{f"video_{e}": ("dance", VIDEO_S) for e in ("mp4", "mov", "mkv", "webm", "avi", "m4v")},
            "song_as_mp4": (None, SONG_S)}  # a sound-only mp4 is a fine song


def _shown_name(case: str, path: Path) -> str:
    return f"My {case.replace('_', ' ')}{path.suffix}"  # the name as uploaded, not the stored data.<ext>


def _check_refusal(err: dict | BeatSyncError, case: str, name: str) -> None:
    code, _role, playable = REFUSED[case]
    e = err if isinstance(err, dict) else {"error": err.message, "error_code": err.code, "error_params": err.params}
    assert e["error_code"] == code, e
    assert name in e["error"] and "data." not in e["error"], e
    assert "ffmpeg" not in e["error"].lower(), e
    if code == "truncated":
        want, tol = playable
        assert e["error_params"]["playable_s"] == pytest.approx(want, abs=tol), e


# ----------------------------------------------------------------------------- the service directly


@pytest.fixture(scope="module")
def svc(tmp_path_factory, request):
    mp = pytest.MonkeyPatch()
    mp.setenv("BEATSYNC_MIN_FREE_MB", "1")
    mp.delenv("BEATSYNC_QUOTA_MB", raising=False)
    request.addfinalizer(mp.undo)
    return BeatSync(Settings.from_env(data_dir=tmp_path_factory.mktemp("verify_data")))


@pytest.mark.parametrize("case", list(REFUSED))
def test_service_refuses(svc, files, case):
    path = files[case]
    name = _shown_name(case, path)
    with open(path, "rb") as fh, pytest.raises(BeatSyncError) as exc:
        svc.upload_file(name, fh, role=REFUSED[case][1])
    _check_refusal(exc.value, case, name)
    assert list(svc.store.uploads_root.iterdir()) == [], "a refused upload was kept"


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_service_accepts(svc, files, case):
    role, duration = ACCEPTED[case]
    with open(files[case], "rb") as fh:
        info = svc.upload_file(_shown_name(case, files[case]), fh, role=role)
    assert info.has_audio and info.duration_s == pytest.approx(duration, abs=0.15), info
    assert info.has_video == case.startswith("video_"), info


def test_sound_only_file_is_refused_only_in_the_video_slot(svc, files):
    with open(files["song_as_mp4"], "rb") as fh:
        assert svc.upload_file("song.mp4", fh, role="bgm").kind == "audio"
    with open(files["song_as_mp4"], "rb") as fh, pytest.raises(MediaError) as exc:
        svc.upload_file("song.mp4", fh, role="dance")
    assert exc.value.code == "no_video" and exc.value.params["name"] == "song.mp4"


def test_a_bad_role_is_a_bad_request(svc, files):
    with open(files["song_mp3"], "rb") as fh, pytest.raises(BeatSyncError) as exc:
        svc.upload_file("song.mp3", fh, role="drums")
    assert exc.value.code == "bad_request"


def test_truncated_sound_in_the_middle_is_found_by_bisection(files, tmp_path):
    """The playable end of a cut file whose header claims more is found by seeking, to within a
    fraction of a second (the bisection's resolution), wherever the cut is."""
    src = files["song_mp3"]
    for fraction in (0.25, 0.5, 0.9):
        cut = _cut(src, tmp_path / f"cut{int(fraction * 100)}.mp3", fraction)
        with pytest.raises(MediaError) as exc:
            media.verify(cut)
        assert exc.value.code == "truncated"
        assert exc.value.params["playable_s"] == pytest.approx(fraction * SONG_S, abs=0.6), exc.value.params
        assert exc.value.params["duration_s"] == pytest.approx(SONG_S, abs=0.1)


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def big_video(tmp_path_factory) -> Path:
    """About 100 MB of class video (a 10-s chunk at a high bit rate, looped by stream copy)."""
    d = tmp_path_factory.mktemp("big")
    return mediagen.write_big_video(d / "big.mp4", target_mb=100)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
def test_verifying_a_large_file_does_not_read_it_through(big_video, tmp_path):
    size = big_video.stat().st_size
    assert size > 90 * 2**20
    before = _rchar()
    info = media.probe(big_video)
    verified = media.verify(big_video, info)
    read = _rchar() - before
    assert verified.duration_s == pytest.approx(info.duration_s) and verified.duration_s > 60
    assert len(verified.windows) == 3  # start, middle, end
    # a few seconds' worth of data (the windows: 2 + 2 + 4 s, and the index), not the file
    seconds_read = read / (size / info.duration_s)
    assert seconds_read < 12, f"verifying read {read / 2**20:.1f} MB ({seconds_read:.0f} s) of a {size / 2**20:.0f} MB file"
    # cut to 10 % (with the index at the front, as a phone's faststart file): still only a little is read
    fs = tmp_path / "fs.mp4"
    mediagen.ffmpeg("-i", str(big_video), "-c", "copy", "-movflags", "+faststart", str(fs))
    cut = _cut(fs, tmp_path / "cut.mp4")
    fs.unlink()
    before = _rchar()
    with pytest.raises(MediaError) as exc:
        media.verify(cut)
    read = _rchar() - before
    assert exc.value.code == "truncated" and 0.05 * info.duration_s < exc.value.params["playable_s"] < 0.15 * \
        info.duration_s, exc.value.params
    assert read < 12 * size / info.duration_s, f"read {read / 2**20:.1f} MB"


# ----------------------------------------------------------------------------- through a real server


@pytest.fixture(scope="module")
def srv(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("verify_srv")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 0}, name="verify", log_dir=base)
    failed = request.session.testsfailed
    try:
        s.start()
        yield s
    finally:
        su.print_logs_if_failed(request, failed, [s.log_hint()])
        s.close()


def _upload(srv: Server, path: Path, name: str, role: str | None, lang: str = "en"):
    with open(path, "rb") as fh:
        return srv.post("/api/upload" + (f"?role={role}" if role else ""), headers={"Accept-Language": lang},
                        files={"file": (name, fh, "application/octet-stream")}, timeout=120)


@pytest.mark.parametrize("case", list(REFUSED))
def test_api_refuses(srv, files, case):
    name = _shown_name(case, files[case])
    obj = check(_upload(srv, files[case], name, REFUSED[case][1]), 422, REFUSED[case][0], srv)
    _check_refusal(obj, case, name)
    zh = check(_upload(srv, files[case], name, REFUSED[case][1], lang="zh-CN"), 422, REFUSED[case][0], srv)
    assert name in zh["error"] and zh["error"] != obj["error"] and "ffmpeg" not in zh["error"].lower(), zh
    assert not any((srv.data_dir / "uploads").iterdir()), "a refused upload was kept"
    su.assert_alive(srv)


@pytest.mark.parametrize("case", ["song_mp3", "song_wav", "video_mp4", "video_mkv", "song_as_mp4"])
def test_api_accepts(srv, files, case):
    role, duration = ACCEPTED[case]
    obj = check(_upload(srv, files[case], _shown_name(case, files[case]), role), 201, server=srv)
    assert obj["duration_s"] == pytest.approx(duration, abs=0.15) and obj["has_audio"], obj


def test_api_bad_role(srv, files):
    check(_upload(srv, files["song_mp3"], "song.mp3", "drums"), 400, "bad_request", srv)


def test_ffmpeg_is_never_named_in_upload_messages():
    """The media layer's own wording of the upload errors (English) names no internal tool."""
    from beatsync.media.probe import truncated_error

    for err in (truncated_error("x.mp4"), truncated_error("x.mp4", playable_s=3, duration_s=30)):
        assert "ffmpeg" not in err.message.lower()


def test_openapi_lists_the_codes_and_the_role(srv):
    doc = check(srv.get("/api/openapi.json"), 200, server=srv)
    code = doc["components"]["schemas"]["ErrorBody"]["properties"]["error_code"]
    for c in ("not_media", "truncated", "no_video", "no_audio", "decode_failed", "encode_failed", "crashed"):
        assert c in code["examples"] and f"`{c}`" in code["description"], c
    assert "playable_s" in code["description"] and "oom" in code["description"]
    upload = doc["paths"]["/api/upload"]["post"]
    (role,) = [p for p in upload["parameters"] if p["name"] == "role"]
    assert role["in"] == "query" and role["schema"]["enum"] == ["dance", "bgm", "media"]
    assert "`truncated`" in upload["responses"]["422"]["description"]

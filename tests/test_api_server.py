"""The JSON API (docs/API.md) on a real server: ``streamlit run app.py`` with its workers, real files.

Two servers for the module: ``srv`` (one worker thread, default limits) and ``qsrv`` (no worker
thread, a queue of 2, uploads up to 1 MB), each with its own data dir. The tests share the
uploads and the finished task of the happy path; each leaves its server idle.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin

import mediagen
import pytest
import requests
import server_util as su
import songgen as sg
from server_util import CLEAN_NCC, Server, check, is_uuid4, submit, submit_ok, upload, upload_ok, wait_status

from beatsync import media

ALL_ROUTES = {  # normalised path (no /api prefix, parameters as {}) -> method
    "/upload": "post",
    "/process": "post",
    "/status/{}": "get",
    "/download/{}/{}": "get",
    "/download/{}": "get",
    "/cancel/{}": "post",
    "/rerun/{}": "post",
    "/health": "get",
}


@pytest.fixture(autouse=True)
def _server_logs_on_failure(request):
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        for name in ("srv", "qsrv"):
            s = request.node.funcargs.get(name)
            if isinstance(s, Server) and tr is not None:
                tr.write_line(s.log_hint()[-3000:])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media_pair(tmp_path_factory) -> sg.ClassMedia:
    return su.short_pair(tmp_path_factory)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("api_main")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 1}, name="main", log_dir=base)
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def qsrv(tmp_path_factory):
    """No worker thread, 2 pending tasks at most, 1-MB uploads."""
    base = tmp_path_factory.mktemp("api_queue")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 0, "BEATSYNC_QUEUE_MAX": 2, "BEATSYNC_MAX_UPLOAD_MB": 1},
               name="queue", log_dir=base)
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def files(srv, media_pair) -> dict:
    """The short pair uploaded to ``srv``: {"dance": upload response, "bgm": upload response}."""
    return {"dance": upload_ok(srv, media_pair.video_path, mime="video/mp4"),
            "bgm": upload_ok(srv, media_pair.song_path, mime="audio/wav")}


@pytest.fixture(scope="module")
def done(srv, files):
    """The happy path's task: submit response, every polled status object, and the final one."""
    r = submit(srv, files["dance"]["file_id"], files["bgm"]["file_id"])
    sub = check(r, 202, server=srv)
    history: list[dict] = []
    final = wait_status(srv, sub["task_id"], timeout=120, history=history, poll_s=0.2)
    return sub, history, final


@pytest.fixture(scope="module")
def qfiles(qsrv, media_pair, tmp_path_factory) -> dict:
    """The short pair on ``qsrv`` (under its 1-MB limit: the song as mp3)."""
    mp3 = mediagen.write_song(tmp_path_factory.mktemp("mp3") / "song.mp3", media_pair.song, sr=media_pair.song_sr)
    assert os.path.getsize(media_pair.video_path) < 2**20 and os.path.getsize(mp3) < 2**20
    return {"dance": upload_ok(qsrv, media_pair.video_path)["file_id"], "bgm": upload_ok(qsrv, mp3)["file_id"]}


def _ids(files) -> tuple[str, str]:
    return files["dance"]["file_id"], files["bgm"]["file_id"]


def _health(s: Server) -> tuple[int, dict]:
    r = s.health()
    obj = su.body(r)
    return r.status_code, obj


# ----------------------------------------------------------------------------- health, openapi


def test_health_shape(srv):
    code, h = _health(srv)
    assert code == 200, (code, h, srv.log_hint())
    assert h["status"] == "ok"
    for key in ("workers", "worker_threads", "queue", "queue_max", "processing", "free_disk_bytes"):
        assert isinstance(h[key], int) and not isinstance(h[key], bool), (key, h)
    assert h["worker_threads"] == 1 and h["workers"] >= 1
    assert h["queue_max"] == 32
    assert h["queue"] >= 0 and h["processing"] >= 0
    assert h["free_disk_bytes"] > 0


def test_openapi_lists_every_route(srv):
    r = srv.get("/api/openapi.json")
    assert r.status_code == 200, r.text[:500]
    doc = json.loads(r.text)
    assert str(doc.get("openapi", "")).startswith("3."), doc.get("openapi")
    assert isinstance(doc.get("info"), dict)
    paths = doc.get("paths")
    assert isinstance(paths, dict) and paths
    prefix = ""
    servers = doc.get("servers") or []
    if servers and str(servers[0].get("url", "")).rstrip("/").endswith("/api"):
        prefix = "/api"
    found: dict[str, set] = {}
    for p, ops in paths.items():
        full = prefix + p
        assert full.startswith("/api/"), p
        norm = re.sub(r"\{[^}]+\}", "{}", full[len("/api"):])
        found.setdefault(norm, set()).update(k.lower() for k in ops)
    for route, method in ALL_ROUTES.items():
        assert route in found, f"{route} missing from {sorted(paths)}"
        assert method in found[route], (route, found[route])


# ----------------------------------------------------------------------------- happy path


def test_upload_responses(files, media_pair):
    d, b = files["dance"], files["bgm"]
    assert d["name"] == "class.mp4" and b["name"] == "song.wav"
    assert d["size"] == os.path.getsize(media_pair.video_path) and b["size"] == os.path.getsize(media_pair.song_path)
    assert d["kind"] == "video" and d["has_video"] is True and d["has_audio"] is True
    assert b["kind"] == "audio" and b["has_video"] is False and b["has_audio"] is True
    assert d["duration_s"] == pytest.approx(media_pair.video_s, abs=0.2)
    assert b["duration_s"] == pytest.approx(media_pair.song.shape[1] / media_pair.song_sr, abs=0.2)
    assert d["file_id"] != b["file_id"]


def test_submit_response_and_status_url(srv, done):
    sub, history, _ = done
    assert sub["status"] == "pending" and is_uuid4(sub["task_id"])
    assert isinstance(sub["message"], str) and sub["message"]
    r = requests.get(urljoin(srv.url("/"), sub["status_url"]), timeout=10)
    assert check(r, 200)["task_id"] == sub["task_id"]
    assert history[0]["status"] in ("pending", "processing", "success")


def test_status_progress_and_final_fields(done, media_pair):
    sub, history, final = done
    assert final["status"] == "success", final
    order = {"pending": 0, "processing": 1, "success": 2}
    ranks = [order[h["status"]] for h in history]
    assert ranks == sorted(ranks), [h["status"] for h in history]
    progress = [h["progress"] for h in history]
    assert all(0 <= p <= 100 for p in progress), progress
    assert all(b >= a for a, b in zip(progress, progress[1:], strict=False)), f"progress went down: {progress}"
    assert final["progress"] == 100
    assert any(h["status"] == "processing" for h in history) or len(history) <= 3, [h["status"] for h in history]
    assert final["task_id"] == sub["task_id"]
    assert isinstance(final["message"], str) and final["message"]
    for key in ("stage", "created", "updated", "started", "finished", "options", "warnings", "agreement",
                "variants", "seconds", "rerun_of"):
        assert key in final, key
    assert final["attempts"] == 1
    assert final.get("error") is None and final.get("error_code") is None
    assert final["rerun_of"] is None
    inputs = final["inputs"]
    assert (inputs["dance"]["name"], inputs["dance"]["size"]) == ("class.mp4", os.path.getsize(media_pair.video_path))
    assert (inputs["bgm"]["name"], inputs["bgm"]["size"]) == ("song.wav", os.path.getsize(media_pair.song_path))
    for eng in ("modular", "v2"):
        assert isinstance(final[f"{eng}_output"], str) and final[f"{eng}_output"], final
        assert isinstance(final["download"][eng], str) and final["download"][eng], final["download"]
        assert sub["task_id"] in final["download"][eng]


def _filename(resp: requests.Response) -> str:
    cd = resp.headers.get("content-disposition", "")
    assert cd.lower().startswith("attachment"), cd
    m = re.search(r'filename="([^"]+)"', cd) or re.search(r"filename=([^;]+)", cd)
    assert m, cd
    return m.group(1).strip()


def _check_output(path: Path, m: sg.ClassMedia, final: dict, engine: str) -> None:
    """A valid mp4 with picture and sound, whose sound is the clean song at the right place."""
    info = media.probe(str(path))
    assert info.video is not None and info.audio is not None, info
    assert info.audio.codec == "aac"
    render = (final.get("variants") or {}).get(engine, {}).get("render") or {}
    assert m.music_len_s <= info.video_duration_s <= m.video_s, info.video_duration_s
    if "end_s" in render:
        assert info.video_duration_s == pytest.approx(render["end_s"] - render["start_s"], abs=0.2), render
    out_times = (2.5, 5.0, 8.0)  # inside the music whatever the cut (song heard at output 1-2.5 s onward)
    heard = su.heard_song_times(path, m, out_times)
    for t, (_song_t, ncc) in zip(out_times, heard, strict=True):
        assert ncc > CLEAN_NCC, f"{engine} at output {t} s: the clean song is not what is heard (ncc {ncc:.2f})"
    shifts = [song_t - t for t, (song_t, _) in zip(out_times, heard, strict=True)]
    assert max(shifts) - min(shifts) < 0.003, f"{engine}: song not played steadily {shifts}"
    start = render.get("start_s")
    if start is not None:  # output time t is dance time start + t, song time dance - music_at
        assert shifts[0] == pytest.approx(start - m.music_at_s, abs=0.006), (shifts, start)
    else:
        assert -m.music_at_s - 0.01 <= shifts[0] <= -m.music_at_s + 1.5 + 0.01, shifts


def test_download_both_variants(srv, done, media_pair, tmp_path):
    sub, _, final = done
    tid = sub["task_id"]
    got = {}
    for eng, path in (("modular", f"/api/download/{tid}/modular"), ("v2", f"/api/download/{tid}?version=v2")):
        r = srv.get(path)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        assert r.headers["content-type"].split(";")[0].strip() == "video/mp4", r.headers
        name = _filename(r)
        assert name.endswith(f"_{eng}.mp4") and name.startswith("class"), name
        assert "/" not in name and ".." not in name
        assert int(r.headers["content-length"]) == len(r.content)
        out = tmp_path / f"out_{eng}.mp4"
        out.write_bytes(r.content)
        _check_output(out, media_pair, final, eng)
        got[eng] = r.content
    assert got["modular"] != got["v2"] or final["variants"]["v2"] is None
    # the other form of each, and the URLs given in the status object, serve the same bytes
    assert srv.get(f"/api/download/{tid}?version=modular").content == got["modular"]
    assert srv.get(f"/api/download/{tid}/v2").content == got["v2"]
    for eng in ("modular", "v2"):
        for url in (final["download"][eng], final[f"{eng}_output"]):
            r = requests.get(urljoin(srv.url("/"), url), timeout=30)
            assert r.status_code == 200 and r.content == got[eng], (url, r.status_code)


def test_download_range(srv, done):
    tid = done[0]["task_id"]
    full = srv.get(f"/api/download/{tid}/modular").content
    total = len(full)
    assert total > 5000
    cases = {"bytes=100-1099": (100, 1099), f"bytes={total - 10}-": (total - 10, total - 1),
             "bytes=-300": (total - 300, total - 1), "bytes=0-0": (0, 0)}
    for rng, (a, b) in cases.items():
        r = srv.get(f"/api/download/{tid}/modular", headers={"Range": rng})
        assert r.status_code == 206, (rng, r.status_code, r.text[:300])
        assert r.headers["content-range"] == f"bytes {a}-{b}/{total}", (rng, r.headers["content-range"])
        assert r.content == full[a:b + 1], rng
        assert int(r.headers["content-length"]) == b - a + 1
        assert r.headers["content-type"].split(";")[0].strip() == "video/mp4"


# ----------------------------------------------------------------------------- bad uploads


def test_upload_not_multipart(srv):
    check(srv.post("/api/upload", json={"file": "class.mp4"}), 415, "unsupported_media_type", srv)
    check(srv.post("/api/upload", data=b"\x00" * 4096, headers={"Content-Type": "application/octet-stream"}),
          415, "unsupported_media_type", srv)
    check(srv.post("/api/upload", data=b"abc", headers={"Content-Type": "text/plain"}), 415,
          "unsupported_media_type", srv)
    su.assert_alive(srv, healthy=True)


def test_upload_without_file_part(srv):
    # a multipart body whose only part is a plain form field (no file)
    check(srv.post("/api/upload", files={"file": (None, "class.mp4")}), 400, "bad_request", srv)
    check(srv.post("/api/upload", data={"name": "class.mp4"}, files={"comment": (None, "hello")}), 400,
          "bad_request", srv)
    su.assert_alive(srv, healthy=True)


def _bad_file(kind: str, folder: Path, m: sg.ClassMedia) -> Path:
    if kind == "text_named_mp4":
        p = folder / "x.mp4"
        p.write_text("this is not a video\n" * 200, encoding="utf-8")
    elif kind == "empty_mp4":
        p = folder / "empty.mp4"
        p.write_bytes(b"")
    elif kind in ("txt", "exe"):
        p = folder / f"class.{kind}"
        p.write_bytes(m.video_path.read_bytes())
    elif kind == "half_mp4":
        data = m.video_path.read_bytes()
        p = folder / "half.mp4"
        p.write_bytes(data[: len(data) // 2])
    elif kind == "half_faststart_mp4":  # index at the front: the data it points to is cut off
        full = folder / "fs.mp4"
        mediagen.ffmpeg("-i", str(m.video_path), "-c", "copy", "-movflags", "+faststart", str(full))
        data = full.read_bytes()
        p = folder / "half_fs.mp4"
        p.write_bytes(data[: len(data) // 2])
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize(("kind", "code", "error_code"), [
    ("text_named_mp4", 422, "not_media"),
    ("empty_mp4", 422, "empty_file"),
    ("txt", 415, "unsupported_type"),
    ("exe", 415, "unsupported_type"),
    ("half_mp4", 422, "truncated"),
    ("half_faststart_mp4", 422, "truncated"),
])
def test_upload_refused(srv, media_pair, tmp_path, kind, code, error_code):
    p = _bad_file(kind, tmp_path, media_pair)
    obj = check(upload(srv, p), code, error_code, srv)
    if kind not in ("txt", "exe"):
        assert p.name in obj["error"] or "file" in obj["error"].lower(), obj
    assert "file_id" not in obj
    su.assert_alive(srv, healthy=True)


@pytest.mark.parametrize("how", ["half_close", "reset"])
def test_truncated_http_upload(srv, how):
    """Headers announce more body than is sent, then the client goes away: the server keeps serving
    and keeps nothing of the partial file."""
    marker = uuid.uuid4().hex.encode() * 4
    boundary = "bsync" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"partial.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    sent = head + marker + os.urandom(300_000)
    req = (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
           f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
           f"Content-Length: {len(sent) + 2_000_000}\r\nConnection: close\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    reply = b""
    try:
        sock.sendall(req + sent)
        time.sleep(0.5)
        if how == "half_close":
            sock.shutdown(socket.SHUT_WR)
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    finally:
        sock.close()
    if reply:  # a server may still answer a half-closed connection: then it says why
        status_line = reply.split(b"\r\n", 1)[0]
        assert b" 400 " in status_line + b" ", reply[:500]
        assert b"incomplete_upload" in reply, reply[:800]
    su.assert_alive(srv, healthy=True)
    time.sleep(2.0)
    assert su.files_containing(srv.data_dir, marker) == [], "the partial upload was kept"
    # and a normal upload still works
    check(srv.post("/api/upload", files={"file": ("x.mp4", b"not media" * 100, "video/mp4")}), 422, "not_media", srv)


# ----------------------------------------------------------------------------- bad ids


ROUTES_WITH_ID = [("GET", "/api/status/{}"), ("GET", "/api/download/{}/modular"),
                  ("GET", "/api/download/{}?version=v2"), ("POST", "/api/cancel/{}"), ("POST", "/api/rerun/{}")]

#: single path segments that are not canonical uuid4s: always 400 bad_id (bad_path when the path, once
#: decoded, has a ".." segment or a NUL)
NOT_UUIDS = ["not-a-uuid", str(uuid.uuid4()).upper(), str(uuid.uuid1()), uuid.uuid4().hex,
             str(uuid.uuid4()) + "x", "00000000-0000-0000-0000-000000000000", "..%2F..", "..",
             "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5C..%5Cwindows", "%00", "'%20OR%201=1"]
#: ids that contain a path separator: the router may not match them (404) but never 200/500
PATHS = ["../etc/passwd", "../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "x/../../etc/passwd"]


@pytest.mark.parametrize(("method", "route"), ROUTES_WITH_ID, ids=lambda x: x)
def test_bad_ids(srv, method, route):
    for bad in NOT_UUIDS + PATHS:
        status, headers, raw = srv.raw_request(method, route.format(bad))
        where = f"{method} {route.format(bad)} -> {status} {raw[:300]!r}"
        assert b"root:" not in raw, where
        if bad in PATHS or "%2F" in bad.upper():
            assert status in (400, 404), where
        else:
            assert status == 400, where
        assert headers.get("content-type", "").startswith("application/json"), where  # never plain text
        obj = json.loads(raw)
        assert obj.get("error") and obj.get("error_code"), where
        if status == 400:
            assert obj["error_code"] in ("bad_id", "bad_path"), where
    su.assert_alive(srv, healthy=True)


@pytest.mark.parametrize(("method", "route"), ROUTES_WITH_ID, ids=lambda x: x)
def test_unknown_task_is_404(srv, method, route):
    r = requests.request(method, srv.url(route.format(uuid.uuid4())), timeout=10)
    check(r, 404, "not_found", srv)


def test_download_bad_variant(srv, done):
    tid = done[0]["task_id"]
    check(srv.get(f"/api/download/{tid}/v3"), 400, "bad_variant", srv)
    check(srv.get(f"/api/download/{tid}?version=../../etc/passwd"), 400, "bad_variant", srv)


# ----------------------------------------------------------------------------- bad submissions


def test_process_body_errors(srv, files):
    dance, bgm = _ids(files)
    ok = {"dance_file_id": dance, "bgm_file_id": bgm}
    check(srv.post("/api/process", data=f"dance_file_id={dance}&bgm_file_id={bgm}",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type", srv)
    check(srv.post("/api/process", data=b'{"dance_file_id": ', headers={"Content-Type": "application/json"}),
          400, "bad_json", srv)
    check(srv.post("/api/process", data=b"\xff\xfe{}", headers={"Content-Type": "application/json"}),
          400, "bad_json", srv)
    check(srv.post("/api/process", json=[dance, bgm]), 400, "bad_request", srv)
    check(srv.post("/api/process", json={"dance_file_id": dance}), 400, "bad_request", srv)
    check(srv.post("/api/process", json={"bgm_file_id": bgm}), 400, "bad_request", srv)
    check(srv.post("/api/process", json={}), 400, "bad_request", srv)
    check(srv.post("/api/process", json={**ok, "dance_file_id": 5}), 400, ("bad_request", "bad_id"), srv)
    big = {**ok, "options": {"trim": True}, "padding": "x" * 70_000}
    check(srv.post("/api/process", json=big), 413, "too_large", srv)
    check(srv.post("/api/process", data=b" " * 100_000, headers={"Content-Type": "application/json"}),
          413, "too_large", srv)
    su.assert_alive(srv, healthy=True)


def test_process_id_errors(srv, files):
    dance, bgm = _ids(files)
    for bad in ("../etc/passwd", "not-a-uuid", dance.upper(), str(uuid.uuid1())):
        check(submit(srv, bad, bgm), 400, "bad_id", srv)
        check(submit(srv, dance, bad), 400, "bad_id", srv)
    check(submit(srv, str(uuid.uuid4()), bgm), 404, "file_not_found", srv)
    check(submit(srv, dance, str(uuid.uuid4())), 404, "file_not_found", srv)


@pytest.mark.parametrize("options", [{"margin_s": 99}, {"margin_s": -1}, {"margin_s": "abc"}, {"fill": "x"},
                                     {"engines": []}, {"engines": ["v3"]}, {"engines": "v3"},
                                     {"margin_s": None}],
                         ids=lambda o: json.dumps(o))
def test_bad_options(srv, files, options):
    obj = check(submit(srv, *_ids(files), options), 400, "bad_option", srv)
    assert "task_id" not in obj


def test_options_not_an_object(srv, files):
    check(submit(srv, *_ids(files), "fast"), 400, ("bad_option", "bad_request"), srv)


def test_song_as_dance_is_no_video(srv, files):
    check(submit(srv, files["bgm"]["file_id"], files["bgm"]["file_id"]), 422, "no_video", srv)


def test_video_without_audio(srv, files, tmp_path):
    silent = mediagen.write_class_video(tmp_path / "silent.mp4", duration_s=4.0, size=(128, 96), fps=15.0)
    r = upload(srv, silent)
    if r.status_code == 422:  # refused at the upload (it can be neither a dance nor a song)
        check(r, 422, "no_audio", srv)
        return
    sid = check(r, 201, server=srv)["file_id"]
    assert su.body(r)["has_audio"] is False
    check(submit(srv, sid, files["bgm"]["file_id"]), 422, "no_audio", srv)
    check(submit(srv, files["dance"]["file_id"], sid), 422, "no_audio", srv)


def test_unrelated_song_fails_song_not_found(srv, files, media_pair, tmp_path):
    other = sg.song(media_pair.song.shape[1] / media_pair.song_sr, sr=44100, tempo_bpm=112.0, seed=977,
                    channels=2)
    path = mediagen.write_song(tmp_path / "other.wav", other, sr=44100)
    oid = upload_ok(srv, path)["file_id"]
    tid = submit_ok(srv, files["dance"]["file_id"], oid)
    final = wait_status(srv, tid, timeout=120)
    assert final["status"] == "failed", final
    assert final["error_code"] == "song_not_found", final
    assert "not found" in final["error"].lower(), final["error"]
    assert final.get("modular_output") is None and final.get("v2_output") is None
    check(srv.get(f"/api/download/{tid}/modular"), 409, "not_ready", srv)
    check(srv.post(f"/api/cancel/{tid}", headers=srv.owner_headers()), 409, "already_finished", srv)


# ----------------------------------------------------------------------------- queue server


def test_upload_over_the_limit(qsrv, long_media):
    assert os.path.getsize(long_media.video_path) > 2 * 2**20
    obj = check(upload(qsrv, long_media.video_path), 413, "too_large", qsrv)
    assert "file_id" not in obj
    su.assert_alive(qsrv)
    assert su.data_dir_paths_named(qsrv.data_dir, "class.mp4") == [] or all(
        p.stat().st_size < 2 * 2**20 for p in su.data_dir_paths_named(qsrv.data_dir, "class.mp4"))


def test_cancel_pending_task(qsrv, qfiles):
    tid = submit_ok(qsrv, qfiles["dance"], qfiles["bgm"])
    assert su.status(qsrv, tid)["status"] == "pending"
    check(qsrv.get(f"/api/download/{tid}/modular"), 409, "not_ready", qsrv)
    check(qsrv.post(f"/api/rerun/{tid}", headers=qsrv.owner_headers()), 409, "not_finished", qsrv)
    obj = check(qsrv.post(f"/api/cancel/{tid}", headers=qsrv.owner_headers()), 200, server=qsrv)
    assert obj["task_id"] == tid
    assert obj["status"] == "failed" and obj["error_code"] == "cancelled", obj
    final = su.status(qsrv, tid)
    assert final["status"] == "failed" and final["error_code"] == "cancelled", final
    assert isinstance(final["error"], str) and final["error"]
    check(qsrv.post(f"/api/cancel/{tid}", headers=qsrv.owner_headers()), 409, "already_finished", qsrv)
    check(qsrv.get(f"/api/download/{tid}/modular"), 409, "not_ready", qsrv)
    assert _health(qsrv)[1]["queue"] == 0


def test_full_queue_then_a_worker_process(qsrv, qfiles, tmp_path):
    code, h = _health(qsrv)
    assert code == 503 and h["status"] == "degraded", h
    assert h["worker_threads"] == 0 and h["workers"] == 0 and h["queue"] == 0 and h["queue_max"] == 2, h
    assert isinstance(h["problems"], list) and h["problems"], h
    assert any("worker" in str(p).lower() for p in h["problems"]), h
    t1 = submit_ok(qsrv, qfiles["dance"], qfiles["bgm"])
    t2 = submit_ok(qsrv, qfiles["dance"], qfiles["bgm"], {"engines": ["modular"]})
    r = submit(qsrv, qfiles["dance"], qfiles["bgm"])
    obj = check(r, 429, "busy", qsrv)
    assert re.search(r"try again|later", obj["error"], re.I), obj
    assert r.headers.get("retry-after", "").strip().isdigit(), r.headers
    code, h = _health(qsrv)
    assert code == 503 and h["status"] == "degraded" and h["queue"] == 2 and h["processing"] == 0, h
    assert su.status(qsrv, t1)["status"] == "pending"

    worker = su.Worker(qsrv.data_dir, log_path=tmp_path / "worker.log")
    try:
        finals = {}
        for tid in (t1, t2):
            try:
                finals[tid] = wait_status(qsrv, tid, timeout=120)
            except AssertionError as e:
                raise AssertionError(str(e) + worker.log_hint()) from None
            assert finals[tid]["status"] == "success", (finals[tid], worker.log_hint())
            assert finals[tid]["attempts"] == 1
        assert finals[t2]["download"]["v2"] is None and finals[t2]["download"]["modular"]
        check(qsrv.get(f"/api/download/{t2}/v2"), 404, "no_output", qsrv)
        r = qsrv.get(f"/api/download/{t1}/v2")
        assert r.status_code == 200 and len(r.content) > 1000
        # with a live worker process, health is ok
        deadline = time.monotonic() + 20
        while True:
            code, h = _health(qsrv)
            if code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert code == 200 and h["status"] == "ok" and h["workers"] >= 1 and h["queue"] == 0, h
        # the queue has room again
        t3 = submit_ok(qsrv, qfiles["dance"], qfiles["bgm"], {"engines": ["v2"], "trim": False})
        assert wait_status(qsrv, t3, timeout=120)["status"] == "success"
    finally:
        rc = worker.stop(timeout=20)
    assert rc == 0, f"worker exit code {rc} after SIGTERM{worker.log_hint()}"


# ----------------------------------------------------------------------------- cancel, rerun


def test_cancel_running_task(srv, long_media):
    dance = upload_ok(srv, long_media.video_path)["file_id"]
    bgm = upload_ok(srv, long_media.song_path)["file_id"]
    tid = submit_ok(srv, dance, bgm)
    wait_status(srv, tid, "processing", timeout=60, poll_s=0.1, pred=lambda o: o["progress"] > 0)
    su.cancel_running(srv, tid)
    check(srv.post(f"/api/cancel/{tid}", headers=srv.owner_headers()), 409, "already_finished", srv)


def test_cancel_finished_task(srv, done):
    tid = done[0]["task_id"]
    check(srv.post(f"/api/cancel/{tid}", headers=srv.owner_headers()), 409, "already_finished", srv)
    assert su.status(srv, tid)["status"] == "success"


def test_rerun_finished_task(srv, done, media_pair, tmp_path):
    """Also the last happy request after all the bad ones above."""
    old = done[0]["task_id"]
    code, h = _health(srv)
    assert code == 200 and h["queue"] == 0, h
    r = srv.post(f"/api/rerun/{old}", headers=srv.owner_headers())
    sub = check(r, 202, server=srv)
    new = sub["task_id"]
    assert is_uuid4(new) and new != old and sub["status"] == "pending"
    final = wait_status(srv, new, timeout=120)
    assert final["status"] == "success", final
    assert final["rerun_of"] == old and final["attempts"] == 1
    assert final["inputs"] == done[2]["inputs"] and final["options"] == done[2]["options"]
    r = srv.get(f"/api/download/{new}/modular")
    assert r.status_code == 200
    out = tmp_path / "rerun.mp4"
    out.write_bytes(r.content)
    _check_output(out, media_pair, final, "modular")
    check(srv.post(f"/api/rerun/{uuid.uuid4()}"), 404, "not_found", srv)
    check(srv.post("/api/rerun/not-a-uuid"), 400, "bad_id", srv)

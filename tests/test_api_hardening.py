"""Hardening of the JSON API (issue 12), on real servers: client mistakes get a 4xx JSON error with a
code, quotas hold while the bytes stream in, stalled bodies time out, and a share link gives no
control (owner tokens, cross-origin refusal, the optional API key).

Three servers for the module, each with its own data dir:

* ``srv``: one worker thread, a body timeout of 2 s (the owner tests run a real job on it);
* ``qsrv``: no worker, uploads up to 2 MB, a data-directory quota of 8 MB, a body timeout of 2 s;
* ``ksrv``: no worker, ``BEATSYNC_API_KEY`` set, one extra allowed origin.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
import requests
import server_util as su
from server_util import Server, check, submit, upload, upload_ok, wait_status

from beatsync import api
from beatsync.api.responses import HTTP_STATUS

BODY_TIMEOUT_S = 2.0
API_KEY = "k-" + uuid.uuid4().hex
ALLOWED_ORIGIN = "https://app.example.org"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _server_logs_on_failure(request):
    failed = request.session.testsfailed
    yield
    logs = [s.log_hint()[-3000:] for name in ("srv", "qsrv", "ksrv")
            if isinstance(s := request.node.funcargs.get(name), Server)]
    su.print_logs_if_failed(request, failed, logs)


def _server(tmp_path_factory, name: str, env: dict) -> Server:
    base = tmp_path_factory.mktemp(f"hard_{name}")
    return Server(base / "data", env, name=name, log_dir=base)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = _server(tmp_path_factory, "main", {"BEATSYNC_WORKERS": 1, "BEATSYNC_BODY_TIMEOUT_S": BODY_TIMEOUT_S})
    try:
        yield s.start()
    finally:
        s.close()


@pytest.fixture(scope="module")
def qsrv(tmp_path_factory):
    s = _server(tmp_path_factory, "quota", {"BEATSYNC_WORKERS": 0, "BEATSYNC_MAX_UPLOAD_MB": 2,
                                           "BEATSYNC_QUOTA_MB": 8, "BEATSYNC_BODY_TIMEOUT_S": BODY_TIMEOUT_S})
    try:
        yield s.start()
    finally:
        s.close()


@pytest.fixture(scope="module")
def ksrv(tmp_path_factory):
    s = _server(tmp_path_factory, "key", {"BEATSYNC_WORKERS": 0, "BEATSYNC_API_KEY": API_KEY,
                                         "BEATSYNC_ALLOWED_ORIGINS": ALLOWED_ORIGIN})
    try:
        yield s.start()
    finally:
        s.close()


@pytest.fixture(scope="module")
def done(srv, short_media) -> dict:
    """A finished job on ``srv``, submitted by ``srv.owner``: {"task_id", "dance", "bgm"}."""
    dance = upload_ok(srv, short_media.video_path)["file_id"]
    bgm = upload_ok(srv, short_media.song_path)["file_id"]
    tid = check(submit(srv, dance, bgm), 202, server=srv)["task_id"]
    final = wait_status(srv, tid, timeout=120)
    assert final["status"] == "success", final
    return {"task_id": tid, "dance": dance, "bgm": bgm}


def _json_post(s: Server, path: str, raw: bytes, headers: dict | None = None) -> requests.Response:
    return s.post(path, data=raw, headers={"Content-Type": "application/json", **(headers or {})})


def _files_named(data_dir: Path, pattern: str) -> list[Path]:
    return [p for p in Path(data_dir).rglob(pattern) if p.is_file()]


def _raw(port: int, head: bytes, body: bytes = b"", *, wait_s: float = 0.0, read_timeout: float = 15.0
         ) -> tuple[bytes, float, bool]:
    """Send ``head`` + ``body`` on a new connection, wait ``wait_s`` more without sending, and read the
    answer: (bytes received, seconds from the last byte sent to the answer, connection closed by
    the server)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        sock.sendall(head + body)
        t0 = time.monotonic()
        if wait_s:
            time.sleep(wait_s)
        reply, closed = b"", False
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            reply += chunk
            if b"\r\n\r\n" in reply:
                head_part, _, rest = reply.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", head_part, re.I)
                if m and len(rest) >= int(m.group(1)) and b"connection: close" not in head_part.lower():
                    break
        return reply, time.monotonic() - t0, closed
    finally:
        sock.close()


def _parse(reply: bytes) -> tuple[int, dict, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, json.loads(body)


# ----------------------------------------------------------------------------- 1. 4xx JSON, never a 500


@pytest.mark.parametrize("raw", [
    b'{"dance_file_id": "x", "bgm_file_id": "y", "options": {"margin_s": 1e400}}',
    b'{"dance_file_id": "x", "bgm_file_id": "y", "options": {"margin_s": -1e400}}',
    b'{"dance_file_id": "x", "bgm_file_id": "y", "options": {"margin_s": NaN}}',
    b'{"dance_file_id": "x", "bgm_file_id": "y", "options": {"margin_s": Infinity}}',
    b'{"dance_file_id": "x", "bgm_file_id": "y", "options": {"margin_s": -Infinity}}',
    b'{"options": {"margin_s": 1' + b"0" * 5000 + b"}}",  # an integer past Python's digit limit
    b"[" * 1000 + b"]" * 1000,
    b'{"a": ' * 40 + b"1" + b"}" * 40,
    b"[" * 100_000,
    b'{"dance_file_id": "\xff\xfe"}',
], ids=["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "5000 digits", "1000 deep", "40 deep",
        "unclosed", "bad utf-8"])
def test_bad_json_is_400_json(srv, raw):
    r = _json_post(srv, "/api/process", raw, headers=srv.owner_headers())
    obj = check(r, (400, 413), ("bad_json", "too_large"), srv)
    assert json.dumps(obj, allow_nan=False)  # the answer itself is strict JSON
    assert "Traceback" not in obj["error"]


def test_json_depth_and_numbers_at_the_limits_are_fine(srv, done):
    """32 levels and a large finite number are accepted by the parser (and refused by the contract)."""
    deep = json.dumps({"variant": "modular", "x": json.loads("[" * 30 + "]" * 30)})
    check(_json_post(srv, f"/api/correct/{done['task_id']}", deep.encode(), srv.owner_headers()), 400,
          "bad_option", srv)
    check(_json_post(srv, f"/api/correct/{done['task_id']}", b'{"nudge_ms": 1e300}', srv.owner_headers()), 400,
          "bad_option", srv)


@pytest.mark.parametrize("body", [{"nudge_ms": True}, {"nudge_ms": "5"}, {"alternative": True},
                                  {"alternative": 1.5}, {"nudge_ms": None}, {"variant": ["modular"]}],
                         ids=lambda b: json.dumps(b))
def test_correct_types_are_strict(srv, done, body):
    check(srv.post(f"/api/correct/{done['task_id']}", json=body, headers=srv.owner_headers()), 400,
          ("bad_option", "bad_variant"), srv)
    assert su.status(srv, done["task_id"])["corrections"] == []


@pytest.mark.parametrize("options", [{"trim": 1}, {"margin_s": True}, {"margin_s": "1"}, {"engines": [1]},
                                     {"fill": None}], ids=lambda o: json.dumps(o))
def test_option_types_are_strict(srv, done, options):
    check(submit(srv, done["dance"], done["bgm"], options), 400, "bad_option", srv)


def test_id_with_a_trailing_newline_is_bad_id(srv, done):
    tid = done["task_id"]
    for path in (f"/api/status/{tid}%0A", f"/api/status/{tid}%0D%0A", f"/api/download/{tid}%0A/modular"):
        check(srv.get(path), 400, "bad_id", srv)
    check(srv.post(f"/api/cancel/{tid}%0A", headers=srv.owner_headers()), 400, "bad_id", srv)
    check(submit(srv, done["dance"] + "\n", done["bgm"]), 400, "bad_id", srv)


def test_long_file_name_keeps_its_extension(srv, short_media):
    name = "ü" * 2100 + "a" * 2100 + ".wav"
    obj = check(upload(srv, short_media.song_path, name=name), 201, server=srv)
    assert len(obj["name"]) <= 200 and obj["name"].endswith(".wav") and obj["name"].startswith("üü"), obj["name"]
    obj = check(srv.post("/api/upload", files={"file": ("b" * 4200 + ".mp3", os.urandom(2000))}), 422,
                server=srv)  # not media: refused by the probe, with the cut name
    assert len(obj["error_params"].get("name", "")) <= 200
    check(srv.post("/api/upload", files={"file": ("c" * 40_000 + ".mp3", b"xx")}), 400, "bad_multipart", srv)
    check(srv.post("/api/upload", files={"file": ("d" * 300, b"xx")}), 415, "unsupported_type", srv)
    su.assert_alive(srv, healthy=True)


def _multipart(boundary: bytes, name: bytes = b"a.mp3", data: bytes = b"x" * 100, end: bool = True) -> bytes:
    out = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
           b"Content-Type: audio/mpeg\r\n\r\n" + data)
    return out + (b"\r\n--" + boundary + b"--\r\n" if end else b"")


@pytest.mark.parametrize(("ctype", "body", "code"), [
    (b"multipart/form-data; boundary=other", _multipart(b"zzz"), "bad_multipart"),
    (b"multipart/form-data; boundary=" + b"b" * 300, _multipart(b"b" * 300), "bad_multipart"),
    (b"multipart/form-data; boundary=zz", b"garbage without any boundary" * 10, "bad_multipart"),
    (b"multipart/form-data; boundary=zz", _multipart(b"zz", end=False), "incomplete_upload"),
    (b"multipart/form-data; boundary=zz", b"--zz\r\n" + b"X-Header: v\r\n" * 20 + b"\r\nxx\r\n--zz--\r\n",
     "bad_multipart"),
    (b"multipart/form-data", _multipart(b"zz"), "unsupported_media_type"),
    (b"multipart/form-data; boundary=\"\"", _multipart(b"zz"), "unsupported_media_type"),
], ids=["wrong boundary", "long boundary", "no boundary in body", "no closing boundary", "many part headers",
        "no boundary param", "empty boundary"])
def test_bad_multipart_is_4xx_json(srv, ctype, body, code):
    r = srv.post("/api/upload", data=body, headers={"Content-Type": ctype.decode()})
    check(r, (400, 415), code, srv)
    su.assert_alive(srv, healthy=True)


def test_range_errors_are_json(srv, done):
    tid = done["task_id"]
    size = len(srv.get(f"/api/download/{tid}/modular").content)
    for rng in (f"bytes={size}-", "bytes=999999999-1000000000", f"bytes={size + 10}-{size + 20}"):
        r = srv.get(f"/api/download/{tid}/modular", headers={"Range": rng})
        obj = check(r, 416, "range_not_satisfiable", srv)
        assert r.headers["content-range"] == f"bytes */{size}", r.headers
        assert obj["error_params"]["size"] == size
    for rng in ("items=0-1", "bytes", "bytes=5-2"):
        check(srv.get(f"/api/download/{tid}/modular", headers={"Range": rng}), 400, "bad_range", srv)
    r = srv.get(f"/api/download/{tid}/modular", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and len(r.content) == 10
    r = requests.head(srv.url(f"/api/download/{tid}/modular"), headers={"Range": f"bytes={size}-"}, timeout=10)
    assert r.status_code == 416 and r.headers["content-type"].startswith("application/json")
    # a task's input file (the sync preview's): the same answers
    size = len(srv.get(f"/api/task/{tid}/input/bgm").content)
    r = srv.get(f"/api/task/{tid}/input/bgm", headers={"Range": f"bytes={size}-"})
    check(r, 416, "range_not_satisfiable", srv)
    assert r.headers["content-range"] == f"bytes */{size}", r.headers
    check(srv.get(f"/api/task/{tid}/input/bgm", headers={"Range": "items=0-1"}), 400, "bad_range", srv)


def test_unknown_routes_methods_and_paths_are_json(srv, done):
    tid = done["task_id"]
    for method, path, status, code in [
        ("GET", "/api/nothing", 404, "not_found"), ("GET", "/api", 404, "not_found"),
        ("POST", "/api/status/x/y/z", 404, "not_found"), ("DELETE", "/api/upload", 405, "method_not_allowed"),
        ("PATCH", f"/api/status/{tid}", 405, "method_not_allowed"), ("GET", "/api/upload", 405, "method_not_allowed"),
        ("PUT", f"/api/cancel/{tid}", 405, "method_not_allowed"), ("OPTIONS", "/api/health", 405, "method_not_allowed"),
        ("GET", "/api/status/..", 400, "bad_path"), ("GET", "/api/%2e%2e/%2e%2e/etc/passwd", 400, "bad_path"),
        ("GET", "/api/status/%00", 400, "bad_path"), ("GET", "/api/status/..%5C..%5Cx", 400, "bad_path"),
        ("BREW", "/api/health", 405, "method_not_allowed"),
    ]:
        st, headers, raw = srv.raw_request(method, path)
        where = f"{method} {path}: {st} {raw[:200]!r}"
        assert st == status and headers.get("content-type", "").startswith("application/json"), where
        obj = json.loads(raw)
        assert obj["error_code"] == code and obj["error"], where
        if code == "method_not_allowed":
            assert headers.get("allow"), where
    su.assert_alive(srv, healthy=True)


def test_every_error_code_is_documented():
    """docs/API.md and the OpenAPI document name every error code the API answers with."""
    doc = api.openapi_document()
    listed = set()
    for ops in doc["paths"].values():
        for op in ops.values():
            for resp in op["responses"].values():
                listed.update(resp.get("x-error-codes", []))
    prose = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
    assert doc["x-error-codes"] == HTTP_STATUS
    for code in HTTP_STATUS:
        if code in ("bad_parameter",):  # (a programming error inside the numerics, not a client's)
            continue
        if code != "method_not_allowed":  # (answered for the methods a path does not take: no operation)
            assert code in listed, f"{code} is not in the OpenAPI document's responses"
        assert f"`{code}`" in prose, f"{code} is not in docs/API.md"
    for model in ("UploadInfo", "Submitted"):
        props = doc["components"]["schemas"][model]["properties"]
        assert "owner_token" in props, model
    assert "owner_hash" not in json.dumps(doc["components"]["schemas"]["Status"])


# ----------------------------------------------------------------------------- 2. quotas, stalled bodies


def _chunked_upload(s: Server, n_bytes: int, *, name: str = "big.mp3", marker: bytes = b"") -> requests.Response:
    def gen():
        yield b"--bb\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name.encode() + b"\"\r\n\r\n"
        yield marker
        sent = len(marker)
        while sent < n_bytes:
            n = min(256 * 1024, n_bytes - sent)
            yield os.urandom(n)
            sent += n
        yield b"\r\n--bb--\r\n"

    try:
        return s.post("/api/upload", data=gen(), headers={"Content-Type": "multipart/form-data; boundary=bb"})
    except requests.ConnectionError:  # the server answered and closed while we were still sending
        pytest.fail("the server closed the connection without an answer the client could read")


def _uploads_left(s: Server) -> list[Path]:
    return _files_named(s.data_dir / "uploads", "data.*") if (s.data_dir / "uploads").exists() else []


def test_chunked_upload_over_the_size_limit(qsrv):
    before = _uploads_left(qsrv)
    marker = uuid.uuid4().hex.encode() * 8
    t0 = time.monotonic()
    obj = check(_chunked_upload(qsrv, 6 * 2**20, marker=marker), 413, "too_large", qsrv)
    assert obj["error_params"]["limit"] == 2 * 2**20
    assert time.monotonic() - t0 < 30
    time.sleep(0.5)
    assert _uploads_left(qsrv) == before
    assert su.files_containing(qsrv.data_dir, marker) == []
    su.assert_alive(qsrv)


def _used(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(data_dir).rglob("*") if p.is_file())


def test_chunked_upload_over_the_quota_then_health_over_quota(qsrv):
    filler = qsrv.data_dir / "filler.bin"
    filler.write_bytes(b"\0" * (7 * 2**20 - _used(qsrv.data_dir)))  # the data dir now holds 7 of its 8 MB
    try:
        before = _uploads_left(qsrv)
        marker = uuid.uuid4().hex.encode() * 8
        obj = check(_chunked_upload(qsrv, int(1.5 * 2**20), marker=marker), 413, "quota_exceeded", qsrv)
        assert obj["error_params"]["quota"] == 8 * 2**20
        time.sleep(0.5)
        assert _uploads_left(qsrv) == before and su.files_containing(qsrv.data_dir, marker) == []
        # announced with Content-Length: refused before the body is read
        r = qsrv.post("/api/upload", files={"file": ("c.mp3", os.urandom(int(1.5 * 2**20)))})
        check(r, 413, "quota_exceeded", qsrv)
        assert _uploads_left(qsrv) == before
        h = su.assert_alive(qsrv)
        assert "over_quota" not in h["problem_codes"], h
        filler.write_bytes(b"\0" * (9 * 2**20))  # over the quota (as results can make it)
        assert _used(qsrv.data_dir) > 8 * 2**20
        r = qsrv.health()
        h = su.body(r)
        assert r.status_code == 503 and h["status"] == "degraded" and "over_quota" in h["problem_codes"], h
        assert any("quota" in p for p in h["problems"]), h
    finally:
        filler.unlink()
    assert "over_quota" not in su.body(qsrv.health())["problem_codes"]


def _upload_head(port: int, length: int | None, boundary: str = "bb") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n\r\n").encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stalled_upload_times_out(qsrv, framing):
    """A client that sends part of the body and then nothing gets 408 after the configured timeout;
    the partial file is removed and the server keeps serving."""
    marker = uuid.uuid4().hex.encode() * 8
    part = _multipart(b"bb", name=b"stall.mp3", data=marker + os.urandom(200_000), end=False)
    if framing == "chunked":
        body = f"{len(part):x}\r\n".encode() + part + b"\r\n"
        head = _upload_head(qsrv.port, None)
    else:
        body = part
        head = _upload_head(qsrv.port, len(part) + 500_000)
    reply, took, closed = _raw(qsrv.port, head, body)
    status, headers, obj = _parse(reply)
    assert status == 408 and obj["error_code"] == "body_timeout", reply[:500]
    assert BODY_TIMEOUT_S - 0.5 <= took <= BODY_TIMEOUT_S + 5, took
    assert headers.get("connection") == "close" and closed
    time.sleep(0.3)
    assert su.files_containing(qsrv.data_dir, marker) == [], "the partial upload was kept"
    su.assert_alive(qsrv)
    check(qsrv.post("/api/upload", files={"file": ("x.mp4", b"not media" * 100)}), 422, "not_media", qsrv)


def test_stalled_json_body_times_out(qsrv):
    head = (f"POST /api/process HTTP/1.1\r\nHost: 127.0.0.1:{qsrv.port}\r\nContent-Type: application/json\r\n"
            f"X-BeatSync-Owner: {qsrv.owner}\r\nContent-Length: 200\r\n\r\n").encode()
    reply, took, closed = _raw(qsrv.port, head, b'{"dance_file_id": ')
    status, _, obj = _parse(reply)
    assert status == 408 and obj["error_code"] == "body_timeout" and closed, reply[:300]
    su.assert_alive(qsrv)


def test_slow_but_steady_body_is_fine(qsrv, short_media):
    """A body whose bytes keep coming (each gap under the timeout) is not cut off."""
    data = Path(short_media.video_path).read_bytes()
    part = _multipart(b"bb", name=b"slow.mp4", data=data)
    sock = socket.create_connection(("127.0.0.1", qsrv.port), timeout=30)
    try:
        sock.sendall(_upload_head(qsrv.port, len(part)))
        pieces = [part[i:i + len(part) // 4 + 1] for i in range(0, len(part), len(part) // 4 + 1)]
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(BODY_TIMEOUT_S * 0.6)  # total well past the timeout, no gap over it
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    status, _, obj = _parse(reply)
    assert status == 201 and obj["name"] == "slow.mp4", reply[:500]


# ----------------------------------------------------------------------------- 5. owner control


def test_upload_answers_an_owner_token(srv, short_media):
    r = srv.post("/api/upload", files={"file": ("song.wav", short_media.song_path.read_bytes())})
    fresh = check(r, 201, server=srv)["owner_token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", fresh), fresh  # 256 bits, URL-safe
    mine = upload_ok(srv, short_media.song_path)["owner_token"]
    assert mine == srv.owner != fresh
    bearer = check(srv.post("/api/upload", files={"file": ("song.wav", short_media.song_path.read_bytes())},
                            headers={"Authorization": f"Bearer {srv.owner}"}), 201, server=srv)
    assert bearer["owner_token"] == srv.owner
    for bad in ("short", "x" * 129, "has space" * 5, "ünïcode" * 5):
        r = srv.post("/api/upload", files={"file": ("song.wav", b"x")}, headers={"X-BeatSync-Owner": bad})
        check(r, 400, "bad_owner_token", srv)
    # the stores keep the token's hash, never the token
    assert su.files_containing(srv.data_dir, fresh.encode()) == []
    assert su.files_containing(srv.data_dir, hashlib.sha256(fresh.encode()).hexdigest().encode())


def test_processing_an_upload_needs_its_owner(srv, short_media):
    a, b = uuid.uuid4().hex + "-a" * 3, uuid.uuid4().hex + "-b" * 3
    dance = upload_ok(srv, short_media.video_path, owner=a)["file_id"]
    song = upload_ok(srv, short_media.song_path, owner=b)["file_id"]
    payload = {"dance_file_id": dance, "bgm_file_id": song, "options": {"engines": ["modular"]}}
    check(srv.post("/api/process", json=payload), 401, "owner_required", srv)
    check(srv.post("/api/process", json=payload, headers={"X-BeatSync-Owner": a}), 403, "not_owner", srv)
    check(srv.post("/api/process", json=payload, headers={"X-BeatSync-Owner": srv.owner}), 403, "not_owner", srv)
    # a client whose two uploads have different tokens sends both: the task is owned by the first
    sub = check(srv.post("/api/process", json=payload, headers={"X-BeatSync-Owner": f"{a}, {b}"}), 202,
                server=srv)
    assert sub["owner_token"] == a
    tid = sub["task_id"]
    final = wait_status(srv, tid, timeout=120)
    assert final["status"] == "success", final
    assert not any("owner" in k for k in final), sorted(final)
    check(srv.post(f"/api/rerun/{tid}", headers={"X-BeatSync-Owner": b}), 403, "not_owner", srv)
    again = check(srv.post(f"/api/rerun/{tid}", headers={"Authorization": f"Bearer {a}"}), 202, server=srv)
    assert again["owner_token"] == a
    wait_status(srv, again["task_id"], timeout=120)


def test_share_link_is_read_only(srv, done):
    """Anyone with the task id can read it; without the owner token nothing changes."""
    tid = done["task_id"]
    before = su.status(srv, tid)
    r = requests.get(srv.url(f"/api/download/{tid}/modular"), timeout=30)
    assert r.status_code == 200 and len(r.content) > 1000
    assert requests.get(srv.url(f"/api/beatgrid/{tid}"), timeout=30).status_code == 200
    for role in ("dance", "bgm"):  # what the sync preview plays: read-only, no owner token
        r = requests.get(srv.url(f"/api/task/{tid}/input/{role}"), headers={"Range": "bytes=0-9"}, timeout=30)
        assert r.status_code == 206 and len(r.content) == 10, (role, r.status_code)
    stranger = {"X-BeatSync-Owner": "s" * 43}
    for path, body in ((f"/api/cancel/{tid}", None), (f"/api/rerun/{tid}", None),
                       (f"/api/correct/{tid}", {"variant": "modular", "nudge_ms": 30})):
        check(srv.post(path, json=body), 401, "owner_required", srv)
        check(srv.post(path, json=body, headers=stranger), 403, "not_owner", srv)
        check(srv.post(path, json=body, headers={"Authorization": "Bearer " + "s" * 43}), 403, "not_owner", srv)
        check(srv.post(path, json=body, headers={"Authorization": "Basic " + srv.owner}), 401, "owner_required",
              srv)
    after = su.status(srv, tid)
    assert after["corrections"] == [] and after["status"] == "success" and after["updated"] == before["updated"]
    code, h = srv.health().status_code, su.body(srv.health())
    assert code == 200 and h["queue"] == 0 and h["processing"] == 0, h  # nothing was queued
    # the owner can
    check(srv.post(f"/api/cancel/{tid}", headers=srv.owner_headers()), 409, "already_finished", srv)
    fix = check(srv.post(f"/api/correct/{tid}", json={"variant": "modular", "nudge_ms": 30},
                         headers=srv.owner_headers()), 202, server=srv)
    assert fix["owner_token"] == srv.owner
    assert wait_status(srv, fix["task_id"], timeout=120)["status"] == "success"
    assert su.status(srv, tid)["corrections"] == [fix["task_id"]]


def test_cancel_needs_the_owner(qsrv, short_media):
    dance = upload_ok(qsrv, short_media.video_path)["file_id"]
    bgm = upload_ok(qsrv, short_media.song_path)["file_id"]
    tid = check(submit(qsrv, dance, bgm), 202, server=qsrv)["task_id"]
    check(qsrv.post(f"/api/cancel/{tid}"), 401, "owner_required", qsrv)
    check(qsrv.post(f"/api/cancel/{tid}", headers={"X-BeatSync-Owner": "z" * 43}), 403, "not_owner", qsrv)
    check(qsrv.post(f"/api/cancel/{tid}", headers={**qsrv.owner_headers(), "Origin": "http://evil.example"}), 403,
          "cross_origin", qsrv)
    check(qsrv.post(f"/api/cancel/{tid}", headers={**qsrv.owner_headers(), "Sec-Fetch-Site": "cross-site"}), 403,
          "cross_origin", qsrv)
    check(qsrv.post(f"/api/cancel/{tid}", headers={**qsrv.owner_headers(), "Origin": "null"}), 403,
          "cross_origin", qsrv)
    st = su.status(qsrv, tid)
    assert st["status"] == "pending" and not st["cancel_requested"], st
    # a page of this very server (same host and port) may; so may a client that sends no Origin
    same = {**qsrv.owner_headers(), "Origin": f"http://127.0.0.1:{qsrv.port}", "Sec-Fetch-Site": "same-origin"}
    obj = check(qsrv.post(f"/api/cancel/{tid}", headers=same), 200, server=qsrv)
    assert obj["status"] == "failed" and obj["error_code"] == "cancelled", obj
    # reading from another origin is fine
    r = qsrv.get(f"/api/status/{tid}", headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    check(r, 200, server=qsrv)


def test_cross_origin_upload_and_process_are_refused(qsrv, short_media):
    evil = {"Origin": "https://evil.example", **qsrv.owner_headers()}
    r = qsrv.post("/api/upload", files={"file": ("song.wav", short_media.song_path.read_bytes())}, headers=evil)
    check(r, 403, "cross_origin", qsrv)
    check(qsrv.post("/api/process", json={}, headers=evil), 403, "cross_origin", qsrv)
    # another port of the same host is another origin
    other_port = {"Origin": f"http://127.0.0.1:{qsrv.port + 1}"}
    check(qsrv.post("/api/process", json={}, headers=other_port), 403, "cross_origin", qsrv)
    assert su.assert_alive(qsrv)


# ----------------------------------------------------------------------------- the API key


def test_api_key_mode(ksrv, short_media):
    tid = str(uuid.uuid4())
    check(ksrv.get(f"/api/status/{tid}"), 401, "api_key_required", ksrv)
    check(ksrv.get(f"/api/status/{tid}", headers={"X-API-Key": "wrong"}), 401, "bad_api_key", ksrv)
    check(ksrv.get(f"/api/status/{tid}", headers={"Authorization": f"Bearer {API_KEY}"}), 401,
          "api_key_required", ksrv)  # the key has its own header
    check(ksrv.get(f"/api/status/{tid}", headers={"X-API-Key": API_KEY}), 404, "not_found", ksrv)
    check(ksrv.get("/api/nothing"), 401, "api_key_required", ksrv)
    check(ksrv.get(f"/api/task/{tid}/input/dance"), 401, "api_key_required", ksrv)  # the preview's inputs too
    check(ksrv.get(f"/api/task/{tid}/input/dance", headers={"X-API-Key": API_KEY}), 404, "not_found", ksrv)
    r = ksrv.post("/api/upload", files={"file": ("song.wav", short_media.song_path.read_bytes())})
    check(r, 401, "api_key_required", ksrv)
    key = {"X-API-Key": API_KEY}
    up = check(ksrv.post("/api/upload", files={"file": ("song.wav", short_media.song_path.read_bytes())},
                         headers={**key, **ksrv.owner_headers()}), 201, server=ksrv)
    assert up["owner_token"] == ksrv.owner
    # the web app's pages are not under /api/: served as ever
    assert requests.get(ksrv.url("/"), timeout=10).status_code == 200
    # health and the document stay open (load balancers, API explorers)
    assert ksrv.health().status_code in (200, 503) and su.body(ksrv.health())["status"]
    assert ksrv.get("/api/openapi.json").status_code == 200
    # an allowed origin may send state-changing requests
    r = ksrv.post("/api/process", json={}, headers={**key, "Origin": ALLOWED_ORIGIN})
    check(r, 400, "bad_request", ksrv)
    r = ksrv.post("/api/process", json={}, headers={**key, "Origin": "https://other.example.org"})
    check(r, 403, "cross_origin", ksrv)

"""Fuzzing the JSON API on a real server with Hypothesis: a few thousand generated bad requests.

Generated: JSON bodies of any shape (NaN, Infinity, huge and deep numbers and structures, wrong
types) for the routes that take JSON, and mutations of valid submissions and corrections;
multipart uploads with odd boundaries (wrong, empty, long), odd file names (long, unicode, quotes,
folders, RFC 2231 ``filename*``), odd part headers and truncated bodies; random paths, ids, query
strings and methods on every route (the task input route a sync preview plays from, and a batch's
status and ZIP, included); batch submissions (``dance_file_ids`` of any shape);
random headers (Content-Type, owner tokens, Origin, Sec-Fetch-Site, Range, Accept-Language,
Content-Encoding...). Some requests carry real upload ids, a real task id and its owner token, so
that they get past the first checks.

Every answer must be under 500; every error must be an `ErrorBody` (JSON with an ``error_code``);
the server must be alive and serving afterwards. ``BEATSYNC_FUZZ_SCALE`` (default 1) multiplies
the number of examples (4,000 requests at 1, about 40 s on this 2-core machine).

What is not fuzzed here: bytes that are not HTTP at all, and header names or values the HTTP
server (uvicorn/h11) refuses before the application runs (its own plain-text 400; see docs/API.md).
"""

from __future__ import annotations

import http.client
import json
import os
import string
import time
import uuid
from urllib.parse import quote

import pytest
import server_util as su
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_util import Server, check, submit, upload_ok

SCALE = float(os.environ.get("BEATSYNC_FUZZ_SCALE", "1"))
SETTINGS = dict(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
STATS = {"requests": 0, "by_status": {}, "seconds": 0.0, "codes": {}}


def examples(n: int) -> int:
    return max(10, int(n * SCALE))


# ----------------------------------------------------------------------------- the server and what it knows


class Target:
    """The fuzzed server, the ids and token it knows, and a kept-alive connection."""

    def __init__(self, server: Server, known: dict):
        self.server = server
        self.known = known
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
             ) -> tuple[int, dict, bytes]:
        """One request; a fresh connection when the server closed the last one."""
        t0 = time.monotonic()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                out = r.status, {k.lower(): v for k, v in r.getheaders()}, data
                if r.will_close:
                    self.conn.close()
                    self.conn = None
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a kept-alive connection the server had closed: once more on a new one
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        STATS["requests"] += 1
        STATS["seconds"] += time.monotonic() - t0
        STATS["by_status"][out[0]] = STATS["by_status"].get(out[0], 0) + 1
        return out

    def check(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> None:
        status, hdrs, data = self.send(method, path, body, headers)
        where = f"{method} {path[:200]} headers={headers!r:.400} body={body[:300] if body else body!r} -> {status} " \
                f"{data[:300]!r}"
        if path.split("?")[0] == "/api/health" and status == 503:  # (no worker here: health says degraded)
            assert method == "HEAD" or json.loads(data)["status"] == "degraded", where
            return
        assert status < 500, where + self.server.log_hint()
        if status >= 400:
            assert hdrs.get("content-type", "").startswith("application/json"), where
            if method != "HEAD":
                obj = json.loads(data)
                assert isinstance(obj, dict) and isinstance(obj.get("error_code"), str) and obj["error_code"], where
                parts = path.split("?")[0].split("/")
                route = parts[2] if len(parts) > 2 else ""
                key = f"{route if f'/api/{route}' in KNOWN_PREFIXES else '(other)'}:{obj['error_code']}"
                STATS["codes"][key] = STATS["codes"].get(key, 0) + 1
                assert isinstance(obj.get("error"), str) and obj["error"], where
                assert isinstance(obj.get("error_params"), dict), where


@pytest.fixture(scope="module")
def target(tmp_path_factory, short_media):
    base = tmp_path_factory.mktemp("fuzz")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 0, "BEATSYNC_MAX_UPLOAD_MB": 3, "BEATSYNC_QUEUE_MAX": 8,
                               "BEATSYNC_BODY_TIMEOUT_S": 5}, name="fuzz", log_dir=base)
    s.start()
    try:
        dance = upload_ok(s, short_media.video_path)["file_id"]
        bgm = upload_ok(s, short_media.song_path)["file_id"]
        task = check(submit(s, dance, bgm), 202, server=s)["task_id"]
        dance2 = upload_ok(s, short_media.video_path)["file_id"]
        batch = check(s.post("/api/process", json={"dance_file_ids": [dance, dance2], "bgm_file_id": bgm},
                             headers=s.owner_headers()), 202, server=s)["batch_id"]
        t = Target(s, {"dance": dance, "dance2": dance2, "bgm": bgm, "task": task, "batch": batch, "token": s.owner})
        t0 = time.monotonic()
        yield t
        took = time.monotonic() - t0
        # alive and serving, and the data dir holds no partial upload
        su.assert_alive(s)
        assert su.status(s, task)["task_id"] == task
        check(s.post("/api/upload", files={"file": ("x.mp4", b"not media" * 100)}), 422, "not_media", s)
        assert su.check(s.get(f"/api/batch/{batch}"), 200, server=s)["batch_id"] == batch
        left = [p for p in (s.data_dir / "uploads").iterdir() if p.name not in (dance, dance2, bgm)]
        assert all(any(p.iterdir()) for p in left), "an empty (aborted) upload folder was left"
        print(f"\nfuzz: {STATS['requests']} requests in {took:.1f} s (server time {STATS['seconds']:.1f} s); "
              f"statuses {dict(sorted(STATS['by_status'].items()))}")
        print("fuzz: route:error_code counts", dict(sorted(STATS["codes"].items(), key=lambda kv: -kv[1])[:30]))
    finally:
        s.close()


# ----------------------------------------------------------------------------- strategies

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LATIN1 = st.characters(codec="latin-1", exclude_categories=("Cc",))  # what an HTTP header value may carry
TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 1e308, -0.0, 30, 30.0001]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40))
JSON_VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12),
                                                                                               kids, max_size=5),
                           max_leaves=25)
OPTION_KEYS = st.sampled_from(["trim", "margin_s", "fill", "engines", "audio_bitrate", "colour", "", "TRIM"])
OPTION_VALUES = st.one_of(SCALARS, st.sampled_from(["modular", "v2", "modular,v2", "silence", "original", "192k"]),
                          st.lists(st.sampled_from(["modular", "v2", "v3", ""]), max_size=4), JSON_VALUES)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def deep(draw) -> bytes:
    n = draw(st.integers(min_value=1, max_value=5000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"options":', b"}")]))
    inner = draw(st.sampled_from([b"1", b"NaN", b"1e999", b"[]", b""]))
    close = draw(st.booleans())
    return opener * n + inner + (closer * n if close else b"")


def ids(t: Target):
    return st.one_of(
        st.sampled_from([t.known["task"], t.known["dance"], t.known["bgm"], t.known["batch"]]),
        st.uuids(version=4).map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.text(max_size=60).map(lambda x: quote(x, safe="")),
        st.sampled_from(["..", "%2e%2e", "%00", "%0A", t.known["task"] + "%0A", t.known["task"] + "%20", "a/b", "",
                         "%ff%fe", "%2F", "%5C..%5C", "~", "x" * 500, t.known["task"].replace("-", "")]),
    )


def bodies_for_process(t: Target):
    valid_ids = st.sampled_from([t.known["dance"], t.known["dance2"], t.known["bgm"], str(uuid.uuid4()), "x", ""])
    mutated = st.fixed_dictionaries(
        {"dance_file_id": st.one_of(valid_ids, SCALARS), "bgm_file_id": st.one_of(valid_ids, SCALARS)},
        optional={"options": st.one_of(st.dictionaries(OPTION_KEYS, OPTION_VALUES, max_size=5), JSON_VALUES),
                  "extra": JSON_VALUES}).map(_dumps)
    batches = st.fixed_dictionaries(  # several class videos with one song
        {"dance_file_ids": st.one_of(st.lists(st.one_of(valid_ids, SCALARS), max_size=12), JSON_VALUES),
         "bgm_file_id": st.one_of(valid_ids, SCALARS)},
        optional={"dance_file_id": st.one_of(valid_ids, SCALARS), "options": st.one_of(
            st.dictionaries(OPTION_KEYS, OPTION_VALUES, max_size=5), JSON_VALUES)}).map(_dumps)
    return st.one_of(mutated, batches, JSON_VALUES.map(_dumps), deep(), st.binary(max_size=300),
                     st.text(max_size=300).map(lambda x: x.encode("utf-8", "surrogatepass")))


def bodies_for_correct():
    fields = st.fixed_dictionaries({}, optional={
        "variant": st.one_of(st.sampled_from(["modular", "v2", "v3", "", "MODULAR"]), SCALARS),
        "alternative": st.one_of(st.integers(-3, 10), SCALARS), "nudge_ms": st.one_of(NUMBERS, SCALARS),
        "nudge": NUMBERS}).map(_dumps)
    return st.one_of(fields, JSON_VALUES.map(_dumps), deep(), st.binary(max_size=200))


def header_values():
    return st.one_of(st.text(PRINTABLE, max_size=80), st.text(LATIN1, max_size=40))


@st.composite
def random_headers(draw, t: Target) -> dict:
    """Headers a client might send, right or wrong: a few of them (most requests then get past the
    cross-origin and owner checks to the parsing behind them)."""
    token = st.one_of(st.just(t.known["token"]), st.text(st.sampled_from(TOKEN_CHARS), min_size=0, max_size=140),
                      header_values())
    choices = {
        "X-BeatSync-Owner": st.one_of(token, st.lists(token, max_size=10).map(", ".join)),
        "Authorization": st.one_of(token.map(lambda x: "Bearer " + x), header_values()),
        "Origin": st.one_of(st.sampled_from(["null", "http://evil.example", f"http://127.0.0.1:{t.server.port}",
                                             "http://127.0.0.1", "https://[::1]:1", "http://a:b@c", "file://"]),
                            header_values()),
        "Sec-Fetch-Site": st.sampled_from(["cross-site", "same-origin", "same-site", "none", "CROSS-SITE"]),
        "Range": st.one_of(st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=0-", "bytes=99999999999-",
                                            "bytes=5-1", "bytes=0-1,2-3,4-5", "items=1-2", "bytes=-0",
                                            "bytes=1-2," * 300]), header_values()),
        "If-Range": header_values(),
        "Accept-Language": st.one_of(st.sampled_from(["zh-CN", "zh;q=NaN", "en;q=1e999", "*", ",,,;q="]),
                                     header_values()),
        "X-API-Key": header_values(),
        "Content-Encoding": st.sampled_from(["gzip", "br", "identity", "x"]),
        "Expect": st.sampled_from(["100-continue"]),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), max_size=3, unique=True))
    return {name: draw(choices[name]) for name in names}


CTYPES = st.one_of(st.sampled_from(["application/json", "application/json; charset=utf-16", "text/plain",
                                    "multipart/form-data", "multipart/form-data; boundary=", "application/x-www-form-urlencoded",
                                    "application/json; boundary=x", "*/*", ""]), header_values())


@st.composite
def multipart(draw) -> tuple[str, bytes]:
    """(Content-Type, body) of an upload, each part of it possibly wrong."""
    bchars = st.sampled_from(string.ascii_letters + string.digits + "'()+_,-./:=?")
    boundary = draw(st.one_of(st.text(bchars, min_size=1, max_size=70), st.text(bchars, min_size=1, max_size=300)))
    in_body = boundary if draw(st.integers(0, 4)) else draw(st.text(bchars, max_size=80))
    name = draw(st.one_of(
        st.sampled_from(["a.mp3", "../../etc/passwd.mp3", "x.MP4", "a\\b.wav", 'q"uote.mp3', "x" * 4200 + ".mp3",
                         "ü" * 300 + ".wav", ".mp3", "noext", "a.mp3\x00.txt", "con.mp4", " .mp4 "]),
        st.text(max_size=300),
        st.tuples(st.text(max_size=40), st.sampled_from([".mp3", ".mp4", ".wav", ".mov", ".Mp3", ".ogg"])).map("".join)))
    raw_name = name.encode("utf-8", "surrogatepass")
    disposition = draw(st.sampled_from([
        b'form-data; name="file"; filename="%s"' % raw_name,
        b"form-data; name=file; filename=%s" % raw_name,
        b"form-data; name=\"file\"; filename*=UTF-8''%s" % quote(name, safe="").encode(),
        b'form-data; name="file"', b"attachment", b"", b'form-data; filename="%s"; filename="b.mp3"' % raw_name]))
    extra = draw(st.lists(st.tuples(st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20),
                                    st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)),
                          max_size=12))
    content = draw(st.one_of(st.binary(max_size=3000),
                             st.sampled_from([b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 200,
                                              b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500, b"RIFF$\x00\x00\x00WAVE",
                                              b"fLaC" + b"\x00" * 100, b"OggS" + b"\x00" * 100, b""]),
                             st.binary(max_size=200).map(lambda b: b * 50)))
    ending = draw(st.sampled_from(["end", "end", "none", "partial", "two files", "preamble"]))
    b = in_body.encode()
    head = b"--" + b + b"\r\nContent-Disposition: " + disposition + b"\r\n"
    head += b"".join(k.encode() + b": " + v + b"\r\n" for k, v in extra)
    body = head + b"\r\n" + content
    if ending == "end":
        body += b"\r\n--" + b + b"--\r\n"
    elif ending == "partial":
        body += b"\r\n--" + b
    elif ending == "two files":
        body += b"\r\n" + head + b"\r\n" + content + b"\r\n--" + b + b"--\r\n"
    elif ending == "preamble":
        body = b"preamble text\r\n" + body + b"\r\n--" + b + b"--\r\nepilogue"
    quoted = draw(st.booleans())
    ctype = f'multipart/form-data; boundary="{boundary}"' if quoted else f"multipart/form-data; boundary={boundary}"
    return ctype, body


KNOWN_PREFIXES = {f"/api/{r}" for r in ("upload", "process", "status", "download", "cancel", "rerun", "correct",
                                         "beatgrid", "health", "openapi.json", "task", "batch")}
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
ROUTES = ["/api/upload", "/api/process", "/api/status/{id}", "/api/download/{id}/{variant}", "/api/download/{id}",
          "/api/cancel/{id}", "/api/rerun/{id}", "/api/correct/{id}", "/api/beatgrid/{id}", "/api/health",
          "/api/openapi.json", "/api/{id}", "/api", "/api/{id}/{id}/{id}", "/api//status/{id}",
          "/api/task/{id}/input/dance", "/api/task/{id}/input/{variant}", "/api/batch/{id}", "/api/batch/{id}/zip",
          "/api/batch/{id}/{variant}"]


@st.composite
def paths(draw, t: Target) -> str:
    route = draw(st.sampled_from(ROUTES))
    while "{id}" in route:
        route = route.replace("{id}", draw(ids(t)), 1)
    route = route.replace("{variant}", draw(st.one_of(st.sampled_from(["modular", "v2", "v3", "..", "%00"]),
                                                      st.text(max_size=10).map(lambda x: quote(x, safe="")))))
    query = draw(st.one_of(st.just(""), st.builds(lambda k, v: f"?{quote(k)}={quote(v)}",
                                                  st.sampled_from(["version", "lang", "x", "version[]"]),
                                                  st.text(max_size=30))))
    return route + query


# ----------------------------------------------------------------------------- the fuzz tests


@settings(max_examples=examples(1300), **SETTINGS)
@given(data=st.data())
def test_fuzz_json_bodies(target, data):
    """Any JSON (or not) to the routes that read JSON, with random headers."""
    t = target
    route = data.draw(st.sampled_from(["process", "correct"]))
    if route == "process":
        path, body = "/api/process", data.draw(bodies_for_process(t))
    else:
        path, body = f"/api/correct/{data.draw(ids(t))}", data.draw(bodies_for_correct())
    headers = data.draw(random_headers(t))
    headers.pop("Content-Encoding", None)
    headers["Content-Type"] = "application/json" if data.draw(st.integers(0, 4)) else data.draw(CTYPES)
    if data.draw(st.booleans()):
        headers["X-BeatSync-Owner"] = t.known["token"]
        headers.pop("Origin", None)
        headers.pop("Sec-Fetch-Site", None)
    t.check("POST", path, body, headers)


@settings(max_examples=examples(1200), **SETTINGS)
@given(data=st.data())
def test_fuzz_uploads(target, data):
    """Multipart bodies with odd boundaries, names, part headers and endings."""
    t = target
    ctype, body = data.draw(multipart())
    headers = data.draw(random_headers(t))
    headers.pop("Content-Encoding", None)
    if data.draw(st.integers(0, 9)) == 0:
        ctype = data.draw(CTYPES)
    headers["Content-Type"] = ctype
    t.check("POST", "/api/upload", body, headers)


@settings(max_examples=examples(1500), **SETTINGS)
@given(data=st.data())
def test_fuzz_paths_methods_headers(target, data):
    """Random methods, paths, ids, query strings, headers and small bodies on every route."""
    t = target
    method = data.draw(METHODS)
    path = data.draw(paths(t))
    headers = data.draw(random_headers(t))
    body = None
    if method in ("POST", "PUT", "PATCH", "DELETE") and data.draw(st.booleans()):
        body = data.draw(st.one_of(st.binary(max_size=500), JSON_VALUES.map(_dumps)))
        headers["Content-Type"] = data.draw(CTYPES)
    t.check(method, path, body, headers)


def test_fuzz_server_still_serves(target):
    """(Runs after the fuzz tests: the fixture's teardown checks the server too.)"""
    t = target
    assert su.status(t.server, t.known["task"])["status"] in ("pending", "failed")
    r = t.server.get(f"/api/status/{t.known['task']}", headers={"Accept-Language": "zh-CN"})
    assert r.status_code == 200 and r.json()["language"] == "zh"
    assert STATS["requests"] >= 0.9 * (examples(1300) + examples(1200) + examples(1500)), STATS

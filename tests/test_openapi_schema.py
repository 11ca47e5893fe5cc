"""The published OpenAPI document against what a real server sends.

A real server (``streamlit run app.py``, no worker thread, a queue of 3, uploads up to 3 MB) is
driven through every route of the JSON API, for success and for errors: uploads, submissions,
status while pending, while processing and when done (success and failure), downloads (whole,
ranged, HEAD), batches (submission, status, ZIP), cancel, rerun, correct, beat grid, health (degraded without a worker, ok with one),
the document itself. The jobs run in a ``python -m beatsync worker`` started once the pending
cases are seen. Every JSON answer is validated (JSON Schema Draft 2020-12, formats checked) against
the schema that ``/api/openapi.json`` publishes for its route, method and status code, with the
document's ``$ref``s resolved in it. The public models have a fixed shape (every field required,
no other field allowed), so a field the server adds or drops without the contract changing fails
here.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import mediagen
import pytest
import requests
import server_util as su
import songgen as sg
from jsonschema import Draft202012Validator
from server_util import Server

from beatsync import api

#: routes whose every operation must have been seen here with a success and with an error
NO_ERROR_CASE = {("GET", "/api/openapi.json"), ("GET", "/api/health")}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("openapi")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 0, "BEATSYNC_QUEUE_MAX": 3, "BEATSYNC_MAX_UPLOAD_MB": 3},
               name="openapi", log_dir=base)
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def doc(srv) -> dict:
    r = srv.get("/api/openapi.json")
    assert r.status_code == 200, r.text[:500]
    d = r.json()
    for schema in d["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    return d


class Checker:
    """Validates answers against the document and records which (method, route, status) were seen."""

    def __init__(self, server: Server, doc: dict):
        self.server, self.doc = server, doc
        self.seen: set[tuple[str, str, int]] = set()
        self.routes = [(p, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$")) for p in doc["paths"]]

    def route(self, path: str) -> str:
        path = path.split("?")[0]
        matches = [p for p, rx in self.routes if rx.match(path)]
        assert matches, f"{path} is not a documented route"
        return min(matches, key=lambda p: p.count("{"))  # the literal route wins (/api/openapi.json)

    def __call__(self, method: str, path: str, expected: int | tuple, **kw) -> requests.Response:
        r = requests.request(method, self.server.url(path), timeout=kw.pop("timeout", 60), **kw)
        codes = expected if isinstance(expected, tuple) else (expected,)
        assert r.status_code in codes, (f"{method} {path}: expected {codes}, got {r.status_code}: {r.text[:800]}"
                                        f"{self.server.log_hint()}")
        self.validate(method, path, r)
        return r

    def validate(self, method: str, path: str, r: requests.Response) -> None:
        route = self.route(path)
        op = self.doc["paths"][route].get(method.lower())
        assert op is not None, f"{method} {route} is not documented"
        spec = op["responses"].get(str(r.status_code))
        assert spec is not None, f"{method} {route}: status {r.status_code} is not documented: {r.text[:300]}"
        self.seen.add((method, route, r.status_code))
        ctype = r.headers.get("content-type", "").split(";")[0].strip()
        if method == "HEAD":
            assert "content" not in spec
            return
        content = spec.get("content") or {}
        assert ctype in content, f"{method} {route} {r.status_code}: {ctype} is not documented ({list(content)})"
        if ctype != "application/json":
            assert r.content, "an empty body"
            return
        schema = {**content[ctype]["schema"], "components": self.doc["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(r.json()), key=lambda e: list(e.absolute_path))
        assert not errors, (f"{method} {path} {r.status_code} does not match the published schema:\n"
                            + "\n".join(f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
                                        for e in errors[:10]))
        if spec.get("headers", {}).get("Retry-After"):
            assert r.headers.get("retry-after", "").isdigit(), r.headers


def _upload(check: Checker, path: Path, expected=201) -> dict:
    with open(path, "rb") as fh:
        return check("POST", "/api/upload", expected, files={"file": (path.name, fh, "application/octet-stream")},
                     headers=check.server.owner_headers()).json()


def _wait(check: Checker, task_id: str, *, timeout: float = 120.0, seen: list | None = None) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        st = check("GET", f"/api/status/{task_id}", 200).json()
        if seen is not None:
            seen.append(st["status"])
        if st["status"] in ("success", "failed"):
            return st
        assert time.monotonic() < deadline, f"{task_id} still {st['status']} after {timeout:.0f} s"
        time.sleep(0.1)


def test_the_document_is_generated_from_the_routes_and_the_contract(doc):
    """The server publishes the document made from `api.OPERATIONS` and the contract's models, and
    every route the router serves is in it."""
    assert doc == json.loads(json.dumps(api.openapi_document()))
    assert doc["openapi"] == "3.1.0"
    documented: dict[str, set] = {}
    for p, ops in doc["paths"].items():
        documented[p] = {m.upper() for m in ops}
    served = {r.path: set(r.methods) for r in api.routes() if r.endpoint is not api.not_found}  # (not the 404s)
    assert set(served) == set(documented)
    for path, methods in served.items():  # (Starlette answers HEAD wherever it answers GET)
        assert methods - {"HEAD"} == documented[path] - {"HEAD"} and documented[path] <= methods, path
    status = doc["components"]["schemas"]["Status"]
    for seed in ("task_id", "status", "message", "progress", "modular_output", "v2_output", "error"):
        assert seed in status["required"], seed  # the fields clients were first promised
    assert status["additionalProperties"] is False and set(status["required"]) == set(status["properties"])


def test_every_route_answers_as_published(srv, doc, tmp_path, short_media):
    check = Checker(srv, doc)
    m = short_media
    own = srv.owner_headers()
    missing = str(uuid.uuid4())

    # ---- health without a worker, the document
    check("GET", "/api/health", 503)
    check("GET", "/api/openapi.json", 200)

    # ---- uploads
    dance = _upload(check, m.video_path)
    bgm = _upload(check, m.song_path)
    dance2 = _upload(check, m.video_path)  # (another group's take, as far as a batch is concerned)
    check("POST", "/api/upload", 415, json={"file": "x"})
    check("POST", "/api/upload", 400, files={"file": (None, "class.mp4")})
    check("POST", "/api/upload", 422, files={"file": ("x.mp4", b"not media" * 100, "video/mp4")})
    check("POST", "/api/upload", 415, files={"file": ("class.txt", b"text", "text/plain")})
    check("POST", "/api/upload", 413, files={"file": ("big.mp4", b"\0" * (4 * 2**20), "video/mp4")})
    other = mediagen.write_song(tmp_path / "other.wav", sg.song(10.0, sr=44100, tempo_bpm=96.0, seed=64,
                                                                channels=2), sr=44100)
    unrelated = _upload(check, other)

    # ---- submissions while no worker runs: pending, then a full queue
    ids = {"dance_file_id": dance["file_id"], "bgm_file_id": bgm["file_id"]}
    a = check("POST", "/api/process", 202, headers=own, json=ids).json()
    b = check("POST", "/api/process", 202, headers=own, json={"dance_file_id": dance["file_id"],
                                                "bgm_file_id": unrelated["file_id"]}).json()
    c = check("POST", "/api/process", 202, headers=own, json={**ids, "options": {"engines": "v2", "trim": False}}).json()
    pending = check("GET", f"/api/status/{a['task_id']}", 200).json()
    assert pending["status"] == "pending" and pending["queue_length"] == 3 and pending["modular_output"] is None
    assert pending["song_analysis"] is None
    check("POST", "/api/process", 429, headers=own, json=ids)
    check("POST", f"/api/cancel/{c['task_id']}", 200, headers=own)  # a pending task ends at once
    check("POST", f"/api/cancel/{c['task_id']}", 409, headers=own)
    # a batch (several class videos, one song): no room for two more takes, room for one
    takes = {"dance_file_ids": [dance["file_id"], dance2["file_id"]], "bgm_file_id": bgm["file_id"]}
    check("POST", "/api/process", 429, headers=own, json=takes)
    check("POST", "/api/process", 400, headers=own, json={**takes, "dance_file_ids": [missing] * 4})
    check("POST", "/api/process", 400, headers=own, json={**takes, "dance_file_id": dance["file_id"]})
    check("POST", "/api/process", 422, headers=own, json={**takes, "dance_file_ids": [bgm["file_id"]]})
    batch = check("POST", "/api/process", 202, headers=own, json={**takes, "dance_file_ids": [dance2["file_id"]]}).json()
    check("GET", f"/api/batch/{batch['batch_id']}", 200)
    check("GET", f"/api/batch/{batch['batch_id']}/zip", 409)
    check("HEAD", f"/api/batch/{batch['batch_id']}/zip", 409)
    check("POST", "/api/process", 400, headers=own, json={**ids, "options": {"margin_s": 99}})
    check("POST", "/api/process", 400, headers=own, json={**ids, "options": {"colour": "red"}})
    check("POST", "/api/process", 400, headers=own, json={"dance_file_id": dance["file_id"]})
    check("POST", "/api/process", 400, headers=own, json={**ids, "dance_file_id": "not-an-id"})
    check("POST", "/api/process", 404, headers=own, json={**ids, "bgm_file_id": missing})
    check("POST", "/api/process", 415, data="x=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    check("POST", "/api/process", 413, headers=own, json={**ids, "padding": "x" * 70_000})
    check("POST", "/api/process", 422, headers=own, json={"dance_file_id": bgm["file_id"], "bgm_file_id": bgm["file_id"]})
    tid = a["task_id"]
    for method, route in (("GET", f"/api/download/{tid}/modular"), ("GET", f"/api/download/{tid}?version=v2"),
                          ("HEAD", f"/api/download/{tid}/v2"), ("HEAD", f"/api/download/{tid}"),
                          ("POST", f"/api/rerun/{tid}"), ("GET", f"/api/beatgrid/{tid}")):
        check(method, route, 409, headers=own)
    check("POST", f"/api/correct/{tid}", 409, headers=own, json={"variant": "modular", "nudge_ms": 10})

    # ---- control without the owner token, or with another's; from another site; malformed bodies
    other_owner = srv.owner_headers("x" * 43)
    for route, body in ((f"/api/cancel/{tid}", None), (f"/api/rerun/{tid}", None),
                        (f"/api/correct/{tid}", {"nudge_ms": 10}), ("/api/process", ids)):
        check("POST", route, 401, json=body)
        check("POST", route, 403, json=body, headers=other_owner)
        check("POST", route, 403, json=body, headers={**own, "Origin": "https://elsewhere.example"})
    assert check("GET", f"/api/status/{tid}", 200).json()["status"] == "pending"  # unaffected
    check("POST", "/api/process", 400, headers={**own, "Content-Type": "application/json"},
          data=b'{"dance_file_id": "x", "options": {"margin_s": 1e400}}')
    check("POST", "/api/process", 400, headers={**own, "Content-Type": "application/json"}, data=b"[" * 500)
    check("POST", "/api/upload", 400, headers={"Content-Type": "multipart/form-data; boundary=other"},
          data=b"--zzz\r\nContent-Disposition: form-data; name=file; filename=a.mp3\r\n\r\nxx\r\n--zzz--\r\n")
    check("POST", "/api/upload", 400, headers=srv.owner_headers("short"), files={"file": ("a.mp3", b"xx")})
    check("GET", f"/api/status/{tid}%0A", 400)
    check("GET", "/api/status/..%2F..%2Fx", 400)
    # a task's inputs are there from the start (a sync preview plays them while the job runs); reading them
    # takes no owner token
    assert check("GET", f"/api/task/{tid}/input/dance", 200).content == m.video_path.read_bytes()
    part = check("GET", f"/api/task/{tid}/input/bgm", 206, headers={"Range": "bytes=0-99"})
    assert part.content == m.song_path.read_bytes()[:100] and part.headers["content-type"] == "audio/wav"
    check("HEAD", f"/api/task/{tid}/input/bgm", 200)
    check("GET", f"/api/task/{tid}/input/song", 400)
    check("HEAD", f"/api/task/{tid}/input/media", 400)
    check("GET", f"/api/task/{tid}/input/bgm", 416, headers={"Range": "bytes=999999999-"})
    check("GET", f"/api/task/{tid}/input/dance", 400, headers={"Range": "items=0-1"})

    # ---- a beat analysis (the explorer's kind of task: submitted through the service, in its own store)
    beats_task = _submit_beats(srv, m.song_path)

    # ---- unknown and malformed ids, on every route that takes one
    for method, route in (("GET", "/api/batch/{}"), ("GET", "/api/batch/{}/zip"), ("HEAD", "/api/batch/{}/zip"),
                          ("GET", "/api/status/{}"), ("GET", "/api/download/{}/v2"), ("HEAD", "/api/download/{}"),
                          ("GET", "/api/download/{}"), ("POST", "/api/cancel/{}"), ("POST", "/api/rerun/{}"),
                          ("GET", "/api/beatgrid/{}"), ("HEAD", "/api/download/{}/modular"),
                          ("GET", "/api/task/{}/input/dance"), ("HEAD", "/api/task/{}/input/bgm")):
        check(method, route.format(missing), 404)
        check(method, route.format("not-an-id"), 400)
    check("POST", f"/api/correct/{missing}", 404, json={})
    check("POST", "/api/correct/not-an-id", 400, json={})
    check("GET", f"/api/download/{tid}/v3", 400)

    # ---- a worker: the jobs run (processing, then success or failure)
    worker = su.Worker(srv.data_dir, log_path=tmp_path / "worker.log")
    try:
        seen: list = []
        done = _wait(check, tid, seen=seen)
        assert done["status"] == "success", (done, worker.log_hint())
        assert set(done["preview"]["variants"]) == {"modular", "v2"} and done["preview"]["frame_rate"] > 0, done
        assert "processing" in seen or len(seen) <= 2, seen
        for eng in ("modular", "v2"):
            assert done[f"{eng}_output"] == done["download"][eng] == f"/api/download/{tid}/{eng}"
        failed = _wait(check, b["task_id"])
        assert failed["status"] == "failed" and failed["error_code"] == "song_not_found", failed
        assert _wait(check, batch["task_ids"][0])["status"] == "success"
        done_batch = check("GET", f"/api/batch/{batch['batch_id']}?lang=zh", 200).json()
        assert done_batch["finished"] and done_batch["zip_files"], done_batch
        check("GET", f"/api/batch/{batch['batch_id']}/zip", 200)
        check("HEAD", f"/api/batch/{batch['batch_id']}/zip", 200)
        beats = _wait(check, beats_task)
        assert beats["status"] == "success" and beats["kind"] == "beats" and beats["beats"]["beats_s"], beats
        # each song analysed once (the song cache): by the first job that has it, also when that job fails
        song_a, song_b = done["song_analysis"], failed["song_analysis"]
        assert song_a["reused"] is False and song_b["reused"] is False and song_a["key"] != song_b["key"]
        assert beats["song_analysis"] is None
        check("GET", f"/api/beatgrid/{beats_task}", 409)  # its result is in its status
        check("GET", "/api/health", 200)

        # ---- results
        check("GET", f"/api/download/{tid}/modular", 200)
        check("GET", f"/api/download/{tid}?version=v2", 200)
        check("GET", f"/api/download/{tid}/v2", 206, headers={"Range": "bytes=0-99"})
        check("GET", f"/api/download/{tid}/v2", 416, headers={"Range": "bytes=999999999-"})
        check("GET", f"/api/download/{tid}/v2", 400, headers={"Range": "items=0-1"})
        check("HEAD", f"/api/download/{tid}/modular", 200)
        check("HEAD", f"/api/download/{tid}", 200)
        check("GET", f"/api/beatgrid/{tid}", 200)
        check("GET", f"/api/download/{b['task_id']}/modular", 409)
        check("GET", f"/api/status/{b['task_id']}?lang=zh", 200)
        check("POST", f"/api/cancel/{tid}", 409, headers=own)

        # ---- a client's own tasks: private to its token, newest first
        check("GET", "/api/tasks", 401)
        mine = [x["task_id"] for x in check("GET", "/api/tasks", 200, headers=own).json()["tasks"]]
        assert tid in mine and b["task_id"] in mine and mine.index(b["task_id"]) < mine.index(tid), mine
        assert check("GET", "/api/tasks", 200, headers=srv.owner_headers("someone-else-entirely-" + "x" * 22)).json() == {
            "tasks": []}

        # ---- follow-up tasks
        check("POST", f"/api/correct/{tid}", 400, headers=own, json={"variant": "v3"})
        check("POST", f"/api/correct/{tid}", 400, headers=own, json={"variant": "modular", "nudge_ms": 99_999})
        check("POST", f"/api/correct/{tid}", 400, headers=own, json={"variant": "modular", "alternative": 999})
        check("POST", f"/api/correct/{tid}", 415, data="{}", headers={**own, "Content-Type": "text/plain"})
        fix = check("POST", f"/api/correct/{tid}", 202, headers=own, json={"variant": "modular", "nudge_ms": 20}).json()
        again = check("POST", f"/api/rerun/{b['task_id']}", 202, headers=own).json()
        check("POST", f"/api/rerun/{again['task_id']}", 409, headers=own)
        fixed = _wait(check, fix["task_id"])
        assert fixed["status"] == "success" and fixed["kind"] == "render", fixed
        assert fixed["song_analysis"]["reused"] is True and fixed["song_analysis"]["key"] == song_a["key"]
        assert fixed["correction"]["nudge_ms"] == 20 and fixed["v2_output"] is None
        check("GET", f"/api/download/{fix['task_id']}/v2", 404)  # that variant was not rendered
        after = check("GET", f"/api/status/{tid}", 200).json()
        assert after["corrections"] == [fix["task_id"]]
        rerun = _wait(check, again["task_id"])
        assert rerun["song_analysis"]["reused"] is True and rerun["song_analysis"]["key"] == song_b["key"], rerun
    finally:
        rc = worker.stop(timeout=20)
    assert rc == 0, worker.log_hint()

    # ---- every operation was seen answering, with a success and (where it has any) with an error
    for path, ops in doc["paths"].items():
        for method in ops:
            codes = {code for (mm, p, code) in check.seen if (mm, p) == (method.upper(), path)}
            assert any(c < 300 for c in codes), (method, path, codes)
            if (method.upper(), path) not in NO_ERROR_CASE:
                assert any(c >= 400 for c in codes), (method, path, codes)


def _submit_beats(srv: Server, song: Path) -> str:
    """A beat analysis submitted through the job service on the server's data dir (the beat explorer's
    path: the API has no route for it), returning its task id."""
    from beatsync.service import BeatSync
    from beatsync.tasks import Settings

    svc = BeatSync(Settings.from_env({}, data_dir=srv.data_dir, workers=0, queue_max=10))
    with open(song, "rb") as fh:
        return svc.submit_beats(svc.upload_file(song.name, fh, owner=srv.owner).file_id, owner=srv.owner).task_id

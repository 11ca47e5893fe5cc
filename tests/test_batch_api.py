"""A class's group takes in one go, through the JSON API of a real server: several class videos with
one song (``POST /api/process`` with ``dance_file_ids``), the batch's status, and the ZIP of its
finished results.

One server for the module (no worker thread, a queue of 5): the submissions are checked while
nothing runs (what is refused queues nothing; a batch needs room for all its takes), then a
``python -m beatsync worker`` runs the takes. The media are generated: three groups dancing to one
song (`server_util.class_takes`, 8 s each), plus a copy of one take under the same name as another.
"""

from __future__ import annotations

import io
import shutil
import time
import uuid
import zipfile

import pytest
import server_util as su
from server_util import Server, check, is_uuid4, upload_ok

from beatsync import media

QUEUE_MAX = 5


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> su.Takes:
    return su.class_takes(tmp_path_factory.mktemp("takes"), 3)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    s = Server(base / "data", {"BEATSYNC_WORKERS": 0, "BEATSYNC_QUEUE_MAX": QUEUE_MAX}, name="batch", log_dir=base)
    try:
        yield s.start()
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request):
    failed = request.session.testsfailed
    yield
    s = request.node.funcargs.get("srv")
    if isinstance(s, Server):
        su.print_logs_if_failed(request, failed, [s.log_hint()[-4000:]])


def _process(srv: Server, payload: dict, owner: str | None = None, **headers):
    return srv.post("/api/process", json=payload, headers={**srv.owner_headers(owner), **headers})


def _queued(srv: Server) -> int:
    return su.body(srv.health())["queue"]


def _task_dirs(srv: Server) -> set[str]:
    root = srv.data_dir / "tasks"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def _wait_batch(srv: Server, batch_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        obj = check(srv.get(f"/api/batch/{batch_id}"), 200, server=srv)
        if obj["finished"]:
            return obj
        assert time.monotonic() < deadline, f"batch not finished after {timeout:.0f} s: {obj['counts']}"
        time.sleep(0.3)


def test_refused_batches_queue_nothing(srv, takes, tmp_path):
    dances = [upload_ok(srv, v)["file_id"] for v in takes.videos]
    song = upload_ok(srv, takes.song_path)["file_id"]
    before_dirs, before_queue = _task_dirs(srv), _queued(srv)
    unknown = str(uuid.uuid4())

    def refused(payload, status, code, **kw):
        return check(_process(srv, payload, **kw), status, code, srv)

    refused({"dance_file_id": dances[0], "dance_file_ids": dances, "bgm_file_id": song}, 400, "bad_request")
    refused({"bgm_file_id": song}, 400, "bad_request")
    refused({"dance_file_ids": [], "bgm_file_id": song}, 400, "bad_request")
    refused({"dance_file_ids": dances[0], "bgm_file_id": song}, 400, "bad_request")  # a string, not a list
    obj = refused({"dance_file_ids": [dances[0], dances[1], dances[0]], "bgm_file_id": song}, 400, "bad_request")
    assert obj["error_params"]["take"] == 3, obj
    obj = refused({"dance_file_ids": [str(uuid.uuid4()) for _ in range(11)], "bgm_file_id": song}, 400,
                  "too_many_takes")
    assert obj["error_params"] == {"limit": 10, "count": 11}, obj
    obj = refused({"dance_file_ids": [str(uuid.uuid4()) for _ in range(QUEUE_MAX + 1)], "bgm_file_id": song}, 400,
                  "too_many_takes")  # more than the server's queue could ever hold
    assert obj["error_params"]["limit"] == QUEUE_MAX, obj
    obj = refused({"dance_file_ids": [dances[0], "not-an-id"], "bgm_file_id": song}, 400, "bad_id")
    assert obj["error_params"]["take"] == 2, obj
    # one bad class video among good ones: refused, naming it, and nothing of the batch is queued
    obj = refused({"dance_file_ids": [dances[0], song, dances[2]], "bgm_file_id": song}, 422, "no_video")
    assert obj["error_params"]["take"] == 2 and obj["error_params"]["takes"] == 3, obj
    assert obj["error"].startswith("Class video 2 of 3: song.wav has no picture"), obj
    zh = check(_process(srv, {"dance_file_ids": [dances[0], song], "bgm_file_id": song},
                        **{"Accept-Language": "zh-CN"}), 422, "no_video", srv)
    assert zh["error"].startswith("第 2 个课堂视频（共 2 个）：song.wav 没有画面"), zh
    obj = refused({"dance_file_ids": [dances[0], dances[1], unknown], "bgm_file_id": song}, 404, "file_not_found")
    assert obj["error_params"]["take"] == 3 and "Class video 3 of 3" in obj["error"], obj
    refused({"dance_file_ids": dances, "bgm_file_id": unknown}, 404, "file_not_found")
    refused({"dance_file_ids": dances, "bgm_file_id": song, "options": {"margin_s": 99}}, 400, "bad_option")
    # control: the uploads' owner token
    check(srv.post("/api/process", json={"dance_file_ids": dances, "bgm_file_id": song}), 401, "owner_required", srv)
    refused({"dance_file_ids": dances, "bgm_file_id": song}, 403, "not_owner", owner="n" * 43)
    assert _task_dirs(srv) == before_dirs and _queued(srv) == before_queue


def test_batch_status_and_zip(srv, takes, tmp_path):
    # four takes: three groups, and a copy of group 2's video under the same name (names in the ZIP stay unique)
    names = ["group1.mp4", "group2.mp4", "group3.mp4", "group2.mp4"]
    files = [*takes.videos, takes.videos[1]]
    dances = [upload_ok(srv, f, name=n)["file_id"] for f, n in zip(files, names, strict=True)]
    song = upload_ok(srv, takes.song_path)["file_id"]
    assert _queued(srv) == 0

    sub = check(_process(srv, {"dance_file_ids": dances, "bgm_file_id": song, "options": {"margin_s": 0.5}}), 202,
                server=srv)
    assert set(sub) == {"batch_id", "task_ids", "status", "message", "batch_url", "status_urls", "owner_token"}, sub
    batch_id, ids = sub["batch_id"], sub["task_ids"]
    assert is_uuid4(batch_id) and len(ids) == 4 and all(is_uuid4(t) for t in ids) and len(set(ids)) == 4
    assert sub["status"] == "pending" and sub["owner_token"] == srv.owner
    assert sub["batch_url"] == f"/api/batch/{batch_id}" and sub["status_urls"] == [f"/api/status/{t}" for t in ids]
    assert _queued(srv) == 4

    # the queue (5) has no room for a whole second batch of two: none of it is queued
    before = _task_dirs(srv)
    busy = check(_process(srv, {"dance_file_ids": dances[:2], "bgm_file_id": song}), 429, "busy", srv)
    assert busy["error_params"] == {"queued": 4, "asked": 2}, busy
    assert _queued(srv) == 4 and _task_dirs(srv) == before

    # while nothing runs: every take pending, in the order given, each an ordinary task of the batch
    st = check(srv.get(f"/api/batch/{batch_id}", headers={"Accept-Language": "zh-CN"}), 200, server=srv)
    assert st["batch_id"] == batch_id and st["task_ids"] == ids and st["song"] == "song.wav"
    assert [t["task_id"] for t in st["tasks"]] == ids
    assert [t["inputs"]["dance"]["name"] for t in st["tasks"]] == names
    assert all(t["batch_id"] == batch_id and t["status"] == "pending" for t in st["tasks"])
    assert st["counts"] == {"pending": 4, "processing": 0, "success": 0, "failed": 0}
    assert st["language"] == "zh" and st["tasks"][0]["message"] == "排队中，等待空闲的处理进程"
    assert not st["finished"] and st["progress"] == 0 and st["zip_files"] == [] and st["zip_missing"] == ids
    assert st["zip_url"] == f"/api/batch/{batch_id}/zip"
    assert su.status(srv, ids[0])["batch_id"] == batch_id
    obj = check(srv.get(f"/api/batch/{batch_id}/zip"), 409, "not_ready", srv)
    assert "None of this batch's class videos has a result yet" in obj["error"], obj
    zh = check(srv.get(f"/api/batch/{batch_id}/zip?lang=zh"), 409, "not_ready", srv)
    assert "这批任务" in zh["error"], zh
    assert srv.raw_request("HEAD", f"/api/batch/{batch_id}/zip")[0] == 409

    # unknown and malformed batch ids
    check(srv.get(f"/api/batch/{uuid.uuid4()}"), 404, "batch_not_found", srv)
    check(srv.get(f"/api/batch/{uuid.uuid4()}/zip"), 404, "batch_not_found", srv)
    check(srv.get("/api/batch/not-an-id"), 400, "bad_id", srv)
    check(srv.get(f"/api/batch/{batch_id.upper()}/zip"), 400, "bad_id", srv)
    check(srv.get(f"/api/batch/{ids[0]}"), 404, "batch_not_found", srv)  # a task's id is no batch's

    # take 3 is cancelled before it runs: the ZIP holds the others, and says which is missing
    check(srv.post(f"/api/cancel/{ids[2]}", headers=srv.owner_headers()), 200, server=srv)
    worker = su.Worker(srv.data_dir, log_path=tmp_path / "worker.log")
    try:
        done = _wait_batch(srv, batch_id)
    finally:
        assert worker.stop(timeout=30) == 0, worker.log_hint()
    assert [t["status"] for t in done["tasks"]] == ["success", "success", "failed", "success"], \
        [(t["status"], t["error"]) for t in done["tasks"]]
    assert done["counts"] == {"pending": 0, "processing": 0, "success": 3, "failed": 1} and done["progress"] > 70
    assert done["zip_missing"] == [ids[2]]
    by_task = {t["task_id"]: t for t in done["tasks"]}
    listed = done["zip_files"]
    expected_stems = {ids[0]: "group1", ids[1]: "group2-take2", ids[3]: "group2-take4"}
    for f in listed:  # the class video's name (made unique) and the method; a result that is the other's once
        assert f["name"] == f"{expected_stems[f['task_id']]}_{f['variant']}.mp4", f
        assert f["variant"] == "modular" or by_task[f["task_id"]]["variants"]["v2"]["same_as"] is None, f
    assert {f["task_id"] for f in listed} == set(expected_stems)
    assert len({f["name"] for f in listed}) == len(listed)

    r = srv.get(f"/api/batch/{batch_id}/zip")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="song_takes.zip"'
    assert "content-length" not in r.headers  # streamed as it is written
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    assert [i.filename for i in zf.infolist()] == [f["name"] for f in listed]
    out = tmp_path / "unzipped"
    out.mkdir()
    for info, f in zip(zf.infolist(), listed, strict=True):
        assert info.compress_type == zipfile.ZIP_STORED, info  # mp4 does not compress
        data = zf.read(info)
        assert data == srv.get(f"/api/download/{f['task_id']}/{f['variant']}").content  # the take's own result
        path = out / info.filename
        path.write_bytes(data)
        probe = media.probe(str(path))  # a playable mp4: picture and sound
        assert probe.video is not None and probe.audio is not None and probe.duration_s > 3.0, probe
    status, headers, _ = srv.raw_request("HEAD", f"/api/batch/{batch_id}/zip")
    assert status == 200 and headers["content-type"] == "application/zip", (status, headers)
    shutil.rmtree(out)

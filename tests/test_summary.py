"""What the job page says about a finished job (ui/summary.py, pure): one recommended result when
both methods agree, both with which to prefer and why when they do not, the structure as facts."""

from __future__ import annotations

import time

from beatsync.contract import Status, TaskRecord
from ui import summary

TASK = "0b0e3f5c-1111-4222-8333-444455556666"


def alignment(engine: str, *, offset: float, confidence: float, segments: list[tuple[float, float, float]]):
    return {"engine": engine, "offset_s": offset, "tempo_ratio": 1.0, "confidence": confidence,
            "segments": [{"dance_start_s": a, "dance_end_s": b, "bgm_start_s": g, "rate": 1.0} for a, b, g in segments]}


def status(modular=None, v2=None, *, agree: bool, difference_ms: float = 0.0, notices=(), same_as=None) -> Status:
    variants = {}
    for name, al in (("modular", modular), ("v2", v2)):
        if al is None:
            variants[name] = {"error": "The song was not found in this video.", "error_code": "song_not_found"}
        else:
            variants[name] = {"alignment": al, "same_as": same_as if name == "v2" else None}
    now = time.time()
    rec = TaskRecord.model_validate({
        "task_id": TASK, "status": "success", "created": now, "updated": now, "inputs": {}, "variants": variants,
        "agreement": {"agree": agree, "offset_difference_ms": difference_ms, "tempo_difference": 0.0},
        "notices": list(notices)})
    return Status.from_record(rec, outputs={})


def test_agreeing_methods_give_one_result():
    one = [(3.0, 95.0, 17.0)]
    rec = summary.recommend(status(alignment("modular", offset=-14.0, confidence=0.9, segments=one),
                                   alignment("v2", offset=-14.0004, confidence=0.92, segments=one),
                                   agree=True, difference_ms=0.4))
    assert rec.agree and rec.best == "modular" and rec.others == ["v2"] and not rec.reasons  # the default method
    same = summary.recommend(status(alignment("modular", offset=-14.0, confidence=0.9, segments=one),
                                    alignment("v2", offset=-14.0, confidence=0.9, segments=one), agree=True,
                                    same_as="modular"))
    assert same.agree and same.same_file


def test_disagreeing_methods_say_which_to_prefer_and_why():
    full = [(3.0, 95.0, 17.0)]
    part = [(3.0, 40.0, 17.0)]
    s = status(alignment("modular", offset=-14.0, confidence=0.55, segments=part),
               alignment("v2", offset=-13.5, confidence=0.91, segments=full), agree=False, difference_ms=500.0)
    rec = summary.recommend(s)
    assert not rec.agree and rec.best == "v2" and rec.others == ["modular"]
    keys = [k for k, _ in rec.reasons]
    assert keys == ["why.confidence", "why.explains"], rec.reasons
    assert rec.reasons[0][1] == {"a": 0.91, "b": 0.55, "other": "modular"}
    assert rec.reasons[1][1]["a"] == 92.0 and rec.reasons[1][1]["b"] == 37.0

    # as confident: the one that explains more of the video
    s = status(alignment("modular", offset=-14.0, confidence=0.9, segments=part),
               alignment("v2", offset=-13.5, confidence=0.92, segments=full), agree=False, difference_ms=500.0)
    rec = summary.recommend(s)
    assert rec.best == "v2" and [k for k, _ in rec.reasons] == ["why.explains"]

    # the same offsets but another structure (a second run-through found by one only): not "agree"
    two = [(3.0, 40.0, 17.0), (50.0, 95.0, 17.0)]
    s = status(alignment("modular", offset=-14.0, confidence=0.9, segments=two),
               alignment("v2", offset=-14.0, confidence=0.9, segments=part), agree=True)
    rec = summary.recommend(s)
    assert not rec.agree and rec.best == "modular"


def test_one_method_failed():
    rec = summary.recommend(status(None, alignment("v2", offset=1.0, confidence=0.8, segments=[(1.0, 30.0, 0.0)]),
                                   agree=False))
    assert rec.best == "v2" and rec.failed == ["modular"] and rec.agree


def test_structure_as_facts_and_where_the_music_starts():
    al = alignment("modular", offset=-17.0, confidence=0.9, segments=[(3.0, 41.0, 20.0), (41.0, 80.0, 70.0)])
    notices = [{"code": "restarts", "params": {"engine": "modular", "count": 2}},
               {"code": "edit_cut", "params": {"engine": "modular", "at": "0:41.0", "at_s": 41.0, "jump_s": 12.0}},
               {"code": "edit_cut", "params": {"engine": "v2", "at": "0:41.0", "at_s": 41.0, "jump_s": 12.0}},
               {"code": "low_confidence", "params": {"engine": "modular", "confidence": 0.4}}]
    s = status(al, al, agree=True, notices=notices)
    assert summary.structure_facts(s, "modular") == [
        ("fact.restarts", {"engine": "modular", "count": 2}),
        ("fact.edit_cut", {"engine": "modular", "at": "0:41.0", "at_s": 41.0, "jump_s": 12.0})]
    assert summary.checks(s, "modular") == ["low_confidence"]
    assert summary.edit_points(s, "modular") == [("edit_cut", 41.0)]
    assert summary.music_position(s.variants["modular"].alignment) == (3.0, 20.0)

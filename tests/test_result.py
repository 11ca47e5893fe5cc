"""Alignment results as the UI uses them: song times mapped onto the video, corrections."""

import pytest

from beatsync.align.result import Alignment, Alternative, Segment
from beatsync.errors import ParameterError


def two_runs() -> Alignment:
    """The song from 0 s at dance 2 s, then again from 0 s at dance 12 s at half speed."""
    return Alignment("modular", 2.0, 1.0, 0.9, [Segment(2.0, 10.0, 0.0, 1.0), Segment(12.0, 20.0, 0.0, 0.5)],
                     alternatives=[Alternative(5.0, 1.0, 0.6)])


def test_dance_times_maps_song_times_through_every_segment():
    al = two_runs()
    assert al.dance_times([0.0, 1.0, 4.5, 9.0]) == [2.0, 3.0, 6.5, 12.0, 14.0]  # 9 s: past both ends


def test_nudge_moves_the_song_later_and_is_recorded():
    al = two_runs().corrected(nudge_s=0.04)
    assert al.offset_s == pytest.approx(2.04)
    assert al.dance_times([1.0])[0] == pytest.approx(3.04)
    assert al.notices[-1] == {"code": "nudged", "params": {"ms": 40}}


def test_choosing_an_alternative_keeps_the_found_one_as_an_alternative():
    al = two_runs().corrected(alternative=0)
    assert al.offset_s == 5.0 and len(al.segments) == 1
    seg = al.segments[0]
    assert seg.dance_start_s == 5.0 and seg.bgm_start_s == 0.0  # the song cannot start before its beginning
    assert seg.dance_end_s == 10.0  # over the main segment's span
    assert [a.offset_s for a in al.alternatives] == [2.0]
    assert al.notices[-1]["code"] == "alternative_chosen"
    assert Alignment.from_dict(al.to_dict()).notices == al.notices  # survives the task record
    with pytest.raises(ParameterError):
        two_runs().corrected(alternative=3)

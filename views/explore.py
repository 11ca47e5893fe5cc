"""Beat explorer: any song or video -> its tempo and beat grid. The analysis runs as a job like any
other (kind ``beats``, in a worker, never in this script run): the page submits it, follows its
progress and draws its result, which comes in the task's status (``beats``)."""

from pathlib import Path

import streamlit as st

from beatsync.contract import DANCE_EXTS, FAILED, SONG_EXTS, SUCCESS, TaskKind
from beatsync.errors import BeatSyncError
from ui import i18n
from ui.i18n import duration, seconds, t
from ui.plots import beats_figure, on_phone, plot_config
from ui.state import owner_token, remember, service
from ui.task_view import live, load

svc = service()
st.title(t("explore.title"))
st.write(t("explore.intro"))

f = st.file_uploader(t("explore.file"), type=[e[1:] for e in SONG_EXTS], key="explore_file")
if f is not None and st.session_state.get("explore_seen") != (f.name, f.size):
    st.session_state["explore_seen"] = (f.name, f.size)
    try:
        owner = owner_token()
        sub = svc.submit_beats(svc.upload_file(f.name, f, role="media", owner=owner).file_id, owner=owner)
    except BeatSyncError as e:
        st.query_params.pop("task", None)
        st.error(i18n.error(e))
    else:
        remember(sub.task_id)
        st.query_params["task"] = sub.task_id

task_id = st.query_params.get("task")
s = load(svc, task_id) if task_id else None
if s is not None:
    if s.kind != TaskKind.BEATS:
        st.switch_page("views/task.py", query_params={"task": task_id})
    name = s.inputs["media"].name
    st.header(name)
    if s.status == SUCCESS and s.beats is not None:
        beats = s.beats
        c1, c2, c3 = st.columns(3)
        c1.metric(t("explore.tempo"), t("explore.bpm", bpm=beats.tempo_bpm))
        c2.metric(t("explore.count"), len(beats.beats_s))
        c3.metric(t("explore.duration"), seconds(beats.duration_s))
        if not beats.beats_s:
            st.warning(t("explore.none"))
        else:
            st.markdown(t("explore.summary", name=name, bpm=beats.tempo_bpm, n=len(beats.beats_s),
                          d=duration(beats.duration_s)))
        song = Path(name).suffix.lower() not in DANCE_EXTS
        touch = on_phone()
        st.plotly_chart(beats_figure(beats, song=song, touch=touch), key="explore_plot", config=plot_config(touch))
    elif s.status == FAILED:
        st.error(s.error or "")
    else:
        st.info(t("explore.running"))
        live(svc, [s.task_id])

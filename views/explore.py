"""Beat explorer: any song or video -> its tempo and beat grid. Short files are analysed at once
(under a second); longer ones go through the task system like any job."""

import streamlit as st

from beatsync import pipeline
from beatsync.contract import FAILED, SONG_EXTS, SUCCESS
from beatsync.errors import BeatSyncError
from ui import i18n
from ui.i18n import t
from ui.plots import PLOT_CONFIG, beats_figure, on_phone
from ui.state import remember, service
from ui.task_view import live, load

FAST_PATH_S = 120.0  # files up to this long are analysed in the page (well under a second of work)

svc = service()
st.title(t("explore.title"))
st.write(t("explore.intro"))

f = st.file_uploader(t("explore.file"), type=[e[1:] for e in SONG_EXTS], key="explore_file")
if f is not None and st.session_state.get("explore_seen") != (f.name, f.size):
    st.session_state["explore_seen"] = (f.name, f.size)
    st.session_state.pop("explore_result", None)
    try:
        meta = svc.upload_file(f.name, f)
        if meta.duration_s <= FAST_PATH_S:
            st.session_state["explore_result"] = (meta.name, pipeline.file_beats(str(svc.upload_path(meta.file_id))))
            st.query_params.pop("task", None)
        else:
            sub = svc.submit_beats(meta.file_id)
            remember(sub.task_id)
            st.query_params["task"] = sub.task_id
    except BeatSyncError as e:
        st.error(i18n.error(e))

result = st.session_state.get("explore_result")
task_id = st.query_params.get("task")
if task_id and result is None:
    s = load(svc, task_id)
    if s is not None:
        name = s.inputs["media"].name if "media" in s.inputs else ""
        if s.status == SUCCESS:
            result = (name, s.beats)
        elif s.status == FAILED:
            st.error(s.error or "")
        else:
            st.info(t("explore.long"))
            live(svc, [task_id])

if result is not None and result[1] is not None:
    name, beats = result
    st.subheader(name)
    c1, c2, c3 = st.columns(3)
    c1.metric(t("explore.tempo"), t("explore.bpm", bpm=beats.tempo_bpm))
    c2.metric(t("explore.count"), len(beats.beats_s))
    c3.metric(t("explore.duration"), f"{beats.duration_s:.1f} s")
    if not beats.beats_s:
        st.warning(t("explore.none"))
    st.plotly_chart(beats_figure(beats, touch=on_phone()), key="explore_plot", config=PLOT_CONFIG)
